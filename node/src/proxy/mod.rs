//! The data plane: one OpenAI-compatible request in, one answer out.
//!
//! A request is authenticated, its body read (bounded) and probed for
//! `model` and `stream`, its route looked up in the current snapshot, and its
//! targets tried in the order [`select::plan`] gives, each attempt bounded by
//! the route's first-byte timeout and the request's deadline. Nothing is
//! retried once a byte has reached the client: a plain answer is read whole
//! before it is sent, and a stream is committed only once its first chunk
//! has arrived.

pub mod hedge;

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::{Instrument, Span, info, warn};

use crate::breaker::Circuit;
use crate::error::ProxyError;
use crate::health::{HealthSink, Outcome, Sample};
use crate::relay::{OnStreamEnd, Relay, StreamEnd};
use crate::request_body::{probe, splice};
use crate::routing::{Endpoint, InFlight, Route, RoutingSnapshot, Target};
use crate::scrub::{LogText, Scrubber};
use crate::select::{self, Pick, Policy};
use crate::usage::{self, Usage};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_UPSTREAM: HeaderName = HeaderName::from_static("x-meridian-upstream");
static X_REGION: HeaderName = HeaderName::from_static("x-meridian-region");
static X_ATTEMPTS: HeaderName = HeaderName::from_static("x-meridian-attempts");
static X_FALLBACK: HeaderName = HeaderName::from_static("x-meridian-fallback");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The body of every answer: a whole buffer, or a relayed stream.
pub enum ProxyBody {
    /// Buffered answers and errors.
    Full(Full<Bytes>),
    /// A streamed answer.
    Stream(Box<Relay<Incoming>>),
}

impl ProxyBody {
    fn bytes(b: Bytes) -> Self {
        Self::Full(Full::new(b))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(b) => Pin::new(b).poll_frame(cx),
            Self::Stream(r) => Pin::new(r.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_end_stream(),
            Self::Stream(r) => r.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => b.size_hint(),
            Self::Stream(r) => r.size_hint(),
        }
    }
}

/// Shared state of the data plane.
pub struct Proxy {
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    health: HealthSink,
    policy: Policy,
    in_flight: Arc<AtomicUsize>,
    /// How long a request body may take to arrive whole.
    body_timeout: Duration,
}

/// Holds one of the node's in-flight slots until dropped (for a stream,
/// until the stream ends).
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request that was answered, and by whom.
struct Answered {
    response: Response<ProxyBody>,
    upstream: HeaderValue,
    attempts: usize,
    fallback: bool,
}

/// A request that was not, and how many attempts it took.
struct Failed {
    error: ProxyError,
    attempts: usize,
    /// Counted in its route's metrics already.
    routed: bool,
}

impl From<ProxyError> for Failed {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            attempts: 0,
            routed: false,
        }
    }
}

/// What the client asked for, once read.
struct Call<'a> {
    endpoint: Endpoint,
    body: &'a Bytes,
    model_span: std::ops::Range<usize>,
    stream: bool,
    accept: Option<HeaderValue>,
    key: Arc<str>,
    request_id: &'a HeaderValue,
    max_response_bytes: usize,
    /// Takes the node's provider keys out of what upstreams send back.
    scrub: &'a Arc<Scrubber>,
}

impl Proxy {
    /// A data plane reading routes, and through their upstreams the
    /// cluster's shared health, from `snapshot`.
    pub fn new(
        snapshot: Arc<ArcSwap<RoutingSnapshot>>,
        health: HealthSink,
        policy: Policy,
    ) -> Self {
        // The counter Prometheus reads, so both see the same figure.
        let in_flight = snapshot.load().metrics.in_flight.clone();
        Self {
            snapshot,
            health,
            policy,
            in_flight,
            body_timeout: Duration::from_millis(
                proto::config::ConnectionsConfig::default().body_timeout_ms,
            ),
        }
    }

    /// The same data plane with `connections.body_timeout_ms`: a body that
    /// has not arrived whole by then is answered 408.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Requests in flight on this node.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Answers one request. Never fails: errors become OpenAI error bodies.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let request_id = request_id(req.headers());
        let span = tracing::info_span!("request", id = %request_id.to_str().unwrap_or("-"));
        let snapshot = self.snapshot.load_full();
        let result = self
            .serve(req, &snapshot, &request_id)
            .instrument(span.clone())
            .await;
        let mut response = match result {
            Ok(answered) => {
                if answered.attempts == 0 {
                    // `/v1/models`: answered by the node itself.
                    snapshot
                        .metrics
                        .unrouted
                        .inc(answered.response.status().as_u16());
                }
                let mut response = answered.response;
                let headers = response.headers_mut();
                headers.insert(X_UPSTREAM.clone(), answered.upstream);
                headers.insert(X_ATTEMPTS.clone(), count_header(answered.attempts));
                headers.insert(
                    X_FALLBACK.clone(),
                    HeaderValue::from_static(if answered.fallback { "true" } else { "false" }),
                );
                response
            }
            Err(failed) => {
                let _enter = span.enter();
                let status = failed.error.status();
                if !failed.routed {
                    snapshot.metrics.unrouted.inc(status.as_u16());
                }
                // The error may quote the client's values (a model, a path).
                let error = LogText(&failed.error);
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    warn!(status = status.as_u16(), attempts = failed.attempts, error = %error, "request failed");
                } else {
                    info!(status = status.as_u16(), error = %error, "request refused");
                }
                error_response(&failed.error, failed.attempts)
            }
        };
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID.clone(), request_id);
        headers.insert(X_REGION.clone(), snapshot.region.clone());
        Ok(response)
    }

    async fn serve(
        &self,
        req: Request<Incoming>,
        snapshot: &RoutingSnapshot,
        request_id: &HeaderValue,
    ) -> Result<Answered, Failed> {
        // Authenticate before anything else, so an unauthenticated caller
        // learns nothing, not even which models or paths exist.
        let key = snapshot.keys.authenticate(req.headers())?;
        let path = req.uri().path();
        let endpoint = match (req.method(), path.trim_end_matches('/')) {
            (&Method::GET, "/v1/models") => return Ok(models(snapshot)),
            (_, "/v1/models") => return Err(not_allowed(&req, "GET").into()),
            (method, _) => match Endpoint::from_path(path) {
                Some(e) if method == Method::POST => e,
                Some(_) => return Err(not_allowed(&req, "POST").into()),
                None => {
                    return Err(ProxyError::UnknownPath {
                        method: req.method().to_string(),
                        path: path.to_owned(),
                    }
                    .into());
                }
            },
        };

        // The body is read before an in-flight slot is taken, and within
        // `body_timeout`: a client that sends its body slowly, or never
        // finishes it, holds its own connection and nothing else.
        let accept = req.headers().get(http::header::ACCEPT).cloned();
        let max = snapshot.proxy.max_request_bytes;
        let body = tokio::time::timeout(self.body_timeout, read_body(req, max))
            .await
            .map_err(|_| ProxyError::BodyTimeout {
                timeout_ms: u64::try_from(self.body_timeout.as_millis()).unwrap_or(u64::MAX),
            })??;
        let limit = snapshot.proxy.max_in_flight;
        let admission = Admission(self.in_flight.clone());
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= limit {
            return Err(ProxyError::Overloaded { limit }.into());
        }
        let probed = probe(&body)?;
        let route = snapshot
            .route(&probed.model)
            .ok_or_else(|| ProxyError::UnknownModel(probed.model.clone().into_owned()))?
            .clone();
        let call = Call {
            endpoint,
            body: &body,
            model_span: probed.model_span.clone(),
            stream: probed.stream,
            accept,
            key,
            request_id,
            max_response_bytes: snapshot.proxy.max_response_bytes,
            scrub: &snapshot.scrub,
        };
        self.route(&call, &route, snapshot, admission).await
    }

    async fn route(
        &self,
        call: &Call<'_>,
        route: &Arc<Route>,
        snapshot: &RoutingSnapshot,
        admission: Admission,
    ) -> Result<Answered, Failed> {
        let started = Instant::now();
        let deadline = started + route.request_timeout;
        let plan = route.plan(&self.policy, call.stream, &mut rand::rng());
        if plan.is_empty() {
            let error = ProxyError::NoUsableUpstream(route.name.to_string());
            route.metrics.unanswered.inc(error.status().as_u16());
            route.metrics.latency.observe(started.elapsed());
            return Err(Failed {
                error,
                attempts: 0,
                routed: true,
            });
        }
        if let Some(hedge) = &route.hedge {
            hedge.earn();
        }

        let mut tally = Tally::default();
        // Attempts that failed, waiting to learn whether another follows.
        let mut failed: Vec<(&Target, String)> = Vec::new();
        let mut next = 0;
        while next < plan.len() {
            let pick = plan[next];
            next += 1;
            let target = &route.tiers[pick.0][pick.1];
            if !admit(target) {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                tally.note(format_args!(
                    "request deadline of {} ms passed",
                    route.request_timeout.as_millis()
                ));
                tally.all_rate_limited = false;
                break;
            }
            tally.attempts += 1;
            for (from, reason) in failed.drain(..) {
                from.metrics.failovers.fetch_add(1, Ordering::Relaxed);
                snapshot.metrics.events.push(
                    call.request_id.to_str().unwrap_or("-"),
                    &route.name,
                    &from.upstream.id,
                    &target.upstream.id,
                    &reason,
                );
            }
            let estimate = target.ttfb_estimate(&self.policy);
            let timeout = |now: Instant| {
                let adaptive = select::first_byte_timeout(
                    estimate.map(|q| q.p99),
                    snapshot.health.timeout_multiplier,
                    Duration::from_millis(snapshot.health.timeout_floor_ms),
                    route.first_byte_timeout,
                );
                (deadline - now).min(adaptive)
            };
            let primary = self.attempt(call, route, target, timeout(now), deadline);
            // Only the first attempt is hedged; failover covers the rest.
            let hedge = match (&route.hedge, estimate) {
                (Some(hedge), Some(q)) if tally.attempts == 1 => {
                    Some((hedge, hedge.delay(q.p50, q.p90, q.p95, q.p99)))
                }
                _ => None,
            };
            let won = match hedge {
                None => match primary.await {
                    Ok(ready) => Ok((ready, pick, false)),
                    Err(failure) => Err(vec![(target, failure)]),
                },
                Some((hedge, delay)) => {
                    tokio::pin!(primary);
                    tokio::select! {
                        outcome = &mut primary => match outcome {
                            Ok(ready) => Ok((ready, pick, false)),
                            Err(failure) => Err(vec![(target, failure)]),
                        },
                        () = tokio::time::sleep(delay) => {
                            if hedge.spend() {
                                route.metrics.hedges_sent.fetch_add(1, Ordering::Relaxed);
                                // The next target in the plan, or this one
                                // again for a route with one target.
                                let second = match plan.get(next) {
                                    Some(&p) if admit(&route.tiers[p.0][p.1]) => {
                                        next += 1;
                                        p
                                    }
                                    _ => pick,
                                };
                                tally.attempts += 1;
                                let other = &route.tiers[second.0][second.1];
                                info!(upstream = %target.upstream.id, hedge = %other.upstream.id, delay_ms = delay.as_millis() as u64, "hedging a slow attempt");
                                let hedged = self.attempt(call, route, other, timeout(Instant::now()), deadline);
                                race((primary, target, pick), (hedged, other, second)).await
                            } else {
                                match primary.await {
                                    Ok(ready) => Ok((ready, pick, false)),
                                    Err(failure) => Err(vec![(target, failure)]),
                                }
                            }
                        }
                    }
                }
            };
            match won {
                Ok((ready, (tier, index), hedge_won)) => {
                    let winner = &route.tiers[tier][index];
                    let response = ready.into_response(admission);
                    winner.metrics.answers.inc(response.status().as_u16());
                    route.metrics.latency.observe(started.elapsed());
                    if hedge_won {
                        route.metrics.hedges_won.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Answered {
                        response,
                        upstream: winner.upstream.id_header.clone(),
                        attempts: tally.attempts,
                        fallback: tier > 0,
                    });
                }
                Err(failures) => {
                    for (target, mut failure) in failures {
                        // Every failure passes here on its way to the log,
                        // the events and the client's 502.
                        if let Cow::Owned(clean) = call.scrub.text(&failure.reason) {
                            failure.reason = clean;
                        }
                        warn!(upstream = %target.upstream.id, model = %target.model, reason = %LogText(&failure.reason), "attempt failed");
                        failed.push((target, failure.reason.clone()));
                        tally.failed(target, failure);
                    }
                }
            }
        }
        let failed = tally.into_failed(deadline);
        route.metrics.unanswered.inc(failed.error.status().as_u16());
        route.metrics.latency.observe(started.elapsed());
        Err(failed)
    }

    /// One attempt at one target. On success the answer is ready to send:
    /// a plain answer read whole, or a stream whose first chunk arrived.
    async fn attempt(
        &self,
        call: &Call<'_>,
        route: &Route,
        target: &Target,
        budget: Duration,
        deadline: Instant,
    ) -> Result<Ready, Failure> {
        let upstream = &target.upstream;
        let in_flight = InFlight::new(upstream.clone());
        let request = build_request(call, target);
        let started = Instant::now();
        let record = |outcome, ttfb, total| {
            self.health.record(
                upstream,
                Sample {
                    outcome,
                    ttfb,
                    total,
                },
            );
        };

        let response =
            match tokio::time::timeout(budget, upstream.pools.get().request(request)).await {
                Err(_) => {
                    record(Outcome::Timeout, Some(budget), None);
                    return Err(Failure::timeout(budget));
                }
                Ok(Err(e)) => {
                    record(Outcome::Error, None, None);
                    return Err(Failure::error(describe_client_error(&e)));
                }
                Ok(Ok(response)) => response,
            };
        let status = response.status();
        let ttfb = started.elapsed();

        if status.is_success() && call.stream {
            let (parts, mut body) = response.into_parts();
            let left = budget.saturating_sub(ttfb);
            let first = match tokio::time::timeout(left, first_data(&mut body)).await {
                Err(_) => {
                    record(Outcome::Timeout, Some(budget), None);
                    return Err(Failure::timeout(budget));
                }
                Ok(Err(reason)) => {
                    record(Outcome::Error, None, None);
                    return Err(Failure::error(reason));
                }
                Ok(Ok(first)) => first,
            };
            let ttfb = started.elapsed();
            let sse = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let done = StreamDone {
                health: self.health.clone(),
                target_price: target.price,
                model: target.model.clone(),
                route: route.name.clone(),
                key: call.key.clone(),
                started,
                ttfb,
                span: Span::current(),
                _in_flight: in_flight,
                _admission: None,
                upstream: upstream.clone(),
            };
            return Ok(Ready::Stream(Box::new(PendingStream {
                status,
                content_type: parts
                    .headers
                    .get(CONTENT_TYPE)
                    .map(|v| call.scrub.header(v)),
                first,
                body,
                sse,
                idle_timeout: route.first_byte_timeout,
                scrub: call.scrub.clone(),
                done,
            })));
        }

        let (parts, body) = response.into_parts();
        if status.is_success() {
            let left = deadline.saturating_duration_since(Instant::now());
            let limited = Limited::new(body, call.max_response_bytes);
            let bytes = match tokio::time::timeout(left, limited.collect()).await {
                Err(_) => {
                    record(Outcome::Timeout, Some(ttfb), None);
                    return Err(Failure::timeout(left));
                }
                Ok(Err(e)) => {
                    record(Outcome::Error, None, None);
                    return Err(Failure::error(format!("answer body failed: {e}")));
                }
                Ok(Ok(collected)) => call.scrub.bytes(collected.to_bytes()),
            };
            let total = started.elapsed();
            record(Outcome::Success, Some(ttfb), Some(total));
            // The usage is for the log line only: parsing the answer
            // again is skipped when that line would not be written.
            let usage = if tracing::enabled!(tracing::Level::INFO) {
                usage::from_json(&bytes)
            } else {
                None
            };
            log_done(call, route, target, status, usage, ttfb, total);
            let mut out = Response::new(ProxyBody::bytes(bytes));
            *out.status_mut() = status;
            copy_header(&parts.headers, out.headers_mut(), &CONTENT_TYPE, call.scrub);
            return Ok(Ready::Plain(out));
        }

        // An error answer: read a little of it, to name it and to keep the
        // connection reusable.
        let detail = read_error_detail(body).await;
        if retryable_status(status) {
            record(Outcome::Error, None, None);
            let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
                .then(|| retry_after(&parts.headers).unwrap_or(Duration::from_secs(1)));
            let mut failure = Failure::error(format!(
                "HTTP {}{}",
                status.as_u16(),
                detail.summary(call.scrub)
            ));
            failure.retry_after = retry_after;
            return Err(failure);
        }
        // The client's own mistake (400, 413, 422…): the upstream's answer
        // is the right one to give, and no other target would differ.
        record(Outcome::ClientError, Some(ttfb), Some(started.elapsed()));
        log_done(call, route, target, status, None, ttfb, started.elapsed());
        let mut out = Response::new(ProxyBody::bytes(call.scrub.bytes(detail.body)));
        *out.status_mut() = status;
        copy_header(&parts.headers, out.headers_mut(), &CONTENT_TYPE, call.scrub);
        Ok(Ready::Plain(out))
    }
}

/// Whether a target may be tried now: a half-open circuit lets one probe
/// through, and the request that takes it is that probe.
fn admit(target: &Target) -> bool {
    let live = &target.upstream.live;
    live.circuit() != Circuit::HalfOpen || live.take_probe()
}

/// Two attempts at once: the first answer wins and the other is cancelled
/// (dropped, which closes its upstream request); the flag says the second
/// (the hedge) won. Both failures are returned if neither answers.
async fn race<'t, A, B>(
    a: (Pin<&mut A>, &'t Target, Pick),
    b: (B, &'t Target, Pick),
) -> Result<(Ready, Pick, bool), Vec<(&'t Target, Failure)>>
where
    A: Future<Output = Result<Ready, Failure>>,
    B: Future<Output = Result<Ready, Failure>>,
{
    let (mut first, first_target, first_pick) = a;
    let (second, second_target, second_pick) = b;
    tokio::pin!(second);
    let mut failures = Vec::with_capacity(2);
    let (mut first_done, mut second_done) = (false, false);
    while !(first_done && second_done) {
        tokio::select! {
            outcome = &mut first, if !first_done => match outcome {
                Ok(ready) => return Ok((ready, first_pick, false)),
                Err(failure) => {
                    first_done = true;
                    failures.push((first_target, failure));
                }
            },
            outcome = &mut second, if !second_done => match outcome {
                Ok(ready) => return Ok((ready, second_pick, true)),
                Err(failure) => {
                    second_done = true;
                    failures.push((second_target, failure));
                }
            },
        }
    }
    Err(failures)
}

/// An answer ready to go to the client, not yet holding the request's
/// admission slot (the winner of a hedge takes it).
enum Ready {
    Plain(Response<ProxyBody>),
    Stream(Box<PendingStream>),
}

/// A stream whose first chunk has arrived.
struct PendingStream {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    first: Bytes,
    body: Incoming,
    sse: bool,
    idle_timeout: Duration,
    scrub: Arc<Scrubber>,
    done: StreamDone,
}

impl Ready {
    /// The response; a stream keeps the admission slot until it ends.
    fn into_response(self, admission: Admission) -> Response<ProxyBody> {
        match self {
            Ready::Plain(response) => response,
            Ready::Stream(pending) => {
                let PendingStream {
                    status,
                    content_type,
                    first,
                    body,
                    sse,
                    idle_timeout,
                    scrub,
                    mut done,
                } = *pending;
                done._admission = Some(admission);
                let relay = Relay::new(first, body, sse, idle_timeout, scrub, Box::new(done));
                let mut out = Response::new(ProxyBody::Stream(Box::new(relay)));
                *out.status_mut() = status;
                if let Some(ct) = content_type {
                    out.headers_mut().insert(CONTENT_TYPE, ct);
                }
                out.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                out
            }
        }
    }
}

/// What the failed attempts of one request add up to.
struct Tally {
    attempts: usize,
    log: String,
    retry_after: Option<Duration>,
    all_rate_limited: bool,
    all_timed_out: bool,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            attempts: 0,
            log: String::new(),
            retry_after: None,
            all_rate_limited: true,
            all_timed_out: true,
        }
    }
}

impl Tally {
    fn note(&mut self, what: std::fmt::Arguments<'_>) {
        if !self.log.is_empty() {
            self.log.push_str("; ");
        }
        let _ = self.log.write_fmt(what);
    }

    fn failed(&mut self, target: &Target, failure: Failure) {
        self.note(format_args!(
            "{}/{}: {}",
            target.upstream.id, target.model, failure.reason
        ));
        self.all_timed_out &= failure.outcome == Outcome::Timeout;
        match failure.retry_after {
            Some(wait) => self.retry_after = Some(self.retry_after.map_or(wait, |r| r.min(wait))),
            None => self.all_rate_limited = false,
        }
    }

    fn into_failed(self, deadline: Instant) -> Failed {
        let attempts = self.log;
        let error = if self.all_rate_limited && self.attempts > 0 {
            ProxyError::RateLimited {
                attempts,
                retry_after: self.retry_after.unwrap_or(Duration::from_secs(1)),
            }
        } else if self.all_timed_out || Instant::now() >= deadline {
            ProxyError::UpstreamsTimedOut { attempts }
        } else {
            ProxyError::UpstreamsFailed { attempts }
        };
        Failed {
            error,
            attempts: self.attempts,
            routed: true,
        }
    }
}

/// Why an attempt failed.
struct Failure {
    reason: String,
    outcome: Outcome,
    retry_after: Option<Duration>,
}

impl Failure {
    fn error(reason: String) -> Self {
        Self {
            reason,
            outcome: Outcome::Error,
            retry_after: None,
        }
    }

    fn timeout(after: Duration) -> Self {
        Self {
            reason: format!("no answer within {} ms", after.as_millis()),
            outcome: Outcome::Timeout,
            retry_after: None,
        }
    }
}

/// Finishes a relayed stream: health sample, log line, slots released.
struct StreamDone {
    health: HealthSink,
    upstream: Arc<crate::routing::Upstream>,
    model: Arc<str>,
    route: Arc<str>,
    key: Arc<str>,
    target_price: crate::routing::Price,
    started: Instant,
    ttfb: Duration,
    span: Span,
    _in_flight: InFlight,
    _admission: Option<Admission>,
}

impl OnStreamEnd for StreamDone {
    fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64) {
        let total = self.started.elapsed();
        let _enter = self.span.enter();
        let (outcome, total_sample) = match &end {
            StreamEnd::Complete => (Outcome::Success, Some(total)),
            StreamEnd::ClientGone => (Outcome::Success, None),
            StreamEnd::UpstreamFailed(_) => (Outcome::Broken, None),
        };
        self.health.record(
            &self.upstream,
            Sample {
                outcome,
                ttfb: Some(self.ttfb),
                total: total_sample,
            },
        );
        let cost = usage.map(|u| u.cost(&self.target_price));
        match end {
            StreamEnd::UpstreamFailed(reason) => warn!(
                route = %self.route, upstream = %self.upstream.id, model = %self.model, bytes,
                ttfb_ms = self.ttfb.as_millis() as u64, total_ms = total.as_millis() as u64,
                reason = %LogText(&reason), "stream interrupted by the upstream; client sent an error event"
            ),
            end => info!(
                key = %self.key, route = %self.route, upstream = %self.upstream.id, model = %self.model,
                stream = true, complete = end == StreamEnd::Complete, bytes,
                ttfb_ms = self.ttfb.as_millis() as u64, total_ms = total.as_millis() as u64,
                prompt_tokens = usage.map(|u| u.prompt_tokens), completion_tokens = usage.map(|u| u.completion_tokens),
                cost_usd = cost, "request done"
            ),
        }
    }
}

fn log_done(
    call: &Call<'_>,
    route: &Route,
    target: &Target,
    status: StatusCode,
    usage: Option<Usage>,
    ttfb: Duration,
    total: Duration,
) {
    info!(
        key = %call.key, route = %route.name, upstream = %target.upstream.id, model = %target.model,
        stream = false, status = status.as_u16(),
        ttfb_ms = ttfb.as_millis() as u64, total_ms = total.as_millis() as u64,
        prompt_tokens = usage.map(|u| u.prompt_tokens), completion_tokens = usage.map(|u| u.completion_tokens),
        cost_usd = usage.map(|u| u.cost(&target.price)), "request done"
    );
}

fn build_request(call: &Call<'_>, target: &Target) -> Request<Full<Bytes>> {
    let body = splice(call.body, call.model_span.clone(), &target.model_json);
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.upstream.uri(call.endpoint).clone();
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, JSON.clone());
    let accept = match (&call.accept, call.stream) {
        (Some(accept), _) => accept.clone(),
        (None, true) => HeaderValue::from_static("text/event-stream"),
        (None, false) => JSON.clone(),
    };
    headers.insert(http::header::ACCEPT, accept);
    headers.insert(X_REQUEST_ID.clone(), call.request_id.clone());
    if let Some((name, value)) = target.upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    request
}

async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, ProxyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ProxyError::TooLarge { limit: max });
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::TooLarge { limit: max })
        }
        Err(e) => Err(ProxyError::BadRequest {
            message: format!("The request body could not be read: {e}"),
            param: None,
        }),
    }
}

/// The first data frame of a streamed answer.
async fn first_data(body: &mut Incoming) -> Result<Bytes, String> {
    loop {
        match body.frame().await {
            None => return Err("the stream ended before any data".to_owned()),
            Some(Err(e)) => return Err(format!("the stream failed before any data: {e}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(data);
                }
            }
        }
    }
}

struct ErrorDetail {
    body: Bytes,
}

impl ErrorDetail {
    /// `" (message)"` from an OpenAI-style error body, if there is one,
    /// without the node's keys or anything like a key (scrubbed before it
    /// is cut, so a cut cannot leave half a key the scrubber misses).
    fn summary(&self, scrub: &Scrubber) -> String {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            message: String,
        }
        serde_json::from_slice::<Envelope>(&self.body)
            .ok()
            .map(|e| {
                let mut m = scrub.message(&e.error.message);
                if m.len() > 200 {
                    let mut cut = 200;
                    while !m.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    m.truncate(cut);
                    m.push('…');
                }
                format!(" ({m})")
            })
            .unwrap_or_default()
    }
}

async fn read_error_detail(body: Incoming) -> ErrorDetail {
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        Limited::new(body, 1 << 20).collect(),
    );
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    ErrorDetail { body }
}

/// Statuses that say this target failed, not the request: try another.
/// 401/403/404 mean the target is misconfigured (key, model), which another
/// target may well not be.
fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::NOT_FOUND
                | StatusCode::REQUEST_TIMEOUT
        )
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_connect() {
        "connect failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

fn copy_header(from: &HeaderMap, to: &mut HeaderMap, name: &HeaderName, scrub: &Scrubber) {
    if let Some(v) = from.get(name) {
        to.insert(name.clone(), scrub.header(v));
    }
}

fn models(snapshot: &RoutingSnapshot) -> Answered {
    let mut response = Response::new(ProxyBody::bytes(snapshot.models_body.clone()));
    response.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    Answered {
        response,
        upstream: HeaderValue::from_static("meridian"),
        attempts: 0,
        fallback: false,
    }
}

fn not_allowed(req: &Request<Incoming>, allowed: &'static str) -> ProxyError {
    ProxyError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        allowed,
    }
}

fn error_response(error: &ProxyError, attempts: usize) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::bytes(error.body()));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON.clone());
    headers.insert(X_ATTEMPTS.clone(), count_header(attempts));
    if let Some(wait) = error.retry_after() {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
        );
    }
    if let ProxyError::MethodNotAllowed { allowed, .. } = error {
        headers.insert(http::header::ALLOW, HeaderValue::from_static(allowed));
    }
    response
}

/// The client's `x-request-id` when it is a sane token, else a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    {
        return v.clone();
    }
    // 128 random bits from the thread-local generator (seeded from the OS,
    // reseeded periodically): unique without a syscall per request.
    let id: u128 = rand::random();
    HeaderValue::from_maybe_shared(Bytes::from(format!("{id:032x}")))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// A count as a header value, without allocating for the usual few.
fn count_header(n: usize) -> HeaderValue {
    const SMALL: [&str; 5] = ["0", "1", "2", "3", "4"];
    match SMALL.get(n) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_static("bad id with spaces"),
        );
        let fresh = request_id(&h);
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, request_id(&HeaderMap::new()));
    }

    #[test]
    fn counts_read_the_same_either_way() {
        for n in [0, 1, 4, 5, 12] {
            assert_eq!(count_header(n), HeaderValue::from(n));
        }
    }

    #[test]
    fn which_statuses_fail_over() {
        for s in [500, 502, 503, 504, 429, 401, 403, 404, 408] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 413, 422] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn error_detail_names_the_upstream_message() {
        let d = ErrorDetail {
            body: Bytes::from_static(br#"{"error":{"message":"overloaded","type":"x"}}"#),
        };
        let none = Scrubber::default();
        assert_eq!(d.summary(&none), " (overloaded)");
        assert_eq!(
            ErrorDetail {
                body: Bytes::from_static(b"<html>")
            }
            .summary(&none),
            ""
        );
        let key = "UPSECRETB+x/y=Zq81";
        let long = format!("{} {key} end", "x".repeat(185));
        let d = ErrorDetail {
            body: Bytes::from(
                serde_json::to_vec(&serde_json::json!({"error": {"message": long}})).unwrap(),
            ),
        };
        let summary = d.summary(&Scrubber::new([key]));
        assert!(!summary.contains("UPSECRETB"), "{summary}");
    }
}
