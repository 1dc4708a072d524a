//! The data-plane load: one open-loop client per region at a fixed arrival
//! rate (request `i` is due at `start + i / rate` whatever happened before;
//! its latency runs from that due time, so a stalled cluster cannot hide
//! its worst latencies), a seeded mix of plain and streamed requests, and
//! a record of every request.
//!
//! Clients reach the cluster as they would through GeoDNS: a region's
//! clients call their own node while its `/readyz` says 200 (probed every
//! 500 ms), else the next ready node; and when a connection is refused
//! (nothing was sent, so it is safe to try elsewhere, as any client with
//! several addresses does) they try the next node. Nothing else is retried:
//! a broken connection, a timeout or any non-2xx answer is a failure.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use super::cluster::{LocalCluster, ROUTE};
use super::http::{HttpClient, client};
use crate::case::{Case, LoadSpec, TenantsSpec};
use crate::report::stats::{Kind, Outcome, RequestRecord};
use load::OpenLoop;

/// Largest stream body kept for the end-of-stream check.
const MAX_STREAM_BYTES: usize = 1 << 20;

/// Shared by the region schedulers and their request tasks.
struct Shared {
    cluster: Arc<LocalCluster>,
    client: HttpClient,
    start: Instant,
    timeout: Duration,
    records: Mutex<Vec<RequestRecord>>,
    plain: Bytes,
    stream: Bytes,
}

/// One stream of the load: `rate` requests per second from each region,
/// sent with a client key (a tenants case) or without.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadKey {
    /// The key's name, recorded with each request.
    pub name: Option<String>,
    /// The bearer token sent.
    pub secret: Option<String>,
    /// Requests per second per region.
    pub rate: f64,
}

impl LoadKey {
    /// The streams of `case`: its tenants' keys, or one keyless stream at
    /// `load.rate` split over the regions.
    pub fn of(case: &Case) -> Vec<LoadKey> {
        match &case.tenants {
            Some(t) => t
                .keys
                .iter()
                .map(|k| LoadKey {
                    name: Some(k.name.clone()),
                    secret: Some(TenantsSpec::secret(&k.name)),
                    rate: k.rate,
                })
                .collect(),
            None => vec![LoadKey {
                name: None,
                secret: None,
                rate: case.load.rate / case.cluster.nodes.max(1) as f64,
            }],
        }
    }
}

/// Probes every node's `/readyz` every 500 ms until `until`, keeping the
/// GeoDNS view ([`Node::ready`](super::cluster::Node::ready)) current.
pub async fn geodns(cluster: Arc<LocalCluster>, until: Instant) {
    while Instant::now() < until {
        let probes = cluster.nodes.iter().map(|n| {
            let cluster = cluster.clone();
            let id = n.id;
            async move { (id, cluster.readyz(id).await) }
        });
        for (id, ready) in futures_util::future::join_all(probes).await {
            if let Some(node) = cluster.node(id) {
                node.ready
                    .store(ready, std::sync::atomic::Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The order in which a client of `region` tries the nodes: ready nodes
/// first, each group starting at its own region and going round.
pub fn preference(region: u64, ready: &[bool]) -> Vec<u64> {
    let n = ready.len() as u64;
    let ring: Vec<u64> = (0..n).map(|k| (region - 1 + k) % n + 1).collect();
    let is_ready = |id: &u64| ready.get(*id as usize - 1).copied().unwrap_or(false);
    ring.iter()
        .copied()
        .filter(is_ready)
        .chain(ring.iter().copied().filter(|id| !is_ready(id)))
        .collect()
}

/// Runs the load of `spec` for `duration` from `start`, every region
/// sending each of `keys` at its rate, and returns every request's record.
pub async fn run(
    cluster: Arc<LocalCluster>,
    spec: &LoadSpec,
    keys: &[LoadKey],
    duration: Duration,
    start: Instant,
    seed: u64,
) -> Vec<RequestRecord> {
    let regions = cluster.nodes.len() as u64;
    let body = |stream: bool| {
        Bytes::from(
            serde_json::json!({
                "model": ROUTE,
                "stream": stream,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "chaos"}],
            })
            .to_string(),
        )
    };
    let shared = Arc::new(Shared {
        cluster,
        client: client(256),
        start,
        timeout: Duration::from_millis(spec.timeout_ms),
        records: Mutex::new(Vec::new()),
        plain: body(false),
        stream: body(true),
    });
    let mut schedulers = Vec::new();
    for region in 1..=regions {
        for (k, key) in keys.iter().enumerate() {
            let plan = OpenLoop {
                max_in_flight: spec.max_in_flight,
                ..OpenLoop::new(key.rate, duration)
            };
            let (shared, rt, share) = (shared.clone(), Handle::current(), spec.stream_share);
            let permits = Arc::new(Semaphore::new(spec.max_in_flight));
            let region_seed = seed
                .wrapping_mul(31)
                .wrapping_add(region)
                .wrapping_add((k as u64) << 32);
            let key = key.clone();
            schedulers.push(tokio::task::spawn_blocking(move || {
                schedule(
                    &shared,
                    &rt,
                    region,
                    &key,
                    &plan,
                    share,
                    region_seed,
                    &permits,
                );
                permits
            }));
        }
    }
    for scheduler in schedulers {
        // Every request task holds a permit until it has recorded.
        if let Ok(permits) = scheduler.await {
            let all = u32::try_from(spec.max_in_flight).unwrap_or(u32::MAX);
            let _ = permits.acquire_many(all).await;
        }
    }
    let mut records = std::mem::take(
        &mut *shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    records.sort_by_key(|r| r.t_us);
    records
}

/// A region's scheduler, on its own thread: sleeps until each request is
/// due (the std sleep is finer than the async timer) and hands it over.
#[allow(clippy::too_many_arguments)]
fn schedule(
    shared: &Arc<Shared>,
    rt: &Handle,
    region: u64,
    key: &LoadKey,
    plan: &OpenLoop,
    stream_share: f64,
    seed: u64,
    permits: &Arc<Semaphore>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in 0..plan.count() {
        let Some(due) = shared.start.checked_add(plan.offset(i)) else {
            return;
        };
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let kind = if rng.random::<f64>() < stream_share {
            Kind::Stream
        } else {
            Kind::Plain
        };
        let id = match &key.name {
            Some(name) => format!("chaos-r{region}-{name}-{i}"),
            None => format!("chaos-r{region}-{i}"),
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (shared, key) = (shared.clone(), key.clone());
                rt.spawn(async move {
                    let record = measure(&shared, region, &key, kind, due, id).await;
                    shared
                        .records
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(record);
                    drop(permit);
                });
            }
            Err(_) => shared
                .records
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(RequestRecord {
                    t_us: micros(due.saturating_duration_since(shared.start)),
                    region,
                    node: None,
                    kind,
                    outcome: Outcome::Dropped,
                    latency_us: 0,
                    ttfb_us: None,
                    upstream: None,
                    attempts: None,
                    tries: 0,
                    sent_to: None,
                    killed_in_flight: false,
                    id,
                    key: key.name.clone(),
                    tokens: None,
                    cost_nanos: None,
                }),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Sends one request (trying the next node on a refused connection) and
/// records how it ended, timed from `due`.
async fn measure(
    shared: &Shared,
    region: u64,
    key: &LoadKey,
    kind: Kind,
    due: Instant,
    id: String,
) -> RequestRecord {
    let mut record = RequestRecord {
        t_us: micros(due.saturating_duration_since(shared.start)),
        region,
        node: None,
        kind,
        outcome: Outcome::Timeout,
        latency_us: 0,
        ttfb_us: None,
        upstream: None,
        attempts: None,
        tries: 0,
        sent_to: None,
        killed_in_flight: false,
        id,
        key: key.name.clone(),
        tokens: None,
        cost_nanos: None,
    };
    let exchange = exchange(shared, key.secret.as_deref(), due, &mut record);
    let outcome = tokio::time::timeout(shared.timeout, exchange).await;
    record.outcome = outcome.unwrap_or(Outcome::Timeout);
    record.latency_us = micros(due.elapsed());
    record
}

async fn exchange(
    shared: &Shared,
    secret: Option<&str>,
    due: Instant,
    record: &mut RequestRecord,
) -> Outcome {
    let ready: Vec<bool> = shared
        .cluster
        .nodes
        .iter()
        .map(|n| n.ready.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let body = match record.kind {
        Kind::Plain => shared.plain.clone(),
        Kind::Stream => shared.stream.clone(),
    };
    let mut response = None;
    for node_id in preference(record.region, &ready) {
        let Some(node) = shared.cluster.node(node_id) else {
            continue;
        };
        record.tries += 1;
        record.sent_to = Some(node_id);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/v1/chat/completions", node.api))
            .header("content-type", "application/json")
            .header("x-request-id", &record.id);
        if let Some(secret) = secret {
            request = request.header("authorization", format!("Bearer {secret}"));
        }
        let request = request.body(Full::new(body.clone()));
        let Ok(request) = request else {
            return Outcome::Transport;
        };
        match shared.client.request(request).await {
            Ok(r) => {
                response = Some(r);
                break;
            }
            Err(e) if e.is_connect() => continue,
            Err(_) => return Outcome::Transport,
        }
    }
    let Some(response) = response else {
        return Outcome::Connect;
    };
    if record.kind == Kind::Plain {
        record.ttfb_us = Some(micros(due.elapsed()));
    }
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    record.upstream = header("x-meridian-upstream");
    record.attempts = header("x-meridian-attempts").and_then(|v| v.parse().ok());
    record.cost_nanos = header("x-meridian-cost-usd")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|usd| proto::tenancy::usd_to_nanos(usd).ok());
    let served_by = header("x-meridian-region");
    record.node = served_by.and_then(|region| {
        shared
            .cluster
            .nodes
            .iter()
            .find(|n| n.region == region)
            .map(|n| n.id)
    });
    let mut body = response.into_body();
    let mut kept: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Outcome::Body;
        };
        if let Some(data) = frame.data_ref() {
            if !data.is_empty() && record.ttfb_us.is_none() {
                record.ttfb_us = Some(micros(due.elapsed()));
            }
            if kept.len() < MAX_STREAM_BYTES {
                kept.extend_from_slice(data);
            }
        }
    }
    if !status.is_success() {
        if secret.is_some() && limit_refusal(&kept) {
            return Outcome::Limited(status.as_u16());
        }
        return Outcome::Status(status.as_u16());
    }
    if record.kind == Kind::Plain {
        record.tokens = total_tokens(&kept);
    }
    if record.kind == Kind::Stream && !stream_complete(&kept) {
        return Outcome::StreamError;
    }
    Outcome::Ok
}

/// Whether an error body is a refusal by a key's limits: OpenAI's codes
/// `rate_limit_exceeded`, `insufficient_quota`, `model_not_allowed`.
pub fn limit_refusal(body: &[u8]) -> bool {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let code = json.pointer("/error/code").and_then(|c| c.as_str());
    matches!(
        code,
        Some("rate_limit_exceeded" | "insufficient_quota" | "model_not_allowed")
    )
}

/// Input plus output tokens of a chat completion's `usage`.
pub fn total_tokens(body: &[u8]) -> Option<u64> {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let usage = json.get("usage")?;
    if let Some(total) = usage.get("total_tokens").and_then(|t| t.as_u64()) {
        return Some(total);
    }
    let part = |name: &str| usage.get(name).and_then(|t| t.as_u64()).unwrap_or(0);
    Some(part("prompt_tokens") + part("completion_tokens"))
}

/// Whether an SSE body ended cleanly: its last event is `data: [DONE]` and
/// no event carries an error.
pub fn stream_complete(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let events: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let errored = events.iter().any(|e| {
        e.lines().any(|l| {
            l.starts_with("event: error")
                || l.strip_prefix("data:")
                    .is_some_and(|d| d.trim_start().starts_with("{\"error\""))
        })
    });
    !errored && events.last().is_some_and(|e| *e == "data: [DONE]")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn own_region_first_then_round_the_ring_ready_first() {
        assert_eq!(preference(1, &[true, true, true]), vec![1, 2, 3]);
        assert_eq!(preference(2, &[true, true, true]), vec![2, 3, 1]);
        assert_eq!(preference(3, &[true, true, true]), vec![3, 1, 2]);
        // Own node not ready: it goes last.
        assert_eq!(preference(2, &[true, false, true]), vec![3, 1, 2]);
        // None ready: plain ring order.
        assert_eq!(preference(3, &[false, false, false]), vec![3, 1, 2]);
    }

    #[test]
    fn refusals_by_limits_are_told_from_other_errors() {
        let limited =
            br#"{"error":{"message":"m","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert!(limit_refusal(limited));
        let quota = br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(limit_refusal(quota));
        let upstream = br#"{"error":{"message":"m","type":"server_error","code":"upstream"}}"#;
        assert!(!limit_refusal(upstream));
        assert!(!limit_refusal(b"not json"));
        assert_eq!(
            total_tokens(
                br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
            ),
            Some(7)
        );
        assert_eq!(
            total_tokens(br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#),
            Some(7)
        );
        assert_eq!(total_tokens(b"{}"), None);
    }

    #[test]
    fn streams_must_end_with_done_and_carry_no_error() {
        let ok = b"data: {\"choices\":[]}\n\ndata: {\"choices\":[]}\n\ndata: [DONE]\n\n";
        assert!(stream_complete(ok));
        let cut = b"data: {\"choices\":[]}\n\n";
        assert!(!stream_complete(cut));
        let errored =
            b"data: {\"choices\":[]}\n\ndata: {\"error\": {\"code\": \"stream_interrupted\"}}\n\n";
        assert!(!stream_complete(errored));
        let error_then_done = b"data: {\"error\": {}}\n\ndata: [DONE]\n\n";
        assert!(!stream_complete(error_then_done));
        assert!(!stream_complete(b""));
    }
}
