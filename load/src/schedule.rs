//! When to send: the open- and closed-loop plans and the options common to both.

use std::time::Duration;

use tokio::sync::Semaphore;

use super::LoadError;

/// Default [`OpenLoop::max_in_flight`]: far above what a healthy target
/// needs (rate × latency), low enough to bound the generator's memory.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default [`OpenLoop::batch_window`].
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_micros(250);

/// Open loop: a fixed arrival rate, independent of how fast answers come.
/// This is the plan that measures latency honestly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenLoop {
    /// Requests per second.
    pub rate: f64,
    /// How long to keep sending; `floor(rate × duration)` requests are sent.
    pub duration: Duration,
    /// Requests allowed in flight at once. When the cap is hit, a scheduled
    /// request is recorded as [`Outcome::Dropped`](super::Outcome::Dropped)
    /// instead of being sent, so an overloaded target cannot make the
    /// generator grow without bound, and the overload still shows.
    pub max_in_flight: usize,
    /// Shortest sleep of the scheduler: when requests are due closer together
    /// than this, it sends them in batches, one wake-up per window. Each
    /// wake-up costs the generator and the target a thread wake (at 10k req/s
    /// on 2 cores, a window of 250 µs instead of none cut the generator's CPU
    /// by about a third); the price is up to this much send lag, which is
    /// counted in latency like any other. Zero wakes for every request.
    pub batch_window: Duration,
}

impl OpenLoop {
    /// A plan with the default in-flight cap ([`DEFAULT_MAX_IN_FLIGHT`]) and
    /// batch window ([`DEFAULT_BATCH_WINDOW`]).
    pub fn new(rate: f64, duration: Duration) -> Self {
        Self {
            rate,
            duration,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            batch_window: DEFAULT_BATCH_WINDOW,
        }
    }

    /// Checks the plan before anything is sent.
    pub(crate) fn validate(&self) -> Result<(), LoadError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(LoadError::InvalidRate(self.rate));
        }
        if self.duration.is_zero() {
            return Err(LoadError::ZeroDuration);
        }
        if self.max_in_flight == 0 || self.max_in_flight > max_in_flight_cap() {
            return Err(LoadError::InvalidInFlightCap {
                got: self.max_in_flight,
                max: max_in_flight_cap(),
            });
        }
        Ok(())
    }

    /// Number of requests the plan sends.
    pub fn count(&self) -> u64 {
        // Float to integer `as` saturates; a validated plan is in range anyway.
        (self.rate * self.duration.as_secs_f64()).floor() as u64
    }

    /// When request `i` is due, as an offset from the start of the run.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::try_from_secs_f64(i as f64 / self.rate).unwrap_or(Duration::MAX)
    }
}

/// The largest in-flight cap: it has to fit a semaphore and a `u32` permit count.
fn max_in_flight_cap() -> usize {
    Semaphore::MAX_PERMITS.min(u32::MAX as usize)
}

/// Closed loop: `concurrency` workers, each sending its next request as soon
/// as the previous one is answered. It finds saturation throughput; its
/// latencies suffer from coordinated omission and should not be quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedLoop {
    /// Number of workers (and so of connections in use).
    pub concurrency: usize,
    /// How long the workers keep starting new requests.
    pub duration: Duration,
}

impl ClosedLoop {
    /// Checks the plan before anything is sent.
    pub(crate) fn validate(&self) -> Result<(), LoadError> {
        if self.concurrency == 0 {
            return Err(LoadError::ZeroConcurrency);
        }
        if self.duration.is_zero() {
            return Err(LoadError::ZeroDuration);
        }
        Ok(())
    }
}

/// Settings shared by both plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Limit on one request, from send to the end of its body; past it the
    /// request is recorded as [`Outcome::Timeout`](super::Outcome::Timeout).
    pub timeout: Duration,
    /// Keep a [`Record`](super::Record) of every request (memory grows with
    /// the request count), not only the histograms.
    pub keep_records: bool,
    /// Seed of the mix choice, so a run's sequence of requests can be repeated.
    pub seed: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            keep_records: false,
            seed: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn plan(rate: f64, millis: u64) -> OpenLoop {
        OpenLoop {
            max_in_flight: 10,
            ..OpenLoop::new(rate, Duration::from_millis(millis))
        }
    }

    #[test]
    fn count_is_rate_times_duration_rounded_down() {
        assert_eq!(plan(100.0, 1_000).count(), 100);
        assert_eq!(plan(100.0, 1_999).count(), 199);
        assert_eq!(plan(0.5, 3_000).count(), 1);
        assert_eq!(plan(3.0, 100).count(), 0);
    }

    #[test]
    fn offsets_are_evenly_spaced_from_zero() {
        let p = plan(200.0, 1_000);
        assert_eq!(p.offset(0), Duration::ZERO);
        assert_eq!(p.offset(1), Duration::from_millis(5));
        assert_eq!(p.offset(199), Duration::from_millis(995));
        let q = plan(3.0, 1_000);
        assert_eq!(q.offset(1).as_nanos(), 333_333_333);
    }

    #[test]
    fn bad_plans_are_rejected() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                plan(rate, 1_000).validate(),
                Err(LoadError::InvalidRate(_))
            ));
        }
        assert!(matches!(
            plan(1.0, 0).validate(),
            Err(LoadError::ZeroDuration)
        ));
        let mut capless = plan(1.0, 1_000);
        capless.max_in_flight = 0;
        assert!(matches!(
            capless.validate(),
            Err(LoadError::InvalidInFlightCap { .. })
        ));
        let closed = ClosedLoop {
            concurrency: 0,
            duration: Duration::from_secs(1),
        };
        assert!(matches!(closed.validate(), Err(LoadError::ZeroConcurrency)));
        assert!(plan(1.0, 1_000).validate().is_ok());
    }
}
