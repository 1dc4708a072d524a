//! What the data plane counts for Prometheus, and the recent failovers the
//! dashboard lists.
//!
//! The request path only ever touches atomics: every route, every (route,
//! upstream) pair and every upstream gets its counters and histograms from
//! [`Metrics`] when the routing snapshot is built ([`Metrics::route`],
//! [`RouteMetrics::target`], [`Metrics::upstream`]), so a request finds them
//! through the `Route`, `Target` and `Upstream` it already holds, with no
//! label lookup, no lock and no allocation. The handles live as long as
//! their route or upstream is in the configuration, so a counter keeps
//! counting across configuration changes (a Prometheus counter must not go
//! back) and a rebuilt snapshot finds the same ones; a deleted route or
//! upstream leaves `/metrics` with the build that drops it
//! ([`Metrics::retain`]), instead of being reported for ever. Only the
//! snapshot build and a scrape take the registry's locks.
//!
//! Gauges that describe state (circuits, Raft, the health board) are not
//! kept here: the admin listener reads them at scrape time
//! (`admin::metrics`). This module also holds the text encoding of its own
//! figures, through `prometheus-client`'s encoder.

//!
//! - `histogram`: the lock-free histogram and status counters.
//! - `events`: the ring of recent failovers.
//! - `keys`: the per client key counters (`meridian_key_*`).
//! - `render`: the Prometheus text of all of it.
//! - `process`: the standard `process_*` figures, read from `/proc`.
//! - `logs`: the log lines dropped behind a stalled log reader
//!   (`meridian_log_lines_dropped_total`).
//! - `shed`: the requests shed for capacity, by class (`meridian_shed_total`).
//! - `raft_traffic`: what the Raft transport carried, per peer and kind of
//!   entry, and the size of this node's health report (`meridian_raft_bytes_*`).

mod events;
mod histogram;
mod keys;
mod logs;
mod process;
mod raft_traffic;
mod render;
mod shed;
pub mod sla;

pub use events::{EVENTS_KEPT, Events, FailoverEvent};
pub use histogram::{Histogram, LATENCY_BUCKETS, StatusCounts};
pub use keys::{KEY_OUTCOMES, KeyMetrics, KeyOutcome};
pub use logs::count_dropped_log_lines;
pub use raft_traffic::ReportSize;
pub use render::{counter, gauge};
pub use shed::{SHED_REASONS, ShedCounts, ShedReason};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Locks a registry map; a poisoned lock still holds usable counters.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    pub(crate) targets: Mutex<BTreeMap<Arc<str>, Arc<TargetMetrics>>>,
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
    /// What this upstream's answers to the route cost, in nanodollars, at
    /// the target's prices (answers with no price known add nothing).
    pub cost_nanodollars: AtomicU64,
    /// Tokens of this upstream's answers to the route, in the order of
    /// [`TOKEN_KINDS`]: input not from the cache, input read from the
    /// cache, output.
    pub(crate) tokens: [AtomicU64; 3],
}

/// Token kinds as labelled.
pub const TOKEN_KINDS: [&str; 3] = ["input", "cached_input", "output"];

impl TargetMetrics {
    /// Counts one answer's tokens (`input` counts the cached ones too, as
    /// usage reports them) and, when a price is known, its cost.
    pub fn spent(&self, input: u64, cached: u64, output: u64, cost_nanodollars: Option<u64>) {
        let cached = cached.min(input);
        for (n, add) in self.tokens.iter().zip([input - cached, cached, output]) {
            n.fetch_add(add, Ordering::Relaxed);
        }
        if let Some(nanos) = cost_nanodollars {
            self.cost_nanodollars.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// Tokens counted of kind `kind` (its place in [`TOKEN_KINDS`]).
    pub fn tokens(&self, kind: usize) -> u64 {
        self.tokens
            .get(kind)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

/// One upstream's counters, found through its `Upstream`.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// Time to first byte of attempts that got an answer (a stream's first
    /// chunk), failed answers included; timeouts and connect errors are not
    /// in it (they are in `outcomes`).
    pub ttfb: Histogram,
    /// Attempts by outcome, in the order of [`OUTCOMES`].
    pub(crate) outcomes: [AtomicU64; 5],
    /// Circuit changes by the state entered, in the order of [`CIRCUITS`].
    pub(crate) transitions: [AtomicU64; 3],
}

/// Attempt outcomes as labelled.
pub const OUTCOMES: [&str; 5] = ["success", "client_error", "error", "timeout", "broken"];
/// Circuit states as labelled.
pub const CIRCUITS: [&str; 3] = ["closed", "open", "half_open"];

impl UpstreamMetrics {
    /// Counts one attempt, as the health recorder is told of it: `outcome`
    /// is its place in [`OUTCOMES`] (`health::Outcome::index`), `ttfb` its
    /// time to first byte when it got an answer.
    pub fn attempt(&self, outcome: usize, ttfb: Option<Duration>) {
        if let Some(n) = self.outcomes.get(outcome) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(ttfb) = ttfb {
            self.ttfb.observe(ttfb);
        }
    }

    /// Counts the circuit entering state `to`, its place in [`CIRCUITS`]
    /// (`Circuit::as_u8`).
    pub fn circuit_changed(&self, to: usize) {
        if let Some(n) = self.transitions.get(to) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attempts that ended with outcome `outcome` (its place in [`OUTCOMES`]).
    pub fn outcomes(&self, outcome: usize) -> u64 {
        self.outcomes
            .get(outcome)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Circuit changes into state `to` (its place in [`CIRCUITS`]).
    pub fn circuit_changes(&self, to: usize) -> u64 {
        self.transitions
            .get(to)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

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
    /// Requests shed for capacity, by class and reason.
    pub shed: ShedCounts,
    pub(crate) routes: Mutex<BTreeMap<Arc<str>, Arc<RouteMetrics>>>,
    pub(crate) upstreams: Mutex<BTreeMap<Arc<str>, Arc<UpstreamMetrics>>>,
    pub(crate) keys: Mutex<BTreeMap<Arc<str>, Arc<KeyMetrics>>>,
    /// Each priority class's service level (`crate::metrics::sla`): set once the
    /// node has read its `[[classes]]`; none until then.
    pub classes: arc_swap::ArcSwap<crate::metrics::sla::Classes>,
    /// The encoded size of the last health report this node wrote.
    pub health_report: ReportSize,
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

    /// Forgets the series of every route, (route, upstream) pair and
    /// upstream a new routing snapshot no longer has: `routes` maps each
    /// route label kept to the upstreams of its targets. Requests still in
    /// flight on a forgotten route count into handles no scrape reads; a
    /// route added again starts from zero, which Prometheus reads as a
    /// counter reset.
    pub fn retain(
        &self,
        routes: &BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
        upstreams: &BTreeSet<Arc<str>>,
    ) {
        lock(&self.routes).retain(|name, route| match routes.get(name) {
            Some(targets) => {
                lock(&route.targets).retain(|upstream, _| targets.contains(upstream));
                true
            }
            None => false,
        });
        lock(&self.upstreams).retain(|id, _| upstreams.contains(id));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn names(m: &Metrics) -> (Vec<String>, Vec<String>) {
        let routes = lock(&m.routes)
            .iter()
            .flat_map(|(r, rm)| {
                let mut v = vec![r.to_string()];
                v.extend(lock(&rm.targets).keys().map(|u| format!("{r}>{u}")));
                v
            })
            .collect();
        let upstreams = lock(&m.upstreams).keys().map(|u| u.to_string()).collect();
        (routes, upstreams)
    }

    #[test]
    fn retain_forgets_what_the_configuration_dropped() {
        let m = Metrics::default();
        let (fast, slow, a, b): (Arc<str>, Arc<str>, Arc<str>, Arc<str>) =
            ("fast".into(), "slow".into(), "a".into(), "b".into());
        m.route(&fast).target(&a);
        m.route(&fast).target(&b);
        m.route(&slow).target(&a);
        m.upstream(&a);
        m.upstream(&b);
        let kept = BTreeMap::from([(fast.clone(), BTreeSet::from([a.clone()]))]);
        m.retain(&kept, &BTreeSet::from([a.clone()]));
        assert_eq!(
            names(&m),
            (vec!["fast".into(), "fast>a".into()], vec!["a".into()])
        );
        // What is kept is the same handle: its counts go on.
        let before = m.route(&fast);
        m.retain(&kept, &BTreeSet::from([a]));
        assert!(Arc::ptr_eq(&before, &m.route(&fast)));
    }
}
