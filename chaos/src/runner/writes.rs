//! The config writes made beside the load, and the end-of-run reads the
//! oracle judges. Route writes go out open loop (one new route each, to a
//! random running node); register writes rewrite one upstream one after
//! the other. Each write is made once, never retried, and recorded with
//! how it ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use proto::config::{RouteConfig, UpstreamConfig};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;

use super::cluster::LocalCluster;
use super::http::{CallError, call};
use crate::case::WritesSpec;
use crate::oracle::{Observed, REGISTER, ROUTE_PREFIX, Target, WriteRecord, WriteResult};

/// Runs the route and register writers until `start + duration`.
pub async fn run(
    cluster: Arc<LocalCluster>,
    spec: &WritesSpec,
    duration: Duration,
    start: Instant,
    seed: u64,
) -> Vec<WriteRecord> {
    let records = Arc::new(Mutex::new(Vec::new()));
    let timeout = Duration::from_millis(spec.timeout_ms);
    let end = start + duration;
    let mut tasks = Vec::new();
    if spec.rate > 0.0 {
        let (cluster, records, rate) = (cluster.clone(), records.clone(), spec.rate);
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED);
            let mut inflight = Vec::new();
            for i in 0u64.. {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let seq = 2 * i + 1;
                let node = pick(&cluster, &mut rng);
                let (cluster, records) = (cluster.clone(), records.clone());
                inflight.push(tokio::spawn(async move {
                    let record = write(&cluster, Target::Route, seq, node, start, timeout).await;
                    records.lock().await.push(record);
                }));
            }
            for task in inflight {
                let _ = task.await;
            }
        }));
    }
    if spec.register_rate > 0.0 {
        let (cluster, records, rate) = (cluster.clone(), records.clone(), spec.register_rate);
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0xBEEF);
            let every = Duration::from_secs_f64(1.0 / rate);
            let mut next = start;
            for i in 0u64.. {
                if next >= end {
                    break;
                }
                tokio::time::sleep_until(next.into()).await;
                let seq = 2 * i + 2;
                let node = pick(&cluster, &mut rng);
                let record = write(&cluster, Target::Register, seq, node, start, timeout).await;
                records.lock().await.push(record);
                next = (next + every).max(Instant::now());
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut out = std::mem::take(&mut *records.lock().await);
    out.sort_by_key(|w| w.seq);
    out
}

/// A random running node (any node when none runs: the write then fails
/// to connect, and is recorded as not sent).
fn pick(cluster: &LocalCluster, rng: &mut SmallRng) -> u64 {
    let up = cluster.up();
    up.choose(rng)
        .copied()
        .unwrap_or_else(|| rng.random_range(1..=cluster.nodes.len() as u64))
}

/// Makes one write and records its ending.
async fn write(
    cluster: &LocalCluster,
    target: Target,
    seq: u64,
    node: u64,
    start: Instant,
    timeout: Duration,
) -> WriteRecord {
    let (key, value, path, body) = match target {
        Target::Route => {
            let key = format!("{ROUTE_PREFIX}{seq}");
            let value = format!("w{seq}");
            let body = json!({ "tiers": [[{ "upstream": "a", "model": value }]] });
            (key.clone(), value, format!("/admin/v1/routes/{key}"), body)
        }
        Target::Register => {
            let value = format!("v{seq}");
            let base = cluster
                .upstreams
                .first()
                .map(|u| format!("http://{}/v1", u.proxy.addr))
                .unwrap_or_default();
            let body = json!({ "base_url": base, "region": value });
            (
                REGISTER.to_owned(),
                value,
                format!("/admin/v1/upstreams/{REGISTER}"),
                body,
            )
        }
    };
    let sent = Instant::now();
    let t_us = u64::try_from(sent.saturating_duration_since(start).as_micros()).unwrap_or(0);
    let result = match cluster.node(node) {
        None => WriteResult::NotSent(format!("no node {node}")),
        Some(n) => {
            let url = format!("http://{}{path}", n.admin);
            match call(
                &cluster.http,
                Method::PUT,
                &url,
                Some(body.to_string()),
                timeout,
            )
            .await
            {
                Ok((StatusCode::OK, _)) => WriteResult::Acked,
                Ok((status, _)) if status.is_client_error() => {
                    WriteResult::Rejected(status.as_u16())
                }
                Ok((status, body)) => WriteResult::Ambiguous(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )),
                Err(CallError::Connect(e)) => WriteResult::NotSent(e),
                Err(e) => WriteResult::Ambiguous(e.to_string()),
            }
        }
    };
    WriteRecord {
        seq,
        target,
        key,
        value,
        node,
        t_us,
        latency_us: u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
        result,
    }
}

/// What node `id` holds: its `chaos-w*` routes and the register, read from
/// its own applied state (`?stale=true`: this node's copy, not the leader's).
pub async fn observe(cluster: &LocalCluster, id: u64) -> Observed {
    let mut observed = Observed {
        node: id,
        ..Observed::default()
    };
    let Some(node) = cluster.node(id) else {
        observed.error = Some("no such node".into());
        return observed;
    };
    let timeout = Duration::from_secs(5);
    let url = format!("http://{}/admin/v1/routes?stale=true", node.admin);
    match call(&cluster.http, Method::GET, &url, None, timeout).await {
        Ok((StatusCode::OK, body)) => match serde_json::from_slice::<Vec<RouteConfig>>(&body) {
            Ok(routes) => {
                let map: BTreeMap<String, String> = routes
                    .into_iter()
                    .filter(|r| r.model.starts_with(ROUTE_PREFIX))
                    .map(|r| {
                        let value = r
                            .tiers
                            .first()
                            .and_then(|tier| tier.first())
                            .map_or("?", |t| t.model.as_str())
                            .to_owned();
                        (r.model, value)
                    })
                    .collect();
                observed.routes = Some(map);
            }
            Err(_) => observed.error = Some("routes: not a JSON array".into()),
        },
        Ok((status, _)) => observed.error = Some(format!("routes: {status}")),
        Err(e) => observed.error = Some(format!("routes: {e}")),
    }
    let url = format!(
        "http://{}/admin/v1/upstreams/{REGISTER}?stale=true",
        node.admin
    );
    match call(&cluster.http, Method::GET, &url, None, timeout).await {
        Ok((StatusCode::OK, body)) => {
            observed.register = serde_json::from_slice::<UpstreamConfig>(&body)
                .ok()
                .map(|u| u.region);
        }
        Ok((StatusCode::NOT_FOUND, _)) => {}
        Ok((status, _)) => {
            observed.routes = None;
            observed.error = Some(format!("register: {status}"));
        }
        Err(e) => {
            observed.routes = None;
            observed.error = Some(format!("register: {e}"));
        }
    }
    observed
}

/// Reads every node until each holds every acknowledged write (or `settle`
/// passes), and returns the last reads.
pub async fn settle(
    cluster: &LocalCluster,
    writes: &[WriteRecord],
    settle: Duration,
) -> Vec<Observed> {
    let deadline = Instant::now() + settle;
    loop {
        let mut seen = Vec::new();
        for node in &cluster.nodes {
            seen.push(observe(cluster, node.id).await);
        }
        let report = crate::oracle::check(writes, &seen);
        if report.ok || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
