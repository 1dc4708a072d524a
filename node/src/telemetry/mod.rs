//! OpenTelemetry traces: W3C trace context in from the client, a span for
//! the request and one per attempt, the context out to the upstream, and
//! the spans exported over OTLP/HTTP (protobuf) when `[telemetry]` names a
//! collector.
//!
//! Off (no `otlp_endpoint`), nothing here runs: no tracer, no exporter, no
//! span is built, and a client's valid `traceparent` goes to the upstream
//! unchanged (the W3C asks a system that does not take part in a trace to
//! forward it). On, the upstream is sent the same trace id with the
//! attempt's own span as the parent; a request with no valid
//! `traceparent` (malformed, too long, all-zero ids, version `ff`) starts
//! a new trace rather than failing.
//!
//! The spans are built with the `opentelemetry` API directly rather than
//! through `tracing-opentelemetry`: an attempt's span id must be known
//! when its upstream request is built, hedged attempts run side by side in
//! one task, and a stream's spans end long after the handler returns;
//! explicit contexts say that plainly, and the node's `tracing` log lines
//! stay as they are.
//!
//! - [`propagation`]: `traceparent` read and written (pure).
//! - `spans.rs`: the request's and the attempts' spans.
//! - `export.rs`: the exporter's HTTP client (the node's hyper client).

mod export;
pub mod propagation;
mod spans;

pub use spans::{AttemptTrace, RequestTrace, upstream_traceparent, with_attempt};

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use proto::config::{ProxyConfig, TelemetryConfig, UpstreamConfig};

/// How long one export may take, the collector's answer included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutting down waits for the last spans to leave.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest client path recorded on a span.
const MAX_PATH: usize = 256;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Why tracing could not start; the node refuses to start rather than run
/// without the traces its operator asked for.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The collector's URL cannot be dialled.
    #[error("telemetry.otlp_endpoint: {0}")]
    Endpoint(String),
    /// Not called on the node's runtime.
    #[error("tracing must start on the node's runtime")]
    NoRuntime,
}

impl TelemetryError {
    /// The configuration field to fix, when one is at fault.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Endpoint(_) => Some("telemetry.otlp_endpoint"),
            Self::NoRuntime => None,
        }
    }
}

/// The node's tracer and the provider that batches and exports its spans.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Starts exporting as `config` says, on the current runtime; `None`
    /// when it names no collector (tracing off).
    pub fn start(config: &TelemetryConfig) -> Result<Option<Self>, TelemetryError> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let collector = UpstreamConfig {
            id: "otlp".to_owned(),
            base_url: url.clone(),
            ..UpstreamConfig::default()
        };
        let client = crate::upstream::client_for(&collector, &ProxyConfig::default())
            .map_err(|e| TelemetryError::Endpoint(e.to_string()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(export::Exporter::new(client, runtime, EXPORT_TIMEOUT))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError::Endpoint(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("meridian");
        Ok(Some(Self { provider, tracer }))
    }

    /// The span of `req` (its request id `id`); none when tracing is off.
    pub fn trace<B>(
        telemetry: Option<&Self>,
        req: &http::Request<B>,
        id: &http::HeaderValue,
    ) -> RequestTrace {
        match telemetry {
            Some(t) => t.request(
                req.headers(),
                req.method().as_str(),
                req.uri().path(),
                id.to_str().unwrap_or("-"),
            ),
            None => RequestTrace::off(),
        }
    }

    /// The span of a request that came with `headers`: a child of the
    /// client's span when its `traceparent` is valid (exactly one, version
    /// 00), else the root of a new trace.
    pub fn request(&self, headers: &HeaderMap, method: &str, path: &str, id: &str) -> RequestTrace {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        let client = match (values.next(), values.next()) {
            (Some(one), None) => propagation::parse(one.as_bytes()),
            _ => None,
        };
        let parent = match client {
            Some(span) => Context::new().with_remote_span_context(span),
            None => Context::new(),
        };
        let mut cut = path.len().min(MAX_PATH);
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        let span = self
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path[..cut].to_owned()),
                KeyValue::new("meridian.request_id", id.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        RequestTrace::started(parent.with_span(span), self.tracer.clone())
    }

    /// Exports what is left and stops; off the runtime's workers, since
    /// the exporter's last posts run on them.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the last spans could not be exported"),
            Err(e) => tracing::warn!(error = %e, "the last spans could not be exported"),
        }
    }
}
