//! The circuit breaker of one upstream. Pure: attempt results and the time
//! (milliseconds on the caller's clock) go in, the circuit's state comes out.
//!
//! Closed, the upstream takes traffic. After `failures` consecutive failed
//! attempts (or one answer broken after the client saw part of it) the
//! circuit opens and the upstream is ejected for an ejection
//! time that doubles with every ejection that follows a failed probe (capped).
//! When that time is up the circuit is half-open: one probe request may go;
//! its success closes the circuit, its failure opens it again for longer. A
//! probe that never reports (its request was cancelled) is re-armed after
//! the current ejection time, so the circuit cannot stay half-open forever.

use serde::Serialize;

/// What the data plane sees of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    /// Traffic flows.
    Closed,
    /// Ejected: tried only when every other target has failed.
    Open,
    /// One probe may go.
    HalfOpen,
}

impl Circuit {
    /// As stored in an atomic.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// From an atomic; unknown values read as closed.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// When circuits open and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// The first ejection.
    pub ejection_ms: u64,
    /// The longest ejection.
    pub max_ejection_ms: u64,
}

/// What the caller must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The circuit opened; the upstream is ejected for this long.
    Opened {
        /// The ejection time.
        for_ms: u64,
    },
    /// The circuit is half-open: allow one probe.
    Probe,
    /// A probe succeeded and the circuit closed: the failures that opened
    /// it no longer describe the upstream.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { rearm_ms: u64 },
}

/// One upstream's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    consecutive: u32,
    /// Ejections since the circuit last stayed closed for a whole maximum
    /// ejection time; sets the length of the next one.
    ejections: u32,
    closed_at_ms: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: State::Closed,
            consecutive: 0,
            ejections: 0,
            closed_at_ms: 0,
        }
    }
}

impl Breaker {
    /// The circuit's state.
    pub fn circuit(&self) -> Circuit {
        match self.state {
            State::Closed => Circuit::Closed,
            State::Open { .. } => Circuit::Open,
            State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    /// How long the next ejection lasts.
    pub fn next_ejection_ms(&self, policy: &BreakerPolicy) -> u64 {
        let doublings = self.ejections.min(20);
        policy
            .ejection_ms
            .saturating_mul(1 << doublings)
            .min(policy.max_ejection_ms)
    }

    fn open(&mut self, now_ms: u64, policy: &BreakerPolicy) -> Change {
        let for_ms = self.next_ejection_ms(policy);
        self.ejections = self.ejections.saturating_add(1);
        self.consecutive = 0;
        self.state = State::Open {
            until_ms: now_ms.saturating_add(for_ms),
        };
        Change::Opened { for_ms }
    }

    /// An attempt at the upstream ended: `failed` for an upstream failure
    /// or timeout, not for the client's own 4xx.
    pub fn on_result(
        &mut self,
        now_ms: u64,
        failed: bool,
        policy: &BreakerPolicy,
    ) -> Option<Change> {
        match self.state {
            State::Closed if failed => {
                self.consecutive = self.consecutive.saturating_add(1);
                (self.consecutive >= policy.failures).then(|| self.open(now_ms, policy))
            }
            State::Closed => {
                self.consecutive = 0;
                if self.ejections > 0
                    && now_ms.saturating_sub(self.closed_at_ms) >= policy.max_ejection_ms
                {
                    self.ejections = 0;
                }
                None
            }
            // Attempts that started before the circuit opened.
            State::Open { .. } => None,
            State::HalfOpen { .. } if failed => Some(self.open(now_ms, policy)),
            State::HalfOpen { .. } => {
                self.state = State::Closed;
                self.consecutive = 0;
                self.closed_at_ms = now_ms;
                Some(Change::Closed)
            }
        }
    }

    /// An answer failed after part of it had reached the client (a stream
    /// cut mid-way): damage no failover can undo, so the circuit opens at
    /// once rather than after `failures` of them.
    pub fn on_broken(&mut self, now_ms: u64, policy: &BreakerPolicy) -> Option<Change> {
        match self.state {
            State::Open { .. } => None,
            State::Closed | State::HalfOpen { .. } => Some(self.open(now_ms, policy)),
        }
    }

    /// Time passed: an ejection may be over, or a probe overdue.
    pub fn on_tick(&mut self, now_ms: u64, policy: &BreakerPolicy) -> Option<Change> {
        match self.state {
            State::Open { until_ms } | State::HalfOpen { rearm_ms: until_ms }
                if now_ms >= until_ms =>
            {
                let wait = self.next_ejection_ms(policy);
                self.state = State::HalfOpen {
                    rearm_ms: now_ms.saturating_add(wait),
                };
                Some(Change::Probe)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        ejection_ms: 1_000,
        max_ejection_ms: 5_000,
    };

    fn fail(b: &mut Breaker, now: u64) -> Option<Change> {
        b.on_result(now, true, &POLICY)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut b = Breaker::default();
        assert_eq!(fail(&mut b, 0), None);
        assert_eq!(fail(&mut b, 1), None);
        assert_eq!(b.on_result(2, false, &POLICY), None);
        assert_eq!(fail(&mut b, 3), None);
        assert_eq!(fail(&mut b, 4), None);
        assert_eq!(fail(&mut b, 5), Some(Change::Opened { for_ms: 1_000 }));
        assert_eq!(b.circuit(), Circuit::Open);
        // Late results of attempts started before it opened change nothing.
        assert_eq!(b.on_result(6, false, &POLICY), None);
        assert_eq!(b.circuit(), Circuit::Open);
    }

    #[test]
    fn half_opens_after_the_ejection_and_a_good_probe_closes() {
        let mut b = Breaker::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        assert_eq!(b.on_tick(1_001, &POLICY), None);
        assert_eq!(b.on_tick(1_002, &POLICY), Some(Change::Probe));
        assert_eq!(b.circuit(), Circuit::HalfOpen);
        assert_eq!(b.on_result(1_100, false, &POLICY), Some(Change::Closed));
        assert_eq!(b.circuit(), Circuit::Closed);
    }

    #[test]
    fn failed_probes_double_the_ejection_up_to_the_cap() {
        let mut b = Breaker::default();
        let mut now = 0;
        for _ in 0..3 {
            now += 1;
            fail(&mut b, now);
        }
        let mut ejections = vec![1_000];
        for _ in 0..4 {
            now += 10_000;
            assert_eq!(b.on_tick(now, &POLICY), Some(Change::Probe));
            let Some(Change::Opened { for_ms }) = fail(&mut b, now) else {
                panic!("a failed probe reopens");
            };
            ejections.push(for_ms);
        }
        assert_eq!(ejections, vec![1_000, 2_000, 4_000, 5_000, 5_000]);
    }

    #[test]
    fn ejections_are_forgiven_after_a_long_closed_spell() {
        let mut b = Breaker::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        b.on_tick(2_000, &POLICY);
        b.on_result(2_000, true, &POLICY); // second ejection: 2 s
        b.on_tick(5_000, &POLICY);
        assert_eq!(b.on_result(5_000, false, &POLICY), Some(Change::Closed));
        assert_eq!(b.next_ejection_ms(&POLICY), 4_000);
        b.on_result(5_000 + POLICY.max_ejection_ms, false, &POLICY);
        assert_eq!(b.next_ejection_ms(&POLICY), 1_000);
    }

    #[test]
    fn one_broken_answer_opens_the_circuit() {
        let mut b = Breaker::default();
        assert_eq!(
            b.on_broken(10, &POLICY),
            Some(Change::Opened { for_ms: 1_000 })
        );
        assert_eq!(b.on_broken(20, &POLICY), None, "already open");
        assert_eq!(b.on_tick(1_010, &POLICY), Some(Change::Probe));
        assert_eq!(
            b.on_broken(1_020, &POLICY),
            Some(Change::Opened { for_ms: 2_000 })
        );
    }

    #[test]
    fn a_lost_probe_is_rearmed() {
        let mut b = Breaker::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        assert_eq!(b.on_tick(1_002, &POLICY), Some(Change::Probe));
        // The probe's request was cancelled and never reports.
        assert_eq!(b.on_tick(2_000, &POLICY), None);
        assert_eq!(b.on_tick(3_002, &POLICY), Some(Change::Probe));
    }

    proptest::proptest! {
        /// Whatever the results and ticks: an ejection never exceeds the
        /// cap, a circuit only closes on a success, and it never stays open
        /// past its ejection once time moves on.
        #[test]
        fn breakers_keep_their_promises(
            events in proptest::collection::vec((0u64..3_000, proptest::option::of(proptest::bool::ANY)), 1..200)
        ) {
            let mut b = Breaker::default();
            let mut now = 0u64;
            for (step, result) in events {
                now += step;
                let before = b.circuit();
                let change = match result {
                    Some(failed) => b.on_result(now, failed, &POLICY),
                    None => b.on_tick(now, &POLICY),
                };
                if let Some(Change::Opened { for_ms }) = change {
                    proptest::prop_assert!(for_ms <= POLICY.max_ejection_ms);
                    proptest::prop_assert!(for_ms >= POLICY.ejection_ms);
                }
                if b.circuit() == Circuit::Closed && before != Circuit::Closed {
                    proptest::prop_assert_eq!(result, Some(false));
                }
            }
            if b.circuit() == Circuit::Open {
                b.on_tick(now + POLICY.max_ejection_ms, &POLICY);
                proptest::prop_assert_eq!(b.circuit(), Circuit::HalfOpen);
            }
        }
    }

    #[test]
    fn circuits_survive_the_atomic() {
        for c in [Circuit::Closed, Circuit::Open, Circuit::HalfOpen] {
            assert_eq!(Circuit::from_u8(c.as_u8()), c);
        }
    }
}
