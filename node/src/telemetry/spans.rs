//! The spans of one request: the request's own (route, key name, status,
//! tokens, cost) and one per attempt (upstream, model, target, tier,
//! outcome, status, time to first byte), its child.
//!
//! An attempt's span travels with its future in a task-local
//! ([`RequestTrace::scope`]), so that the code that builds its upstream
//! request ([`upstream_traceparent`]) and the code that finishes it
//! ([`with_attempt`]) find it without it being passed through every call;
//! two hedged attempts raced in one task each see their own. With tracing
//! off, a request has no span and every call here does nothing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::HeaderValue;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use tokio::task::futures::TaskLocalFuture;

use crate::health::Outcome;
use crate::usage::{Cost, Usage};

tokio::task_local! {
    /// The attempt whose future is being polled, when traced.
    static ATTEMPT: Option<AttemptTrace>;
}

/// A request's span, or nothing when tracing is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct RequestTrace {
    inner: Option<Arc<RequestInner>>,
}

struct RequestInner {
    cx: Context,
    tracer: SdkTracer,
}

impl RequestTrace {
    /// No span: tracing is off.
    pub fn off() -> Self {
        Self::default()
    }

    pub(super) fn started(cx: Context, tracer: SdkTracer) -> Self {
        Self {
            inner: Some(Arc::new(RequestInner { cx, tracer })),
        }
    }

    /// Whether the request is traced (its attempts get spans).
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    fn span(&self) -> Option<opentelemetry::trace::SpanRef<'_>> {
        self.inner.as_ref().map(|i| i.cx.span())
    }

    /// The request's trace id, as hex, when traced (for tests and logs).
    pub fn trace_id(&self) -> Option<String> {
        self.span().map(|s| s.span_context().trace_id().to_string())
    }

    /// Its route and the name of the key that sent it (never the key).
    pub fn routed(&self, route: &str, key_name: &str) {
        if let Some(span) = self.span() {
            span.set_attributes([
                KeyValue::new("meridian.route", route.to_owned()),
                KeyValue::new("meridian.key", key_name.to_owned()),
            ]);
        }
    }

    /// Its answer's head: the status and how many attempts it took. A
    /// plain answer's span ends here; a stream's when the stream ends.
    pub fn answered(&self, status: u16, attempts: usize, streaming: bool) {
        let Some(span) = self.span() else {
            return;
        };
        span.set_attributes([
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("meridian.attempts", count(attempts)),
        ]);
        if status >= 500 {
            span.set_status(Status::error(format!("HTTP {status}")));
        }
        if !streaming {
            span.end();
        }
    }

    /// Runs `attempt` with its own span, a child of the request's: `tier`
    /// and `target` say which of the route's targets it tries.
    pub fn scope<F: Future>(
        &self,
        upstream: &str,
        model: &str,
        tier: usize,
        attempt: F,
    ) -> TaskLocalFuture<Option<AttemptTrace>, F> {
        let trace = self.inner.as_ref().map(|inner| {
            let span = inner
                .tracer
                .span_builder(format!("attempt {upstream}"))
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("meridian.upstream", upstream.to_owned()),
                    KeyValue::new("gen_ai.request.model", model.to_owned()),
                    KeyValue::new("meridian.target", format!("{upstream}/{model}")),
                    KeyValue::new("meridian.tier", count(tier)),
                ])
                .start_with_context(&inner.tracer, &inner.cx);
            AttemptTrace {
                inner: Arc::new(AttemptInner {
                    cx: inner.cx.with_span(span),
                    request: inner.cx.clone(),
                    done: AtomicBool::new(false),
                }),
            }
        });
        ATTEMPT.scope(trace, attempt)
    }
}

/// One attempt's span, and its request's (which a stream ends). Cheap to
/// clone; the span ends when it is told its outcome, or as `cancelled`
/// when the attempt is dropped first (the loser of a hedge).
#[derive(Clone)]
pub struct AttemptTrace {
    inner: Arc<AttemptInner>,
}

struct AttemptInner {
    cx: Context,
    request: Context,
    done: AtomicBool,
}

impl Drop for AttemptInner {
    fn drop(&mut self) {
        if !self.done.swap(true, Ordering::Relaxed) {
            let span = self.cx.span();
            span.set_attribute(KeyValue::new("meridian.outcome", "cancelled"));
            span.end();
        }
    }
}

impl AttemptTrace {
    /// The attempt in scope, when traced.
    pub fn current() -> Option<Self> {
        ATTEMPT.try_with(Clone::clone).ok().flatten()
    }

    /// The upstream failed it: `status` when it answered with one.
    pub fn failed(&self, timeout: bool, status: Option<u16>, ttfb: Option<Duration>) {
        let span = self.inner.cx.span();
        let outcome = if timeout { "timeout" } else { "error" };
        span.set_attribute(KeyValue::new("meridian.outcome", outcome));
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(ttfb) = ttfb {
            span.set_attribute(ttfb_ms(ttfb));
        }
        span.set_status(Status::error(outcome));
        self.end();
    }

    /// A plain answer read whole (a success, or the client's own mistake
    /// passed through), its usage and cost counted on both spans.
    pub fn answered(
        &self,
        outcome: Outcome,
        status: u16,
        ttfb: Duration,
        usage: Option<Usage>,
        cost: Option<Cost>,
    ) {
        let span = self.inner.cx.span();
        span.set_attributes([
            KeyValue::new("meridian.outcome", outcome_name(outcome)),
            KeyValue::new("http.response.status_code", i64::from(status)),
            ttfb_ms(ttfb),
        ]);
        self.spent(usage, cost);
        self.end();
    }

    /// A stream's first chunk arrived after `ttfb`; it is relayed now.
    pub fn streaming(&self, status: u16, ttfb: Duration) {
        self.inner.cx.span().set_attributes([
            KeyValue::new("http.response.status_code", i64::from(status)),
            ttfb_ms(ttfb),
        ]);
    }

    /// The stream ended (`complete`, `client_gone` or `broken`): both
    /// spans end, the request's with the usage and cost.
    pub fn stream_ended(&self, end: &'static str, usage: Option<Usage>, cost: Option<Cost>) {
        let span = self.inner.cx.span();
        span.set_attribute(KeyValue::new("meridian.outcome", end));
        if end == "broken" {
            span.set_status(Status::error("the upstream broke the stream"));
        }
        self.spent(usage, cost);
        self.end();
        self.inner.request.span().end();
    }

    /// Tokens and cost, on the attempt and on its request.
    fn spent(&self, usage: Option<Usage>, cost: Option<Cost>) {
        let mut values = Vec::with_capacity(3);
        if let Some(u) = usage {
            values.push(KeyValue::new(
                "gen_ai.usage.input_tokens",
                tokens(u.prompt_tokens),
            ));
            values.push(KeyValue::new(
                "gen_ai.usage.output_tokens",
                tokens(u.completion_tokens),
            ));
        }
        if let Some(cost) = cost {
            values.push(KeyValue::new("meridian.cost_usd", cost.usd()));
        }
        if !values.is_empty() {
            self.inner.cx.span().set_attributes(values.clone());
            self.inner.request.span().set_attributes(values);
        }
    }

    fn end(&self) {
        if !self.inner.done.swap(true, Ordering::Relaxed) {
            self.inner.cx.span().end();
        }
    }

    /// The `traceparent` an upstream is sent: this attempt as the parent.
    fn traceparent(&self) -> Option<HeaderValue> {
        super::propagation::format(self.inner.cx.span().span_context())
    }
}

/// Runs `f` on the attempt in scope, when traced.
pub fn with_attempt(f: impl FnOnce(&AttemptTrace)) {
    let _ = ATTEMPT.try_with(|attempt| {
        if let Some(attempt) = attempt {
            f(attempt);
        }
    });
}

/// The `traceparent` for the upstream request being built, when this
/// attempt is traced: the client's trace (or a new one), the attempt's
/// span as the parent.
pub fn upstream_traceparent() -> Option<HeaderValue> {
    ATTEMPT
        .try_with(|attempt| attempt.as_ref().and_then(AttemptTrace::traceparent))
        .ok()
        .flatten()
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::ClientError => "client_error",
        Outcome::Error => "error",
        Outcome::Broken => "broken",
        Outcome::Timeout => "timeout",
    }
}

fn ttfb_ms(ttfb: Duration) -> KeyValue {
    KeyValue::new(
        "meridian.ttfb_ms",
        i64::try_from(ttfb.as_millis()).unwrap_or(i64::MAX),
    )
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
