//! The finishing phase: what is told once an attempt or a request ends,
//! the same way for plain answers and for streams. An attempt's end gives
//! its upstream a health sample and, when it answered, the access log line
//! ("request done"); a request's end counts its answer (or its error) and
//! its latency in the route's metrics; a failover leaves an event in the
//! ring the dashboard reads. An answer with usage is counted in its
//! target's token and cost counters, and its [`Cost`] (from the answering
//! target's prices) is what the log line, the client's header and a
//! stream's `usage.cost` say.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use tracing::{Span, info, warn};

use super::Admission;
use crate::error::{AttemptError, ProxyError};
use crate::health::{HealthSink, Outcome, Sample};
use crate::metrics::TargetMetrics;
use crate::relay::{OnStreamEnd, StreamEnd};
use crate::routing::{InFlight, Price, Route, RoutingSnapshot, Target, Upstream};
use crate::scrub::LogText;
use crate::telemetry::{self, AttemptTrace};
use crate::tenants::Tenants;
use crate::usage::{Cost, Usage};

/// One attempt's end, to be told: its target, its request, its start.
/// Borrowed, so an attempt that ends at once costs no clones; a stream
/// takes what it needs into its [`StreamDone`].
pub(super) struct Finish<'a> {
    pub(super) health: &'a HealthSink,
    pub(super) route: &'a Route,
    pub(super) target: &'a Target,
    pub(super) key: &'a Arc<str>,
    /// Where each answer's usage is counted per key.
    pub(super) tenants: Option<&'a Arc<Tenants>>,
    pub(super) started: Instant,
    /// Whether the attempt's times say how fast the upstream generates: not
    /// for `count_tokens`, a lookup whose few milliseconds would make a slow
    /// model look fast. Its outcome counts either way.
    pub(super) timed: bool,
    /// The size of the request body sent: a stream left early is charged
    /// an input estimate from it ([`crate::usage::unreported`]).
    pub(super) prompt_bytes: usize,
}

impl Finish<'_> {
    fn record(&self, outcome: Outcome, ttfb: Option<Duration>, total: Option<Duration>) {
        self.health.record(
            &self.target.upstream,
            Sample {
                outcome,
                ttfb,
                total,
            },
        );
    }

    /// The attempt failed: its health sample (a timeout's `ttfb` is the
    /// time it had). Its log line and failover event come when the
    /// failover learns of it.
    pub(super) fn failed(&self, error: &AttemptError, ttfb: Option<Duration>) {
        let outcome = if error.is_timeout() {
            Outcome::Timeout
        } else {
            Outcome::Error
        };
        self.record(outcome, ttfb, None);
        let status = match error {
            AttemptError::Status { code, .. } => Some(code.as_u16()),
            _ => None,
        };
        telemetry::with_attempt(|t| t.failed(error.is_timeout(), status, ttfb));
    }

    /// A plain answer read whole (a success, or the client's own mistake
    /// passed through): its health sample, its counters and its access log
    /// line. Returns its cost, when its usage and a price are known.
    pub(super) fn plain(
        &self,
        outcome: Outcome,
        status: StatusCode,
        ttfb: Duration,
        usage: Option<Usage>,
    ) -> Option<Cost> {
        let total = self.started.elapsed();
        if self.timed {
            self.record(outcome, Some(ttfb), Some(total));
        } else {
            self.record(outcome, None, None);
        }
        let (route, target) = (self.route, self.target);
        let cost = spent(&target.metrics, usage, &target.price);
        if outcome == Outcome::Success
            && let Some(tenants) = self.tenants
        {
            tenants.answered(
                self.key,
                &route.name,
                &target.upstream.id,
                counters(usage, cost),
            );
        }
        info!(
            key = %self.key, route = %route.name, upstream = %target.upstream.id, model = %target.model,
            stream = false, status = status.as_u16(),
            ttfb_ms = ttfb.as_millis() as u64, total_ms = total.as_millis() as u64,
            prompt_tokens = usage.map(|u| u.prompt_tokens), completion_tokens = usage.map(|u| u.completion_tokens),
            cached_tokens = usage.map(|u| u.cached_tokens), cost_usd = cost.map(Cost::usd), "request done"
        );
        telemetry::with_attempt(|t| t.answered(outcome, status.as_u16(), ttfb, usage, cost));
        cost
    }

    /// A stream whose first chunk arrived after `ttfb`: what finishes it
    /// when it ends.
    pub(super) fn stream(&self, ttfb: Duration, in_flight: InFlight) -> StreamDone {
        // The first byte is news now: a brownout on streams moves traffic
        // as fast as one on plain answers, not once the streams end.
        self.health.first_byte(&self.target.upstream, ttfb);
        let trace = AttemptTrace::current();
        if let Some(trace) = &trace {
            trace.streaming(StatusCode::OK.as_u16(), ttfb);
        }
        StreamDone {
            trace,
            health: self.health.clone(),
            target_price: self.target.price,
            metrics: self.target.metrics.clone(),
            model: self.target.model.clone(),
            route: self.route.name.clone(),
            key: self.key.clone(),
            tenants: self.tenants.cloned(),
            started: self.started,
            ttfb,
            prompt_estimate: crate::usage::unreported::prompt_estimate(self.prompt_bytes),
            span: Span::current(),
            _in_flight: in_flight,
            _admission: None,
            upstream: self.target.upstream.clone(),
        }
    }
}

/// Finishes a relayed stream: health sample, log line, slots released.
pub(super) struct StreamDone {
    health: HealthSink,
    upstream: Arc<Upstream>,
    model: Arc<str>,
    route: Arc<str>,
    key: Arc<str>,
    tenants: Option<Arc<Tenants>>,
    target_price: Price,
    metrics: Arc<TargetMetrics>,
    started: Instant,
    ttfb: Duration,
    /// The input tokens charged if the client leaves before the usage comes.
    prompt_estimate: u64,
    span: Span,
    /// The attempt's span and its request's, ended with the stream.
    trace: Option<AttemptTrace>,
    _in_flight: InFlight,
    /// The request's in-flight slot, held until the stream ends.
    pub(super) _admission: Option<Admission>,
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
        self.health.stream_ended(
            &self.upstream,
            Sample {
                outcome,
                ttfb: Some(self.ttfb),
                total: total_sample,
            },
        );
        let cost = spent(&self.metrics, usage, &self.target_price);
        if let Some(trace) = &self.trace {
            let ended = match &end {
                StreamEnd::Complete => "complete",
                StreamEnd::ClientGone => "client_gone",
                StreamEnd::UpstreamFailed(_) => "broken",
            };
            trace.stream_ended(ended, usage, cost);
        }
        if let Some(tenants) = &self.tenants {
            tenants.answered(
                &self.key,
                &self.route,
                &self.upstream.id,
                counters(usage, cost),
            );
        }
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
                cached_tokens = usage.map(|u| u.cached_tokens), cost_usd = cost.map(Cost::usd), "request done"
            ),
        }
    }

    fn price(&self) -> Option<Price> {
        Some(self.target_price).filter(Price::is_known)
    }

    fn prompt_estimate(&self) -> Option<u64> {
        Some(self.prompt_estimate)
    }
}

/// An answer's usage counted on its target, and its cost at `price`.
fn spent(metrics: &TargetMetrics, usage: Option<Usage>, price: &Price) -> Option<Cost> {
    let usage = usage?;
    let cost = usage.cost(price);
    metrics.spent(
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.completion_tokens,
        cost.map(Cost::nanodollars),
    );
    cost
}

/// One answered request as the tenants' usage counts it.
fn counters(usage: Option<Usage>, cost: Option<Cost>) -> proto::tenancy::Counters {
    proto::tenancy::Counters {
        requests: 1,
        input_tokens: usage.map_or(0, |u| u.prompt_tokens),
        output_tokens: usage.map_or(0, |u| u.completion_tokens),
        cost_nanos: cost.map_or(0, Cost::nanodollars),
    }
}

/// A failed attempt, once its text is scrubbed: its log line.
pub(super) fn attempt_failed(target: &Target, error: &AttemptError) {
    warn!(upstream = %target.upstream.id, model = %target.model, reason = %LogText(error), "attempt failed");
}

/// Failed attempts handing over to `to`: each counted on its target and
/// left as an event for the dashboard.
pub(super) fn handed_over(
    snapshot: &RoutingSnapshot,
    request_id: &http::HeaderValue,
    route: &Route,
    from: &Target,
    to: &Target,
    reason: &AttemptError,
) {
    from.metrics.failovers.fetch_add(1, Ordering::Relaxed);
    snapshot.metrics.events.push(
        request_id.to_str().unwrap_or("-"),
        &route.name,
        &from.upstream.id,
        &to.upstream.id,
        &reason.to_string(),
    );
}

/// The request was answered by `winner` with `status`, `took` after it
/// was routed.
pub(super) fn answered(
    route: &Route,
    winner: &Target,
    status: StatusCode,
    took: Duration,
    hedge_won: bool,
) {
    winner.metrics.answers.inc(status.as_u16());
    route.metrics.latency.observe(took);
    if hedge_won {
        route.metrics.hedges_won.fetch_add(1, Ordering::Relaxed);
    }
}

/// The request got no answer from its route's upstreams.
pub(super) fn gave_up(route: &Route, error: &ProxyError, started: Instant) {
    route.metrics.unanswered.inc(error.status().as_u16());
    route.metrics.latency.observe(started.elapsed());
}

/// A request of priority class `class` (its rank) ended: answered after
/// `latency` (an answer ready to send, a stream's first chunk), or with
/// none (`None`): counted in its class's service level (`crate::metrics::sla`).
pub(super) fn class_done(snapshot: &RoutingSnapshot, class: usize, latency: Option<Duration>) {
    snapshot
        .metrics
        .classes
        .load()
        .record(class, crate::health::cooldown::now_ms(), latency);
}
