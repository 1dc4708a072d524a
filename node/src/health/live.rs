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
    /// The latest window summary from the health recorder.
    pub summary: ArcSwap<WindowSummary>,
    /// How many of this node's own samples stand behind `summary`, each
    /// worth less as it ages ([`super::blend`]), set by the recorder.
    pub freshness: ArcSwap<Freshness>,
    /// What the cluster's reports say of its time to first byte, for this
    /// node's region ([`super::HealthBoard::ttfb_estimate`]), published by the board
    /// follower each time the board is rebuilt, so a request reads it without
    /// looking anything up.
    pub shared_ttfb: ArcSwapOption<Quantiles>,
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
        let own = self.summary.load().ttfb_ms;
        let weight = self.freshness.load().at(now_ms, policy.half_life_ms);
        blend::blend(&own, weight, self.shared_ttfb.load().as_deref(), policy)
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
