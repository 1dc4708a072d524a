//! The HTTP client and the timing of one request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::record::micros;
use super::{LoadError, Outcome, Record, RequestKind, RequestSpec};

/// Answer header naming the upstream that served a proxied request.
const UPSTREAM_HEADER: &str = "x-meridian-upstream";
/// Answer header counting the attempts a proxied request took.
const ATTEMPTS_HEADER: &str = "x-meridian-attempts";

/// HTTP/1.1 client with a keep-alive pool.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client whose pool keeps up to `pool_size` idle connections per host
/// (size it for the run's concurrency, so connections are reused rather than
/// reopened), with Nagle's algorithm off so small requests leave at once.
pub(crate) fn build(pool_size: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool_size)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// Sends `spec` once and times it from `due` (its scheduled time). Never
/// fails: every ending is an [`Outcome`].
pub(crate) async fn measure(
    client: &HttpClient,
    spec: &RequestSpec,
    index: usize,
    due: Instant,
    run_start: Instant,
    timeout: Duration,
) -> Record {
    let mut record = Record {
        spec: index,
        scheduled_us: micros(due.saturating_duration_since(run_start)),
        outcome: Outcome::Timeout,
        latency_us: None,
        ttfb_us: None,
        upstream: None,
        attempts: None,
    };
    let exchange = exchange(client, spec, due, &mut record);
    record.outcome = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Outcome::Timeout);
    record.latency_us = Some(since(due));
    record
}

/// The request itself: sends, reads the answer to its end, and fills in
/// TTFB and the Meridian headers on the way.
async fn exchange(
    client: &HttpClient,
    spec: &RequestSpec,
    due: Instant,
    record: &mut Record,
) -> Outcome {
    let response = match client.request(spec.to_request()).await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Outcome::Connect,
        Err(_) => return Outcome::Transport,
    };
    if spec.kind == RequestKind::Plain {
        record.ttfb_us = Some(since(due));
    }
    let status = response.status();
    record.upstream = header(response.headers(), UPSTREAM_HEADER).map(str::to_owned);
    record.attempts = header(response.headers(), ATTEMPTS_HEADER).and_then(|v| v.parse().ok());
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Outcome::Body;
        };
        let has_data = frame.data_ref().is_some_and(|d| !d.is_empty());
        if has_data && record.ttfb_us.is_none() {
            record.ttfb_us = Some(since(due));
        }
    }
    if status.is_success() {
        Outcome::Ok
    } else {
        Outcome::Status(status.as_u16())
    }
}

/// Microseconds from `t` to now.
fn since(t: Instant) -> u64 {
    micros(Instant::now().saturating_duration_since(t))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sends `spec` once and returns the status and the whole body.
pub(crate) async fn fetch(
    client: &HttpClient,
    spec: &RequestSpec,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), LoadError> {
    let exchange = async {
        let response = client
            .request(spec.to_request())
            .await
            .map_err(LoadError::Request)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(LoadError::Body)?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| LoadError::Timeout)?
}
