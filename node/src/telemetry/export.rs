//! The OTLP exporter's HTTP client: the node's own hyper client (rustls,
//! webpki roots), so no second HTTP stack (reqwest) or gRPC (tonic) enters
//! the build.
//!
//! The SDK's batch processor exports from its own thread, outside the
//! runtime; each export is spawned onto the node's runtime, where hyper's
//! connections live, and only its outcome crosses back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;

use crate::upstream::UpstreamClient;

/// The most of a collector's answer read (its partial-success message).
const MAX_ANSWER: usize = 64 * 1024;

/// Posts OTLP batches through the node's hyper client.
#[derive(Clone)]
pub(super) struct Exporter {
    client: UpstreamClient,
    runtime: Handle,
    /// How long one post may take, its answer included.
    timeout: Duration,
    /// Whether the last post failed: a failing collector is logged once,
    /// and again when it is back, not once per batch.
    failing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    pub(super) fn new(client: UpstreamClient, runtime: Handle, timeout: Duration) -> Self {
        Self {
            client,
            runtime,
            timeout,
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn post(
        client: UpstreamClient,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
    }

    /// Logs a change between working and failing, once each way.
    fn tell(&self, outcome: &Result<Response<Bytes>, HttpError>) {
        let failure = match outcome {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            Some(why) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %why, "OTLP export failed; spans are dropped until the collector answers");
                }
            }
            None => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("OTLP export works again");
                }
            }
        }
    }
}

impl HttpClient for Exporter {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let task = self
            .runtime
            .spawn(Self::post(self.client.clone(), request, self.timeout));
        Box::pin(async move {
            let outcome = task.await.map_err(HttpError::from).and_then(|r| r);
            self.tell(&outcome);
            outcome
        })
    }
}
