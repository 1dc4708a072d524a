//! The data plane: one OpenAI-compatible request in, one answer out.
//!
//! A request is authenticated, its body read (bounded) and probed for
//! `model` and `stream`, its route looked up in the current snapshot, and
//! its targets tried in the order [`crate::select::plan`] gives, each
//! attempt bounded by the route's first-byte timeout and the request's
//! deadline. Nothing is
//! retried once a byte has reached the client: a plain answer is read whole
//! before it is sent, and a stream is committed only once its first chunk
//! has arrived.
//!
//! # Layout
//!
//! - `mod.rs`: the request's edge: authentication, the body, the route, the
//!   headers and the error bodies.
//! - [`failover`]: the failover as a pure state machine: which target next,
//!   with what timeout, when to hedge, when to give up and with what error.
//! - `route.rs`: the failover's decisions carried out against a route.
//! - `attempt.rs`: the upstream I/O of one attempt, failing with a typed
//!   [`AttemptError`](crate::error::AttemptError).
//! - `finish.rs`: the finishing phase of attempts and requests (health
//!   sample, metrics, access log, failover events), for plain answers and
//!   streams alike.
//! - `forms.rs`: the request as each kind of target is sent it (the
//!   client's own body, or its translation to the other API);
//!   `request.rs`: one attempt's upstream request, and the shape of its
//!   stream for the client; `headers.rs`: the client headers it passes on
//!   (trace context, `openai-beta`, the user agent), checked, and the
//!   upstream's request id given back; `models.rs`: `/v1/models` and
//!   `/v1/models/{id}` (filtered by the key's allowlist); `stored.rs`: the
//!   Responses API's calls on a stored response; `own_usage.rs`: a key's
//!   own `GET /v1/usage`; `ids.rs`: the request id and the attempt count
//!   on every answer.
//!
//! A key with limits ([`crate::tenants`]) is checked once its model is
//! known, before routing: its allowlist (403), its credits, its requests
//! and its tokens per minute (429); every answer to a key with `rpm` or
//! `tpm` carries OpenAI's `x-ratelimit-*` headers.
//!
//! Clients of Anthropic's Messages API (`/v1/messages`) are served the same
//! way; what differs is the shape of their errors ([`Dialect`]) and, for
//! targets of the other API, the translation of the request, the answer and
//! the stream ([`crate::translate`]).

mod attempt;
mod body;
mod client_body;
pub mod failover;
mod finish;
mod forms;
mod headers;
mod ids;
mod models;
mod own_usage;
mod ready;
mod refused;
mod request;
mod route;
mod stored;
#[cfg(test)]
#[path = "tenant_tests.rs"]
mod tenant_tests;

pub use body::ProxyBody;
pub use forms::DEFAULT_MAX_TOKENS;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use tracing::{Instrument, info, warn};

use crate::capacity::Capacity;
use crate::cluster::standing::Standing;
use crate::error::ProxyError;
use crate::health::HealthSink;
use crate::metrics::ShedReason;
use crate::request_body::probe;
use crate::responses::{self, Owner, ResponsesCall, Seal};
use crate::routing::{Dialect, Endpoint, RoutingSnapshot};
use crate::scrub::{LogText, Scrubber};
use crate::select::Policy;
use crate::server::RequestBody;
use crate::telemetry::{RequestTrace, Telemetry};
use crate::tenants::{KeyState, Tenants};
use forms::Forms;
use ids::{count_header, request_id};
use refused::{error_response, not_allowed};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_UPSTREAM: HeaderName = HeaderName::from_static("x-meridian-upstream");
static X_REGION: HeaderName = HeaderName::from_static("x-meridian-region");
static X_ATTEMPTS: HeaderName = HeaderName::from_static("x-meridian-attempts");
static X_FALLBACK: HeaderName = HeaderName::from_static("x-meridian-fallback");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Shared state of the data plane.
pub struct Proxy {
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    health: HealthSink,
    policy: Policy,
    in_flight: Arc<AtomicUsize>,
    /// How long a request body may take to arrive whole.
    body_timeout: Duration,
    /// The keys' limits and usage; `None`: no key has any.
    tenants: Option<Arc<Tenants>>,
    /// The priority classes, and the upstreams' capacity they divide.
    capacity: Arc<Capacity>,
    /// The tracer; `None`: tracing is off and no span is built.
    telemetry: Option<Arc<Telemetry>>,
    /// Where this node stands in its cluster; `None` outside one (tests).
    standing: Option<Arc<Standing>>,
    /// Binds stored responses' ids to their keys (`[responses]
    /// secret_env`); `None`: ids are bound to no key.
    seal: Option<Arc<Seal>>,
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
    /// The one upstream a follow-up of a stored response may go to.
    pinned: Option<String>,
    /// The API the client speaks.
    dialect: Dialect,
    /// The request as each kind of target is sent it.
    forms: Forms,
    stream: bool,
    /// The client's `anthropic-version` and `anthropic-beta`, checked, for
    /// native Anthropic targets.
    anthropic_version: Option<HeaderValue>,
    anthropic_beta: Option<HeaderValue>,
    /// The client headers passed on (trace context, `openai-beta`, its
    /// user agent after Meridian's, `accept`), checked.
    passed: headers::Passed,
    key: Arc<str>,
    /// The key's priority class, its rank in `[[classes]]` (0 without classes).
    class: usize,
    request_id: &'a HeaderValue,
    /// The request's span, whose attempts are its children (or nothing).
    trace: RequestTrace,
    max_response_bytes: usize,
    /// The longest a stream may last (`proxy.max_stream_ms`).
    max_stream: Duration,
    /// Takes the node's provider keys out of what upstreams send back.
    scrub: &'a Arc<Scrubber>,
    /// Binds the Responses ids handed out to `key`, when the cluster does.
    seal: Option<&'a Arc<Seal>>,
}

impl Call<'_> {
    /// Whose Responses ids this call hands out.
    fn owner(&self) -> Owner<'_> {
        Owner::new(self.seal.map(|seal| &**seal), &self.key)
    }
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
            tenants: None,
            capacity: Arc::new(Capacity::default()),
            telemetry: None,
            standing: None,
            seal: None,
        }
    }

    /// The same data plane with the priority classes of `[[classes]]`,
    /// each with its share of every upstream's `max_concurrency` and of
    /// `proxy.max_in_flight` ([`crate::capacity`]).
    pub fn with_classes(mut self, classes: &[proto::config::ClassConfig]) -> Self {
        let capacity = Capacity::new(classes);
        self.snapshot
            .load()
            .metrics
            .shed
            .set_classes(capacity.classes().iter().map(|c| &c.name));
        self.capacity = Arc::new(capacity);
        self
    }

    /// The same data plane checking each key's limits against `tenants`
    /// and counting its usage there.
    pub fn with_tenants(mut self, tenants: Arc<Tenants>) -> Self {
        self.tenants = Some(tenants);
        self
    }

    /// The same data plane refusing every request (503) once the cluster
    /// removed this node, whose configuration may then be stale.
    pub fn with_standing(mut self, standing: Arc<Standing>) -> Self {
        self.standing = Some(standing);
        self
    }

    /// The same data plane binding the stored responses' ids it hands out
    /// to the key they are handed to, and taking no other ([`Seal`]).
    pub fn with_seal(mut self, seal: Arc<Seal>) -> Self {
        self.seal = Some(seal);
        self
    }

    /// The same data plane tracing each request and attempt.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
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
        req: Request<RequestBody>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let request_id = request_id(req.headers());
        let dialect = Endpoint::dialect_of_path(req.uri().path());
        let span = tracing::info_span!("request", id = %request_id.to_str().unwrap_or("-"));
        let snapshot = self.snapshot.load_full();
        let trace = Telemetry::trace(self.telemetry.as_deref(), &req, &request_id);
        let mut limited = None;
        let result = self
            .serve(req, &snapshot, &request_id, &trace, &mut limited)
            .instrument(span.clone())
            .await;
        let attempts = match &result {
            Ok(answered) => answered.attempts,
            Err(failed) => failed.attempts,
        };
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
                if failed.error.retryable() {
                    warn!(status = status.as_u16(), attempts = failed.attempts, error = %error, "request failed");
                } else {
                    info!(status = status.as_u16(), error = %error, "request refused");
                }
                error_response(&failed.error, failed.attempts, dialect)
            }
        };
        let streaming = matches!(response.body(), ProxyBody::Stream(_));
        trace.answered(response.status().as_u16(), attempts, streaming);
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID.clone(), request_id);
        headers.insert(X_REGION.clone(), snapshot.region.clone());
        if let Some(key) = limited {
            key.headers(crate::tenants::now_ms()).apply(headers);
        }
        Ok(response)
    }

    async fn serve(
        &self,
        req: Request<RequestBody>,
        snapshot: &RoutingSnapshot,
        request_id: &HeaderValue,
        trace: &RequestTrace,
        limited: &mut Option<Arc<KeyState>>,
    ) -> Result<Answered, Failed> {
        // A removed node may hold a deleted route or a revoked key: it
        // serves nothing, whoever asks.
        if self.standing.as_ref().is_some_and(|s| s.removed()) {
            return Err(ProxyError::Removed.into());
        }
        // Authenticate before anything else, so an unauthenticated caller
        // learns nothing, not even which models or paths exist.
        let key = snapshot.keys.authenticate(req.headers())?;
        // A node open to anyone on loopback serves `anonymous`, which no
        // tenant is; any other key the table admits has a tenant.
        let tenant = match self.tenants.as_deref() {
            Some(tenants) if !snapshot.keys.accepts_anyone() => Some(tenants.admitted(&key)?),
            _ => None,
        };
        *limited = tenant.clone().filter(|t| t.is_rate_limited());
        let path = req.uri().path();
        // The Responses API's calls on a stored response go to the upstream
        // that holds it, with no route; a new response is routed below.
        let owner = Owner::new(self.seal.as_deref(), &key);
        match responses::parse_call(req.method(), path, req.uri().query(), owner)
            .map_err(ProxyError::from)?
        {
            None | Some(ResponsesCall::Create) => {}
            Some(stored) => {
                return self
                    .stored_response(stored, req, snapshot, request_id, &key)
                    .await;
            }
        }
        let endpoint = match (req.method(), path.trim_end_matches('/')) {
            (&Method::GET, "/v1/models") => return Ok(models::list(snapshot, tenant.as_deref())),
            (&Method::GET, "/v1/usage") => {
                return Ok(own_usage::answer(self.tenants.as_deref(), &key, req.uri())?);
            }
            (_, "/v1/usage") => return Err(not_allowed(&req, "GET").into()),
            (_, "/v1/models") => return Err(not_allowed(&req, "GET").into()),
            (method, p) if p.starts_with("/v1/models/") => {
                if method != Method::GET {
                    return Err(not_allowed(&req, "GET").into());
                }
                return Ok(models::retrieve(
                    snapshot,
                    &p["/v1/models/".len()..],
                    tenant.as_deref(),
                )?);
            }
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
        request::no_client_query(req.uri().query())?;
        let (anthropic_version, anthropic_beta) = request::anthropic_headers(req.headers())?;
        let passed = headers::Passed::from_client(req.headers())?;
        let max = snapshot.proxy.max_request_bytes;
        let body = client_body::read(req, max, self.body_timeout).await?;
        // The node's slots are divided among the classes as an upstream's
        // are: a full node sheds the lowest class first.
        let rank = self
            .capacity
            .rank(tenant.as_deref().and_then(KeyState::class));
        let class = rank;
        let limit = snapshot.proxy.max_in_flight;
        let admission = Admission(self.in_flight.clone());
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.capacity.node_limit(limit, rank) {
            snapshot.metrics.shed.shed(rank, ShedReason::NodeInFlight);
            finish::class_done(snapshot, class, None);
            return Err(ProxyError::Overloaded { limit }.into());
        }
        let probed = probe(&body)?;
        if let Some(tenant) = &tenant {
            tenant
                .admit(&probed.model, crate::tenants::now_ms())
                .map_err(|refusal| refusal.into_error(&probed.model))?;
        }
        let route = snapshot
            .lookup(&probed.model)
            .map_err(|miss| miss.into_error(&probed.model))?;
        // A follow-up of a stored response goes where that response lives.
        let (pinned, body) = match endpoint {
            Endpoint::Responses => {
                if tenant.as_deref().is_some_and(KeyState::is_metered) {
                    responses::check_metered(&body).map_err(ProxyError::from)?;
                }
                match responses::previous_response(&body, owner).map_err(ProxyError::from)? {
                    Some((upstream, own)) => (Some(upstream), own),
                    None => (None, body.clone()),
                }
            }
            _ => (None, body.clone()),
        };
        let model_span = match pinned {
            Some(_) => probe(&body)?.model_span,
            None => probed.model_span.clone(),
        };
        let forms = Forms::new(endpoint, &body, model_span, probed.stream, &route)?;
        if let Some(upstream) = &pinned {
            forms.pin(upstream, &route)?;
        }
        let call = Call {
            pinned,
            dialect: endpoint.dialect(),
            forms,
            stream: probed.stream,
            anthropic_version,
            anthropic_beta,
            passed,
            key,
            class,
            request_id,
            trace: trace.clone(),
            max_response_bytes: snapshot.proxy.max_response_bytes,
            max_stream: Duration::from_millis(snapshot.proxy.max_stream_ms),
            scrub: &snapshot.scrub,
            seal: self.seal.as_ref(),
        };
        self.route(&call, &route, snapshot, admission, rank).await
    }
}
