//! The live state of one upstream, shared by the data plane (attempts in
//! flight, the breaker's probe), the health recorder (its window summary
//! and circuit) and the board follower (the cluster's figures): atomics
//! and `ArcSwap`s, so a request reads them without a lock.
//!
//! One `Live` per upstream id lives in the [`super::Registry`], which keeps
//! it across routing rebuilds; every `Upstream` the routing table builds
//! for that id holds the same one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use crossbeam_utils::atomic::AtomicCell;

use super::blend::{self, Blend, Freshness};
use super::breaker::Circuit;
use super::cooldown::Cooldown;
use super::window::{Quantiles, WindowSummary};
use crate::metrics::UpstreamMetrics;

/// Counters the data plane updates and the health recorder publishes.
pub struct Live {
    /// The upstream's id.
    pub id: Arc<str>,
    /// Its Prometheus counters (attempts by outcome, circuit changes).
    pub metrics: Arc<UpstreamMetrics>,
    /// Attempts currently running against the upstream.
    pub in_flight: AtomicUsize,
    /// The latest window summary from the health recorder (published with
    /// its freshness by [`Live::publish_window`]).
    pub summary: ArcSwap<WindowSummary>,
    /// How many of this node's own samples stand behind `summary`, each
    /// worth less as it ages ([`super::blend`]), set by the recorder.
    pub freshness: ArcSwap<Freshness>,
    /// What the cluster's reports say of its time to first byte, for this
    /// node's region ([`super::HealthBoard::ttfb_estimate`]), published by the board
    /// follower each time the board is rebuilt ([`Live::publish_shared`]), so a
    /// request reads it without looking anything up.
    pub shared_ttfb: ArcSwapOption<Quantiles>,
    /// Counts the publications of `summary`, `freshness` and `shared_ttfb`,
    /// so an estimate knows which inputs it was computed from.
    inputs: AtomicU64,
    /// The last estimate computed. Every target of a plan is estimated,
    /// and the pick again for its timeouts, each a blend with two `powf`
    /// per quantile once the cluster shares figures; the requests of one
    /// millisecond share one, as exact as computing it each time (the
    /// blend's only clock is that millisecond).
    estimated: AtomicCell<Option<Estimated>>,
    /// How long the upstream asked to be left alone (its `Retry-After`),
    /// here or on another node: while it lasts, requests skip it.
    pub cooldown: Cooldown,
    /// The circuit breaker's state (`Circuit::as_u8`), set by the recorder.
    circuit: AtomicU8,
    /// Probes a half-open circuit still allows.
    probes: AtomicU32,
    /// When a request last went to it as a latency probe while the router
    /// avoided it (`crate::select`), on [`super::cooldown::now_ms`]'s clock.
    last_probe_ms: AtomicU64,
    /// Plans that passed it over since that probe.
    passed_over: AtomicU64,
    /// Set once the upstream has left the routing table: the recorder
    /// forgets its windows and breaker, and a later upstream of the same
    /// id gets a new `Live`.
    retired: AtomicBool,
}

/// What an estimate was computed from: its millisecond, the publication
/// of its inputs, and the blend's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EstimateKey {
    now_ms: u64,
    inputs: u64,
    shared_worth: u64,
    half_life_ms: u64,
}

/// An estimate and what it was computed from.
#[derive(Debug, Clone, Copy)]
struct Estimated {
    key: EstimateKey,
    estimate: Option<Quantiles>,
}

impl Live {
    /// A fresh state: nothing measured, circuit closed.
    pub fn new(id: Arc<str>, metrics: Arc<UpstreamMetrics>) -> Self {
        Self {
            id,
            metrics,
            in_flight: AtomicUsize::new(0),
            summary: ArcSwap::default(),
            freshness: ArcSwap::default(),
            shared_ttfb: ArcSwapOption::default(),
            inputs: AtomicU64::new(0),
            estimated: AtomicCell::new(None),
            cooldown: Cooldown::default(),
            circuit: AtomicU8::new(Circuit::Closed.as_u8()),
            probes: AtomicU32::new(0),
            last_probe_ms: AtomicU64::new(0),
            passed_over: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// The time to first byte to expect at `now_ms` (on the recorder's
    /// clock, [`super::cooldown::now_ms`]): this node's window blended with
    /// the cluster's figure, by how many fresh samples of its own stand
    /// behind the window ([`blend::blend`]); `None` when nobody measured it.
    pub fn ttfb_estimate(&self, now_ms: u64, policy: &Blend) -> Option<Quantiles> {
        let key = EstimateKey {
            now_ms,
            inputs: self.inputs.load(Ordering::Acquire),
            shared_worth: policy.shared_worth.to_bits(),
            half_life_ms: policy.half_life_ms,
        };
        if let Some(done) = self.estimated.load()
            && done.key == key
        {
            return done.estimate;
        }
        let estimate = self.blended(now_ms, policy);
        self.estimated.store(Some(Estimated { key, estimate }));
        estimate
    }

    /// The estimate computed afresh, what [`Live::ttfb_estimate`] shares
    /// within a millisecond: for its tests and the benchmark that weighs
    /// the two.
    pub fn blended(&self, now_ms: u64, policy: &Blend) -> Option<Quantiles> {
        let own = self.summary.load().ttfb_ms;
        let weight = self.freshness.load().at(now_ms, policy.half_life_ms);
        blend::blend(&own, weight, self.shared_ttfb.load().as_deref(), policy)
    }

    /// Publishes the recorder's window summary and the freshness of the
    /// samples behind it.
    pub fn publish_window(&self, summary: WindowSummary, freshness: Freshness) {
        self.summary.store(Arc::new(summary));
        self.freshness.store(Arc::new(freshness));
        self.inputs.fetch_add(1, Ordering::Release);
    }

    /// Publishes what the cluster's reports say of the upstream's time to
    /// first byte for this node's region.
    pub fn publish_shared(&self, shared: Option<Quantiles>) {
        self.shared_ttfb.store(shared.map(Arc::new));
        self.inputs.fetch_add(1, Ordering::Release);
    }

    /// The circuit as the recorder last set it.
    pub fn circuit(&self) -> Circuit {
        Circuit::from_u8(self.circuit.load(Ordering::Relaxed))
    }

    /// Sets the circuit; `probe` allows one probe request.
    pub fn set_circuit(&self, circuit: Circuit, probe: bool) {
        self.probes.store(u32::from(probe), Ordering::Relaxed);
        self.circuit.store(circuit.as_u8(), Ordering::Relaxed);
    }

    /// Whether the upstream is cooled at `now_ms` (on
    /// [`super::cooldown::now_ms`]'s clock): a request skips it.
    pub fn cooled(&self, now_ms: u64) -> bool {
        self.cooldown.left(now_ms).is_some()
    }

    /// Whether a half-open circuit still allows a probe.
    pub fn probe_ready(&self) -> bool {
        self.probes.load(Ordering::Relaxed) > 0
    }

    /// Takes the probe of a half-open circuit; false if another request
    /// took it first.
    pub fn take_probe(&self) -> bool {
        self.probes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| p.checked_sub(1))
            .is_ok()
    }

    /// Counts a plan that passed the upstream over because another target
    /// was much faster; returns when its last latency probe went and how
    /// many plans passed it over since, counting this one.
    pub fn passed_over(&self) -> (u64, u64) {
        let passed = self.passed_over.fetch_add(1, Ordering::Relaxed) + 1;
        (self.last_probe_ms.load(Ordering::Relaxed), passed)
    }

    /// Takes the latency probe due since `last_ms` (as
    /// [`Live::passed_over`] read it) for a request at `now_ms`; false if
    /// another request took it first.
    pub fn take_latency_probe(&self, last_ms: u64, now_ms: u64) -> bool {
        let taken = self
            .last_probe_ms
            .compare_exchange(last_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.passed_over.store(0, Ordering::Relaxed);
        }
        taken
    }

    /// Whether the upstream has left the routing table.
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks the upstream as gone from the routing table.
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("id", &self.id)
            .field("circuit", &self.circuit())
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .field("retired", &self.retired())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn q(count: u64, p99: f64) -> Quantiles {
        Quantiles {
            count,
            p50: p99 / 4.0,
            p90: p99 / 2.0,
            p95: p99 / 1.5,
            p99,
            p999: p99 * 2.0,
        }
    }

    fn live() -> Live {
        Live::new(Arc::from("u"), Arc::default())
    }

    #[test]
    fn a_shared_estimate_is_what_computing_it_each_time_gives() {
        let live = live();
        let policy = Blend::default();
        let mut freshness = Freshness::default();
        for _ in 0..3 {
            freshness.add(1_000, policy.half_life_ms);
        }
        let summary = WindowSummary {
            ttfb_ms: q(3, 40.0),
            ..WindowSummary::default()
        };
        live.publish_window(summary, freshness);
        live.publish_shared(Some(q(500, 900.0)));
        // Each millisecond its own figure (the own samples age), the same
        // one for every call within it.
        for now_ms in [1_000, 1_000, 1_001, 5_000, 5_000, 60_000, 1_001] {
            let estimate = live.ttfb_estimate(now_ms, &policy);
            assert_eq!(estimate, live.blended(now_ms, &policy), "at {now_ms}");
            assert!(estimate.unwrap().p99 > 40.0);
        }
        assert_ne!(
            live.ttfb_estimate(1_000, &policy),
            live.ttfb_estimate(60_000, &policy)
        );
    }

    #[test]
    fn the_requests_of_one_millisecond_share_one_computation() {
        let live = live();
        let policy = Blend::default();
        live.publish_shared(Some(q(500, 900.0)));
        assert_eq!(live.ttfb_estimate(3, &policy), Some(q(500, 900.0)));
        // Changed behind the publication counter's back: within the same
        // millisecond the estimate already computed is what is read; the
        // next millisecond computes again.
        live.shared_ttfb.store(Some(Arc::new(q(500, 100.0))));
        assert_eq!(live.ttfb_estimate(3, &policy), Some(q(500, 900.0)));
        assert_eq!(live.ttfb_estimate(4, &policy), Some(q(500, 100.0)));
    }

    #[test]
    fn a_publication_or_another_policy_within_the_millisecond_is_seen_at_once() {
        let live = live();
        let policy = Blend::default();
        assert_eq!(live.ttfb_estimate(7, &policy), None);
        live.publish_shared(Some(q(500, 900.0)));
        assert_eq!(live.ttfb_estimate(7, &policy), Some(q(500, 900.0)));
        let summary = WindowSummary {
            ttfb_ms: q(3, 40.0),
            ..WindowSummary::default()
        };
        let mut freshness = Freshness::default();
        freshness.add(7, policy.half_life_ms);
        live.publish_window(summary, freshness);
        let blended = live.ttfb_estimate(7, &policy).unwrap();
        assert!(blended.p99 < 900.0 && blended.p99 > 40.0, "{blended:?}");
        // A policy that trusts the cluster more, in the same millisecond.
        let trusting = Blend {
            shared_worth: 50.0,
            ..policy
        };
        let leaning = live.ttfb_estimate(7, &trusting).unwrap();
        assert_eq!(Some(leaning), live.blended(7, &trusting));
        assert!(leaning.p99 > blended.p99, "{leaning:?} {blended:?}");
        live.publish_shared(None);
        assert_eq!(live.ttfb_estimate(7, &policy), Some(q(3, 40.0)));
    }
}
