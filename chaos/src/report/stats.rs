//! The figures of a run, computed from its request records: totals by
//! outcome, the success ratio, latency quantiles, and the same per second
//! for the chart. Pure functions of the records, unit tested.

use std::collections::BTreeMap;

use serde::Serialize;

/// How a data-plane request is sent and judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A buffered chat completion.
    Plain,
    /// An SSE chat completion: it succeeds only if it ends with `[DONE]`
    /// and carries no error event.
    Stream,
}

/// How one request ended, as the client saw it. Only [`Outcome::Ok`] is a
/// success: every other ending counts against the SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "status")]
pub enum Outcome {
    /// 2xx, body complete (and for a stream: `[DONE]`, no error event).
    Ok,
    /// A non-2xx answer.
    Status(u16),
    /// No node of the cluster accepted a connection.
    Connect,
    /// The connection broke before the answer's headers.
    Transport,
    /// No complete answer within the client timeout.
    Timeout,
    /// The answer's body broke off.
    Body,
    /// A stream that ended with an error event or without `[DONE]`.
    StreamError,
    /// Not sent: the client's in-flight cap was reached.
    Dropped,
    /// Refused by the key's limits (a tenants case's 429 `rate_limit_exceeded`
    /// or `insufficient_quota`, or 403 `model_not_allowed`): the answer the
    /// case asks for, so it does not count against the success ratio.
    Limited(u16),
}

impl Outcome {
    /// A short name for tables (`ok`, `http_503`, `timeout`…).
    pub fn name(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => format!("http_{s}"),
            Outcome::Connect => "connect".into(),
            Outcome::Transport => "transport".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Body => "body".into(),
            Outcome::StreamError => "stream_error".into(),
            Outcome::Dropped => "dropped".into(),
            Outcome::Limited(s) => format!("limited_{s}"),
        }
    }

    /// Whether the cluster answered as it should: a success, or a refusal
    /// by the key's limits.
    pub fn answered(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Limited(_))
    }
}

/// One data-plane request of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// When it was due, microseconds from the start of the load.
    pub t_us: u64,
    /// The client's region (the node it prefers), 1-based.
    pub region: u64,
    /// The node that answered (from `x-meridian-region`), if any.
    pub node: Option<u64>,
    /// Plain or stream.
    pub kind: Kind,
    /// How it ended.
    pub outcome: Outcome,
    /// From the due time to the end of the answer, microseconds (failures
    /// included: a timeout's latency is the timeout).
    pub latency_us: u64,
    /// From the due time to the headers (plain) or first chunk (stream).
    pub ttfb_us: Option<u64>,
    /// `x-meridian-upstream`.
    pub upstream: Option<String>,
    /// `x-meridian-attempts`.
    pub attempts: Option<u32>,
    /// Nodes the client tried to connect to (more than 1: a node was down).
    pub tries: u32,
    /// The node the request was last sent to (whose connection it used).
    pub sent_to: Option<u64>,
    /// Whether it broke because the node serving it was SIGKILLed while it
    /// was in flight (set after the run from the kill times).
    pub killed_in_flight: bool,
    /// The `x-request-id` sent, to find the request in the node logs.
    pub id: String,
    /// The tenants case's key it was sent with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Input plus output tokens of a successful answer (its `usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// `x-meridian-cost-usd` of the answer, in nanodollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<u64>,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// The `q`-quantile (0..=1) of `sorted` by nearest rank: the smallest value
/// with at least `q` of the samples at or below it; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Quantiles {
    /// Quantiles of microsecond samples (sorted here).
    pub fn of(mut samples_us: Vec<u64>) -> Self {
        samples_us.sort_unstable();
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            count: samples_us.len() as u64,
            p50_ms: ms(quantile(&samples_us, 0.50)),
            p90_ms: ms(quantile(&samples_us, 0.90)),
            p99_ms: ms(quantile(&samples_us, 0.99)),
            p999_ms: ms(quantile(&samples_us, 0.999)),
            max_ms: ms(samples_us.last().copied().unwrap_or(0)),
        }
    }
}

/// Totals of a set of requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Requests due.
    pub requests: u64,
    /// Successful ones.
    pub ok: u64,
    /// Refused by a key's limits (a tenants case).
    pub limited: u64,
    /// `(ok + limited) / requests` (1 when there were none): a refusal by
    /// a key's limits is the answer a tenants case asks for.
    pub success_ratio: f64,
    /// Requests by outcome name.
    pub outcomes: BTreeMap<String, u64>,
    /// Latency of successful requests.
    pub latency: Quantiles,
    /// Time to first byte / token of successful requests.
    pub ttfb: Quantiles,
}

/// Ratio that treats an empty set as perfect.
pub fn ratio(ok: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        ok as f64 / total as f64
    }
}

impl Totals {
    /// Totals of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a RequestRecord>) -> Self {
        let mut t = Totals::default();
        let mut latency = Vec::new();
        let mut ttfb = Vec::new();
        for r in records {
            t.requests += 1;
            if matches!(r.outcome, Outcome::Limited(_)) {
                t.limited += 1;
            }
            *t.outcomes.entry(r.outcome.name()).or_default() += 1;
            if r.outcome == Outcome::Ok {
                t.ok += 1;
                latency.push(r.latency_us);
                if let Some(us) = r.ttfb_us {
                    ttfb.push(us);
                }
            }
        }
        t.success_ratio = ratio(t.ok + t.limited, t.requests);
        t.latency = Quantiles::of(latency);
        t.ttfb = Quantiles::of(ttfb);
        t
    }
}

/// One second of the run, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds from the start of the load.
    pub t: u64,
    /// Requests due in that second.
    pub requests: u64,
    /// Of which succeeded (or were refused by a key's limits).
    pub ok: u64,
    /// `ok / requests`.
    pub success_ratio: f64,
    /// p99 latency of the successful ones, ms (0 when none).
    pub p99_ms: f64,
}

/// Per-second figures for seconds `0..duration_s`, by due time.
pub fn per_second(records: &[RequestRecord], duration_s: u64) -> Vec<Second> {
    let mut buckets: Vec<(u64, Vec<u64>)> = vec![(0, Vec::new()); duration_s as usize];
    for r in records {
        let Some(bucket) = buckets.get_mut((r.t_us / 1_000_000) as usize) else {
            continue;
        };
        bucket.0 += 1;
        if r.outcome.answered() {
            bucket.1.push(r.latency_us);
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(t, (requests, mut ok_latencies))| {
            ok_latencies.sort_unstable();
            let ok = ok_latencies.len() as u64;
            Second {
                t: t as u64,
                requests,
                ok,
                success_ratio: ratio(ok, requests),
                p99_ms: quantile(&ok_latencies, 0.99) as f64 / 1_000.0,
            }
        })
        .collect()
}

/// Marks the failed requests that were in flight on a node when it was
/// SIGKILLed: sent to that node, due before the kill (plus 100 ms, the
/// signal's own lag), ended after it, and broken (transport, body or stream
/// error). `kills` are `(node, seconds from the start)`. Returns how many.
pub fn mark_killed_in_flight(records: &mut [RequestRecord], kills: &[(u64, f64)]) -> u64 {
    let mut marked = 0;
    for r in records.iter_mut() {
        let broken = matches!(
            r.outcome,
            Outcome::Transport | Outcome::Body | Outcome::StreamError
        );
        if !broken {
            continue;
        }
        let (start, end) = (r.t_us, r.t_us.saturating_add(r.latency_us));
        let hit = kills.iter().any(|&(node, at_s)| {
            let at = (at_s * 1e6) as u64;
            r.sent_to == Some(node) && start <= at + 100_000 && end + 1_000 >= at
        });
        if hit {
            r.killed_in_flight = true;
            marked += 1;
        }
    }
    marked
}

/// Requests grouped by a key (region, upstream…), with their totals.
pub fn grouped<K: Ord, F: Fn(&RequestRecord) -> K>(
    records: &[RequestRecord],
    key: F,
) -> BTreeMap<K, Totals> {
    let mut groups: BTreeMap<K, Vec<&RequestRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(k, rs)| (k, Totals::of(rs)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn rec(t_ms: u64, outcome: Outcome, latency_ms: u64) -> RequestRecord {
        RequestRecord {
            t_us: t_ms * 1_000,
            region: 1,
            node: Some(1),
            kind: Kind::Plain,
            outcome,
            latency_us: latency_ms * 1_000,
            ttfb_us: Some(latency_ms * 500),
            upstream: Some("a".into()),
            attempts: Some(1),
            tries: 1,
            sent_to: Some(1),
            killed_in_flight: false,
            id: String::new(),
            key: None,
            tokens: None,
            cost_nanos: None,
        }
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[], 0.99), 0);
        assert_eq!(quantile(&[7], 0.99), 7);
        // 100 samples: p99 is the 99th, so one outlier does not hide.
        let mut w = vec![10u64; 99];
        w.push(5_000);
        w.sort_unstable();
        assert_eq!(quantile(&w, 0.99), 10);
        w[98] = 4_000;
        w.sort_unstable();
        assert_eq!(quantile(&w, 0.99), 4_000);
    }

    #[test]
    fn every_non_ok_outcome_is_a_failure() {
        let records = vec![
            rec(0, Outcome::Ok, 10),
            rec(1, Outcome::Status(503), 1),
            rec(2, Outcome::Status(429), 1),
            rec(3, Outcome::Connect, 1),
            rec(4, Outcome::Transport, 1),
            rec(5, Outcome::Timeout, 20_000),
            rec(6, Outcome::Body, 1),
            rec(7, Outcome::StreamError, 1),
            rec(8, Outcome::Dropped, 0),
            rec(9, Outcome::Ok, 30),
        ];
        let t = Totals::of(&records);
        assert_eq!(t.requests, 10);
        assert_eq!(t.ok, 2);
        assert!((t.success_ratio - 0.2).abs() < 1e-12);
        assert_eq!(t.outcomes["http_503"], 1);
        assert_eq!(t.outcomes["stream_error"], 1);
        // Latency quantiles are of successes only: the timeout is not in them.
        assert_eq!(t.latency.count, 2);
        assert_eq!(t.latency.max_ms, 30.0);
    }

    #[test]
    fn seconds_bucket_by_due_time() {
        let mut records = Vec::new();
        for i in 0..100 {
            records.push(rec(i * 10, Outcome::Ok, 5 + i)); // second 0
        }
        records.push(rec(1_500, Outcome::Status(500), 1)); // second 1
        records.push(rec(1_600, Outcome::Ok, 7));
        records.push(rec(99_000, Outcome::Ok, 7)); // past the end: ignored
        let s = per_second(&records, 3);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].requests, s[0].ok), (100, 100));
        assert_eq!(s[0].p99_ms, 103.0);
        assert_eq!((s[1].requests, s[1].ok), (2, 1));
        assert_eq!(s[1].success_ratio, 0.5);
        assert_eq!(
            (s[2].requests, s[2].success_ratio, s[2].p99_ms),
            (0, 1.0, 0.0)
        );
    }

    #[test]
    fn only_broken_requests_on_the_killed_node_at_the_kill_are_marked() {
        let mut on_node = rec(9_990, Outcome::Transport, 20); // in flight at 10 s
        on_node.sent_to = Some(2);
        let mut other_node = on_node.clone();
        other_node.sent_to = Some(3);
        let mut a_503 = on_node.clone();
        a_503.outcome = Outcome::Status(503);
        let mut too_early = on_node.clone();
        too_early.t_us = 5_000_000;
        let mut records = vec![on_node, other_node, a_503, too_early];
        assert_eq!(mark_killed_in_flight(&mut records, &[(2, 10.0)]), 1);
        assert!(records[0].killed_in_flight);
        assert!(!records[1].killed_in_flight && !records[2].killed_in_flight);
        assert!(!records[3].killed_in_flight);
    }

    #[test]
    fn groups_split_totals() {
        let mut a = rec(0, Outcome::Ok, 1);
        a.region = 2;
        let b = rec(0, Outcome::Timeout, 1);
        let g = grouped(&[a, b], |r| r.region);
        assert_eq!(g[&1].ok, 0);
        assert_eq!(g[&2].ok, 1);
    }
}
