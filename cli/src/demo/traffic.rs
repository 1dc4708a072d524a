//! The demo's clients: an open-loop generator per region (a request every
//! 1/rate s whether or not the previous ones answered, alternately plain
//! and streamed), sending to its region's node, or to another live node
//! while its own is down (as GeoDNS would), and recording every outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::Shared;

/// An HTTP client for the demo's calls to nodes and mocks.
pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A pooled plain-HTTP client.
pub fn client() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build(connector)
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Record {
    /// The client's region (index into the regions).
    pub region: usize,
    /// The node that got it (index).
    pub node: usize,
    /// Whether it was streamed.
    pub stream: bool,
    /// When it was sent, since the demo's start.
    pub sent: Duration,
    /// When it ended, since the demo's start.
    pub done: Duration,
    /// Time to the answer's head (for a stream, its first chunk).
    pub ttfb: Duration,
    /// Whether it succeeded completely.
    pub ok: bool,
    /// The upstream that answered (index), from `x-meridian-upstream`.
    pub upstream: Option<usize>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Sends `rate` requests per second for `region` until `stopping` is set.
pub async fn generate(shared: Arc<Shared>, http: Http, region: usize, rate: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Some((node, api)) = shared.target(region) else {
            continue;
        };
        n += 1;
        let stream = n.is_multiple_of(2);
        let shared = shared.clone();
        let http = http.clone();
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let record = one(&shared, &http, region, node, &api, stream).await;
            shared.push(record);
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn one(
    shared: &Shared,
    http: &Http,
    region: usize,
    node: usize,
    api: &str,
    stream: bool,
) -> Record {
    let start = Instant::now();
    let sent = shared.elapsed();
    let mut record = Record {
        region,
        node,
        stream,
        sent,
        done: sent,
        ttfb: Duration::ZERO,
        ok: false,
        upstream: None,
        error: None,
    };
    let body = json!({
        "model": "fast",
        "messages": [{"role": "user", "content": "Say hello from the demo."}],
        "stream": stream,
        "max_tokens": 16,
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{api}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    let outcome = match request {
        Ok(request) => tokio::time::timeout(
            Duration::from_secs(15),
            exchange(http, request, &mut record, start),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within 15 s".to_owned())),
        Err(e) => Err(e.to_string()),
    };
    record.done = shared.elapsed();
    match outcome {
        Ok(upstream) => {
            record.ok = true;
            record.upstream = upstream.and_then(|u| shared.upstream_index(&u));
        }
        Err(e) => record.error = Some(e),
    }
    record
}

async fn exchange(
    http: &Http,
    request: Request<Full<Bytes>>,
    record: &mut Record,
    start: Instant,
) -> Result<Option<String>, String> {
    let response = http.request(request).await.map_err(|e| short_error(&e))?;
    record.ttfb = start.elapsed();
    let status = response.status();
    let upstream = response
        .headers()
        .get("x-meridian-upstream")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("the answer broke: {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let code = v["error"]["code"].as_str().unwrap_or("");
        return Err(format!("HTTP {} {code}", status.as_u16())
            .trim_end()
            .to_owned());
    }
    if record.stream {
        let text = String::from_utf8_lossy(&body);
        if text.contains("stream_interrupted") {
            return Err("stream interrupted".to_owned());
        }
        if !text.contains("data: [DONE]") {
            return Err("stream ended without [DONE]".to_owned());
        }
    }
    Ok(upstream)
}

/// A transport error in a few words: the innermost cause says the most.
fn short_error(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// Counts requests not answered yet.
pub fn pending(in_flight: &AtomicUsize) -> usize {
    in_flight.load(Ordering::Relaxed)
}
