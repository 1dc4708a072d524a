//! A tenants case's calls beside the load: credit top-ups (each with its
//! own id, retried with the same id while the answer is ambiguous, so the
//! ledger must count it once), and at the end each node's reading of every
//! key's credits and usage, once the ledgers agree and stop moving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use super::cluster::LocalCluster;
use super::http::{CallError, call};
use crate::case::TenantsSpec;
use crate::case::tenants::TopupSpec;
use crate::tenants::{LedgerRead, TopupRecord, TopupResult, UsageRead};

/// Makes the top-ups of `spec` until `start + duration`, open loop, each to
/// a random running node (a retry goes to another random one).
pub async fn topups(
    cluster: Arc<LocalCluster>,
    spec: Option<TopupSpec>,
    duration: Duration,
    start: Instant,
    seed: u64,
) -> Vec<TopupRecord> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    let end = start + duration;
    let mut inflight = Vec::new();
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / spec.rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (cluster, spec) = (cluster.clone(), spec.clone());
        inflight.push(tokio::spawn(async move {
            topup(&cluster, &spec, i, start, seed).await
        }));
    }
    let mut records = Vec::new();
    for task in inflight {
        if let Ok(record) = task.await {
            records.push(record);
        }
    }
    records
}

async fn topup(
    cluster: &LocalCluster,
    spec: &TopupSpec,
    i: u64,
    start: Instant,
    seed: u64,
) -> TopupRecord {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0709_u64 ^ (i << 16));
    let id = format!("chaos-topup-{i}");
    let body = json!({ "add_usd": spec.usd, "id": id }).to_string();
    let timeout = Duration::from_millis(spec.timeout_ms);
    let t_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(0);
    let mut record = TopupRecord {
        id: id.clone(),
        key: spec.key.clone(),
        usd: spec.usd,
        t_us,
        tries: 0,
        result: TopupResult::Ambiguous("not sent".into()),
        retried_after: Vec::new(),
    };
    let mut sent = false;
    while record.tries < spec.tries {
        if record.tries > 0
            && let TopupResult::Ambiguous(why) = &record.result
        {
            record
                .retried_after
                .push(why.chars().take(160).collect::<String>());
        }
        record.tries += 1;
        let up = cluster.up();
        let Some(node) = up.choose(&mut rng).and_then(|id| cluster.node(*id)) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let url = format!("http://{}/admin/v1/keys/{}/credits", node.admin, spec.key);
        match call(
            &cluster.http,
            Method::POST,
            &url,
            Some(body.clone()),
            timeout,
        )
        .await
        {
            Ok((StatusCode::OK, answer)) => {
                let applied = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v.get("applied").and_then(Value::as_bool))
                    .unwrap_or(true);
                record.result = TopupResult::Acked { applied };
                return record;
            }
            Ok((status, _)) if status.is_client_error() => {
                // A 4xx after an ambiguous try is still ambiguous: the
                // earlier one may have counted.
                if !sent {
                    record.result = TopupResult::Rejected(status.as_u16());
                    return record;
                }
            }
            Ok((status, answer)) => {
                sent = true;
                record.result = TopupResult::Ambiguous(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&answer)
                        .chars()
                        .take(120)
                        .collect::<String>()
                ));
            }
            Err(CallError::Connect(e)) => {
                if !sent {
                    record.result = TopupResult::Ambiguous(format!("not sent: {e}"));
                }
            }
            Err(e) => {
                sent = true;
                record.result = TopupResult::Ambiguous(e.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !sent && let TopupResult::Ambiguous(why) = &record.result {
        // Never reached a node: it cannot have counted. Kept as ambiguous
        // (the oracle lets it count or not) but said so.
        record.result = TopupResult::Ambiguous(format!("never sent ({why})"));
    }
    record
}

/// Each node's reading of the credits of every key with credits, read
/// until every node agrees and the figures stopped moving for two reads
/// in a row (the nodes report spend on an interval), or `settle` passes.
pub async fn ledgers(
    cluster: &LocalCluster,
    spec: &TenantsSpec,
    settle: Duration,
) -> BTreeMap<String, Vec<LedgerRead>> {
    let deadline = Instant::now() + settle;
    let keys: Vec<&str> = spec
        .keys
        .iter()
        .filter(|k| k.credits_usd.is_some())
        .map(|k| k.name.as_str())
        .collect();
    let mut last: BTreeMap<String, Vec<LedgerRead>> = BTreeMap::new();
    let mut stable = 0;
    loop {
        let mut now = BTreeMap::new();
        for key in &keys {
            let mut reads = Vec::new();
            for node in &cluster.nodes {
                if let Some(read) = ledger(cluster, node.id, key).await {
                    reads.push(read);
                }
            }
            now.insert((*key).to_owned(), reads);
        }
        let agree = now.values().all(|reads| {
            reads.len() == cluster.nodes.len() && reads.windows(2).all(|p| same(&p[0], &p[1]))
        });
        let unchanged = now.len() == last.len()
            && now.iter().all(|(k, reads)| {
                last.get(k).is_some_and(|old| {
                    old.len() == reads.len() && old.iter().zip(reads).all(|(a, b)| same(a, b))
                })
            });
        stable = if agree && unchanged { stable + 1 } else { 0 };
        last = now;
        if stable >= 2 || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn same(a: &LedgerRead, b: &LedgerRead) -> bool {
    (a.added_usd - b.added_usd).abs() < 1e-9 && (a.spent_usd - b.spent_usd).abs() < 1e-9
}

/// Node `id`'s answer for key `name`'s credits.
async fn ledger(cluster: &LocalCluster, id: u64, name: &str) -> Option<LedgerRead> {
    let node = cluster.node(id)?;
    let url = format!("http://{}/admin/v1/keys/{name}", node.admin);
    let (status, body) = call(
        &cluster.http,
        Method::GET,
        &url,
        None,
        Duration::from_secs(5),
    )
    .await
    .ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let json: Value = serde_json::from_slice(&body).ok()?;
    let credits = json.get("credits")?;
    let f = |field: &str| credits.get(field).and_then(Value::as_f64);
    Some(LedgerRead {
        node: id,
        balance_usd: f("balance_usd")?,
        added_usd: f("added_usd")?,
        spent_usd: f("spent_usd")?,
    })
}

/// Every key's usage totals for today (UTC), from the first node that
/// answers `GET /admin/v1/usage`.
pub async fn usage(cluster: &LocalCluster, spec: &TenantsSpec) -> BTreeMap<String, UsageRead> {
    let day = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let date = proto::tenancy::query::day_to_date(u32::try_from(day).unwrap_or(0));
    let mut out = BTreeMap::new();
    for k in &spec.keys {
        for node in &cluster.nodes {
            let url = format!(
                "http://{}/admin/v1/usage?key={}&from={date}&to={date}&by=day",
                node.admin, k.name
            );
            let Ok((StatusCode::OK, body)) = call(
                &cluster.http,
                Method::GET,
                &url,
                None,
                Duration::from_secs(5),
            )
            .await
            else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            let mut total = UsageRead::default();
            for row in json
                .get("rows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let n = |f: &str| row.get(f).and_then(Value::as_u64).unwrap_or(0);
                total.requests += n("requests");
                total.tokens += n("input_tokens") + n("output_tokens");
                total.cost_usd += row.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
            }
            out.insert(k.name.clone(), total);
            break;
        }
    }
    out
}
