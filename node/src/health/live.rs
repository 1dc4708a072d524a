//! The live state of one upstream, shared by the data plane (attempts in
//! flight, the breaker's probe), the health recorder (its window summary
//! and circuit) and the board follower (the cluster's figures): atomics
//! and `ArcSwap`s, so a request reads them without a lock.
//!
//! One `Live` per upstream id lives in the [`super::Registry`], which keeps
//! it across routing rebuilds; every `Upstream` the routing table builds
//! for that id holds the same one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};

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
            shared_ttfb: ArcSwapOption::default(),
            cooldown: Cooldown::default(),
            circuit: AtomicU8::new(Circuit::Closed.as_u8()),
            probes: AtomicU32::new(0),
            retired: AtomicBool::new(false),
        }
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
