//! The live state of one upstream, shared by the data plane (attempts in
//! flight, the breaker's probe), the health recorder (its window summary
//! and circuit) and the board follower (the cluster's figures): atomics
//! and `ArcSwap`s, so a request reads them without a lock.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::breaker::Circuit;
use crate::health::{Quantiles, WindowSummary};

/// Counters the data plane updates and the health recorder publishes.
#[derive(Default)]
pub struct Live {
    /// Attempts currently running against the upstream.
    pub in_flight: AtomicUsize,
    /// The latest window summary from the health recorder.
    pub summary: ArcSwap<WindowSummary>,
    /// What the cluster's reports say of its time to first byte, for this
    /// node's region ([`crate::board::HealthBoard::ttfb_estimate`]), published by the board
    /// follower each time the board is rebuilt, so a request reads it without
    /// looking anything up.
    pub shared_ttfb: ArcSwapOption<Quantiles>,
    /// The circuit breaker's state (`Circuit::as_u8`), set by the recorder.
    circuit: AtomicU8,
    /// Probes a half-open circuit still allows.
    probes: AtomicU32,
}

impl Live {
    /// The circuit as the recorder last set it.
    pub fn circuit(&self) -> Circuit {
        Circuit::from_u8(self.circuit.load(Ordering::Relaxed))
    }

    /// Sets the circuit; `probe` allows one probe request.
    pub fn set_circuit(&self, circuit: Circuit, probe: bool) {
        self.probes.store(u32::from(probe), Ordering::Relaxed);
        self.circuit.store(circuit.as_u8(), Ordering::Relaxed);
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
}
