//! What the data plane counts for Prometheus, and the recent failovers the
//! dashboard lists.
//!
//! The request path only ever touches atomics: every route, every (route,
//! upstream) pair and every upstream gets its counters and histograms from
//! [`Metrics`] when the routing snapshot is built ([`Metrics::route`],
//! [`RouteMetrics::target`], [`Metrics::upstream`]), so a request finds them
//! through the `Route`, `Target` and `Upstream` it already holds, with no
//! label lookup, no lock and no allocation. The handles live as long as the
//! node, so a counter keeps counting across configuration changes (a
//! Prometheus counter must not go back) and a rebuilt snapshot finds the
//! same ones. Only the snapshot build and a scrape take the registry's
//! locks.
//!
//! Gauges that describe state (circuits, Raft, the health board) are not
//! kept here: the admin listener reads them at scrape time
//! (`admin::metrics`). This module also holds the text encoding of its own
//! figures, through `prometheus-client`'s encoder.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use serde::Serialize;

use crate::breaker::Circuit;
use crate::health::{Outcome, Sample};

/// Bucket bounds, in seconds, of the request and first-byte histograms:
/// from a cached embedding (milliseconds) to a long completion (minutes).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// How many failovers [`Events`] keeps for the dashboard.
pub const EVENTS_KEPT: usize = 50;

/// Locks a registry map; a poisoned lock still holds usable counters.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A histogram of durations whose `observe` is three relaxed atomic adds
/// (`prometheus-client`'s own takes a lock per observation).
#[derive(Debug)]
pub struct Histogram {
    /// One count per bucket of [`LATENCY_BUCKETS`], then one for `+Inf`
    /// (not cumulative: the encoder adds them up).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations, in microseconds.
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn encode(&self, mut m: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so `+Inf` always equals it.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Answers counted by HTTP status, lock-free: a few slots claimed by the
/// first answer of each status (a compare-and-swap, once per status), then
/// one relaxed add per answer. Statuses beyond the slots count as `other`.
#[derive(Debug)]
pub struct StatusCounts {
    statuses: [AtomicU16; STATUS_SLOTS],
    counts: [AtomicU64; STATUS_SLOTS],
    other: AtomicU64,
}

const STATUS_SLOTS: usize = 16;

impl Default for StatusCounts {
    fn default() -> Self {
        Self {
            statuses: std::array::from_fn(|_| AtomicU16::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            other: AtomicU64::new(0),
        }
    }
}

impl StatusCounts {
    /// Counts one answer with `status`.
    pub fn inc(&self, status: u16) {
        for (slot, count) in self.statuses.iter().zip(&self.counts) {
            let held = slot.load(Ordering::Relaxed);
            let mine = held == status
                || (held == 0
                    && match slot.compare_exchange(0, status, Ordering::Relaxed, Ordering::Relaxed)
                    {
                        Ok(_) => true,
                        Err(now) => now == status,
                    });
            if mine {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    /// Every status seen, with its count (`other` as status 0).
    pub fn counts(&self) -> Vec<(u16, u64)> {
        let mut out: Vec<(u16, u64)> = self
            .statuses
            .iter()
            .zip(&self.counts)
            .map(|(s, c)| (s.load(Ordering::Relaxed), c.load(Ordering::Relaxed)))
            .filter(|&(s, _)| s != 0)
            .collect();
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            out.push((0, other));
        }
        out.sort_unstable();
        out
    }
}

/// One route's counters, found through its `Route`.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// Time from choosing targets to an answer ready to send (a plain
    /// answer read whole, a stream's first chunk) or the final failure.
    pub latency: Histogram,
    /// Requests that got no upstream's answer (502, 503, 504, 429), by status.
    pub unanswered: StatusCounts,
    /// Hedged second attempts sent.
    pub hedges_sent: AtomicU64,
    /// Requests answered by the hedged attempt.
    pub hedges_won: AtomicU64,
    targets: Mutex<BTreeMap<Arc<str>, Arc<TargetMetrics>>>,
}

impl RouteMetrics {
    /// The counters of this route's targets on `upstream`, made on first use.
    pub fn target(&self, upstream: &Arc<str>) -> Arc<TargetMetrics> {
        lock(&self.targets)
            .entry(upstream.clone())
            .or_default()
            .clone()
    }
}

/// The counters of one (route, upstream) pair, found through its `Target`.
#[derive(Debug, Default)]
pub struct TargetMetrics {
    /// Answers this upstream gave to the route's clients, by status.
    pub answers: StatusCounts,
    /// Attempts at this upstream that failed and were followed by an
    /// attempt at another (or the same) target.
    pub failovers: AtomicU64,
}

/// One upstream's counters, found through its `Upstream`.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// Time to first byte of attempts that got an answer (a stream's first
    /// chunk), failed answers included; timeouts and connect errors are not
    /// in it (they are in `outcomes`).
    pub ttfb: Histogram,
    /// Attempts by outcome, in the order of [`OUTCOMES`].
    outcomes: [AtomicU64; 5],
    /// Circuit changes by the state entered, in the order of [`CIRCUITS`].
    transitions: [AtomicU64; 3],
}

/// Attempt outcomes as labelled.
pub const OUTCOMES: [&str; 5] = ["success", "client_error", "error", "timeout", "broken"];
/// Circuit states as labelled.
pub const CIRCUITS: [&str; 3] = ["closed", "open", "half_open"];

impl UpstreamMetrics {
    /// Counts one attempt, as the health recorder is told of it.
    pub fn attempt(&self, sample: &Sample) {
        self.outcomes[outcome_index(sample.outcome)].fetch_add(1, Ordering::Relaxed);
        if matches!(sample.outcome, Outcome::Success | Outcome::ClientError)
            && let Some(ttfb) = sample.ttfb
        {
            self.ttfb.observe(ttfb);
        }
    }

    /// Counts the circuit entering `to`.
    pub fn circuit_changed(&self, to: Circuit) {
        self.transitions[usize::from(to.as_u8())].fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts that ended with `outcome`.
    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome_index(outcome)].load(Ordering::Relaxed)
    }
}

/// An outcome's place in [`OUTCOMES`].
fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::ClientError => 1,
        Outcome::Error => 2,
        Outcome::Timeout => 3,
        Outcome::Broken => 4,
    }
}

/// One failover, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverEvent {
    /// Increasing number of the event on this node.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The request's id, as in its log lines.
    pub request_id: String,
    /// The route.
    pub route: Arc<str>,
    /// The upstream whose attempt failed.
    pub from: Arc<str>,
    /// The upstream tried next.
    pub to: Arc<str>,
    /// Why the attempt failed, as the request's log line says.
    pub reason: String,
}

/// The last [`EVENTS_KEPT`] failovers. Written only on a failover (rare),
/// so a short lock is fine there; never touched by an answered request.
#[derive(Debug, Default)]
pub struct Events {
    ring: Mutex<VecDeque<FailoverEvent>>,
    seq: AtomicU64,
}

impl Events {
    /// Adds an event, dropping the oldest beyond [`EVENTS_KEPT`].
    pub fn push(
        &self,
        request_id: &str,
        route: &Arc<str>,
        from: &Arc<str>,
        to: &Arc<str>,
        reason: &str,
    ) {
        let event = FailoverEvent {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            request_id: request_id.to_owned(),
            route: route.clone(),
            from: from.clone(),
            to: to.clone(),
            reason: reason.to_owned(),
        };
        let mut ring = lock(&self.ring);
        if ring.len() >= EVENTS_KEPT {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// The events kept, newest first.
    pub fn recent(&self) -> Vec<FailoverEvent> {
        lock(&self.ring).iter().rev().cloned().collect()
    }
}

/// A route's per-upstream counters, as one scrape reads them.
type Targets = Vec<(Arc<str>, Arc<TargetMetrics>)>;

/// Every counter of the node, shared by each routing snapshot it builds.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests admitted and not yet answered (a stream until it ends).
    pub in_flight: Arc<AtomicUsize>,
    /// Requests answered before a route was chosen (`/v1/models`, a bad
    /// key, an unknown model…), by status.
    pub unrouted: StatusCounts,
    /// Recent failovers.
    pub events: Events,
    routes: Mutex<BTreeMap<Arc<str>, Arc<RouteMetrics>>>,
    upstreams: Mutex<BTreeMap<Arc<str>, Arc<UpstreamMetrics>>>,
}

impl Metrics {
    /// A route's counters, made on first use.
    pub fn route(&self, name: &Arc<str>) -> Arc<RouteMetrics> {
        lock(&self.routes).entry(name.clone()).or_default().clone()
    }

    /// An upstream's counters, made on first use.
    pub fn upstream(&self, id: &Arc<str>) -> Arc<UpstreamMetrics> {
        lock(&self.upstreams).entry(id.clone()).or_default().clone()
    }

    /// Writes the counters and histograms kept here. Routes and upstreams
    /// removed from the configuration keep their series: their counts
    /// happened.
    pub fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let routes: Vec<(Arc<str>, Arc<RouteMetrics>)> = lock(&self.routes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let upstreams: Vec<(Arc<str>, Arc<UpstreamMetrics>)> = lock(&self.upstreams)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let targets: Vec<(Arc<str>, Targets)> = routes
            .iter()
            .map(|(name, r)| {
                let t = lock(&r.targets)
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (name.clone(), t)
            })
            .collect();

        // Requests by route, upstream and status.
        let mut m = encoder.encode_descriptor(
            "meridian_requests",
            "Requests answered, by route, answering upstream and HTTP status (route and upstream empty \
             when no route was chosen, upstream empty when no upstream answered)",
            None,
            MetricType::Counter,
        )?;
        let mut requests = |route: &str, upstream: &str, counts: &StatusCounts| {
            for (status, n) in counts.counts() {
                let status = if status == 0 {
                    "other".to_owned()
                } else {
                    status.to_string()
                };
                let labels = [
                    ("route", route),
                    ("upstream", upstream),
                    ("status", &status),
                ];
                counter(&mut m, &labels, n)?;
            }
            Ok::<(), std::fmt::Error>(())
        };
        requests("", "", &self.unrouted)?;
        for ((name, route), (_, route_targets)) in routes.iter().zip(&targets) {
            requests(name, "", &route.unanswered)?;
            for (upstream, t) in route_targets {
                requests(name, upstream, &t.answers)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_request_duration",
            "Time from choosing a request's targets to its answer being ready (a plain answer read whole, a \
             stream's first chunk) or its final failure, by route",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (name, route) in &routes {
            route
                .latency
                .encode(m.encode_family(&[("route", &**name)])?)?;
        }

        let mut m = encoder.encode_descriptor(
            "meridian_failovers",
            "Attempts that failed and were followed by another attempt, by route and the upstream that failed",
            None,
            MetricType::Counter,
        )?;
        for (name, route_targets) in &targets {
            for (upstream, t) in route_targets {
                let labels = [("route", &**name), ("upstream", &**upstream)];
                counter(&mut m, &labels, t.failovers.load(Ordering::Relaxed))?;
            }
        }

        for (metric, help, pick) in [
            (
                "meridian_hedges_sent",
                "Hedged second attempts sent, by route",
                (|r: &RouteMetrics| r.hedges_sent.load(Ordering::Relaxed))
                    as fn(&RouteMetrics) -> u64,
            ),
            (
                "meridian_hedges_won",
                "Requests answered by their hedged attempt, by route",
                |r: &RouteMetrics| r.hedges_won.load(Ordering::Relaxed),
            ),
        ] {
            let mut m = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (name, route) in &routes {
                counter(&mut m, &[("route", &**name)], pick(route))?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_requests_in_flight",
            "Requests admitted and not yet answered (a stream until it ends)",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[], self.in_flight.load(Ordering::Relaxed) as i64)?;

        let mut m = encoder.encode_descriptor(
            "meridian_upstream_attempts",
            "Attempts at each upstream, by outcome (success, client_error, error, timeout)",
            None,
            MetricType::Counter,
        )?;
        for (id, u) in &upstreams {
            for (outcome, n) in OUTCOMES.iter().zip(&u.outcomes) {
                let labels = [("upstream", &**id), ("outcome", *outcome)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "meridian_upstream_ttfb",
            "Time to first byte of each upstream's attempts that got an answer (a stream's first chunk)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (id, u) in &upstreams {
            u.ttfb.encode(m.encode_family(&[("upstream", &**id)])?)?;
        }

        let mut m = encoder.encode_descriptor(
            "meridian_upstream_circuit_transitions",
            "Circuit breaker changes on this node, by upstream and the state entered",
            None,
            MetricType::Counter,
        )?;
        for (id, u) in &upstreams {
            for (state, n) in CIRCUITS.iter().zip(&u.transitions) {
                let labels = [("upstream", &**id), ("to", *state)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }
        Ok(())
    }
}

/// Writes one counter value with its labels.
pub fn counter(
    m: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    value: u64,
) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        return m.encode_counter::<NoLabelSet, u64, u64>(&value, None);
    }
    m.encode_family(&labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

/// Writes one gauge value with its labels (none: a bare `name value`).
pub fn gauge<V: EncodeGaugeValue>(
    m: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    value: V,
) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        return m.encode_gauge(&value);
    }
    m.encode_family(&labels)?.encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn statuses_count_apart_and_overflow_to_other() {
        let c = StatusCounts::default();
        c.inc(200);
        c.inc(200);
        c.inc(502);
        assert_eq!(c.counts(), vec![(200, 2), (502, 1)]);
        for s in 300..330 {
            c.inc(s);
        }
        let counts = c.counts();
        assert_eq!(counts.len(), STATUS_SLOTS + 1);
        assert_eq!(counts[0], (0, 30 - (STATUS_SLOTS as u64 - 2)));
    }

    #[test]
    fn statuses_count_right_under_contention() {
        let c = Arc::new(StatusCounts::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u16 {
                        c.inc(200 + (i + t) % 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts = c.counts();
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 4000);
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(500));
        assert_eq!(h.count(), 3);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn events_keep_the_newest() {
        let e = Events::default();
        let (r, a, b): (Arc<str>, Arc<str>, Arc<str>) = ("r".into(), "a".into(), "b".into());
        for i in 0..(EVENTS_KEPT + 5) {
            e.push(&i.to_string(), &r, &a, &b, "HTTP 500");
        }
        let recent = e.recent();
        assert_eq!(recent.len(), EVENTS_KEPT);
        assert_eq!(recent[0].request_id, (EVENTS_KEPT + 4).to_string());
        assert_eq!(recent[0].seq, EVENTS_KEPT as u64 + 5);
    }

    #[test]
    fn encodes_as_prometheus_text() {
        let m = Metrics::default();
        let route = m.route(&Arc::from("fast"));
        let t = route.target(&Arc::from("a"));
        t.answers.inc(200);
        t.failovers.fetch_add(1, Ordering::Relaxed);
        route.latency.observe(Duration::from_millis(30));
        m.upstream(&Arc::from("a")).attempt(&Sample {
            outcome: Outcome::Success,
            ttfb: Some(Duration::from_millis(20)),
            total: None,
        });
        #[derive(Debug)]
        struct C(Arc<Metrics>);
        impl prometheus_client::collector::Collector for C {
            fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
                self.0.encode(&mut e)
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(C(Arc::new(m))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "meridian_requests_total{route=\"fast\",upstream=\"a\",status=\"200\"} 1",
            "meridian_failovers_total{route=\"fast\",upstream=\"a\"} 1",
            "meridian_request_duration_seconds_bucket{le=\"0.05\",route=\"fast\"} 1",
            "meridian_upstream_ttfb_seconds_count{upstream=\"a\"} 1",
            "meridian_upstream_attempts_total{upstream=\"a\",outcome=\"success\"} 1",
            "# TYPE meridian_request_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
