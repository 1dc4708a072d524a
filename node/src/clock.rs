//! The node's clocks in milliseconds, shared by every module that keeps
//! time windows (cooldowns, the classes' SLA windows, the keys' rate
//! windows and usage days), so that one reading means the same instant
//! everywhere and no module has to import another only for its clock.
//!
//! Both are the kernel's coarse clocks where it has them (Linux's
//! `CLOCK_MONOTONIC_COARSE` and `CLOCK_REALTIME_COARSE`): the time of the
//! last scheduler tick, read from the vDSO without reading the TSC (about
//! 3 ns a millisecond reading against 27 for std's clocks on the
//! development VM: `cargo bench -p meridian-benches --bench clock`), and
//! behind the full reading by at most one tick (1-10 ms with the kernel's
//! `HZ`). A request reads these about ten
//! times on its way (windows, cooldowns, estimates), where a tick's
//! precision is plenty; what measures a latency reads `Instant`. nginx
//! keeps its own cached time for the same reason.

use std::sync::OnceLock;

/// Milliseconds since the node's first reading of this clock; never goes
/// back.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    let now = monotonic_raw_ms();
    now.saturating_sub(*START.get_or_init(|| now))
}

/// The wall clock in Unix milliseconds (0 before 1970); steps when the
/// system's clock is set.
pub fn wall_ms() -> u64 {
    wall_raw_ms()
}

#[cfg(target_os = "linux")]
fn monotonic_raw_ms() -> u64 {
    timespec_ms(rustix::time::clock_gettime(
        rustix::time::ClockId::MonotonicCoarse,
    ))
}

#[cfg(target_os = "linux")]
fn wall_raw_ms() -> u64 {
    timespec_ms(rustix::time::clock_gettime(
        rustix::time::ClockId::RealtimeCoarse,
    ))
}

#[cfg(target_os = "linux")]
fn timespec_ms(ts: rustix::time::Timespec) -> u64 {
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let millis = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

#[cfg(not(target_os = "linux"))]
fn monotonic_raw_ms() -> u64 {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    let base = BASE.get_or_init(std::time::Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(not(target_os = "linux"))]
fn wall_raw_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::*;

    /// The coarse clock is behind the fine one by at most a tick (10 ms at
    /// the slowest `HZ`), so an interval it measures is the fine one's
    /// within a tick either way; it never goes back.
    #[test]
    fn the_monotonic_clock_follows_the_fine_one() {
        let fine_start = Instant::now();
        let start = monotonic_ms();
        std::thread::sleep(Duration::from_millis(30));
        let coarse = monotonic_ms().saturating_sub(start);
        let fine = u64::try_from(fine_start.elapsed().as_millis()).unwrap_or(u64::MAX);
        assert!(coarse <= fine + 12, "coarse {coarse} ms, fine {fine} ms");
        assert!(coarse + 12 >= 30, "coarse {coarse} ms over a 30 ms sleep");
        let mut last = monotonic_ms();
        for _ in 0..10_000 {
            let now = monotonic_ms();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
        }
    }

    #[test]
    fn the_wall_clock_is_the_systems_within_a_tick() {
        let system = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0)
        };
        let before = system();
        let coarse = wall_ms();
        let after = system();
        assert!(coarse <= after, "coarse {coarse} ahead of {after}");
        assert!(
            coarse + 12 >= before,
            "coarse {coarse} behind {before} by over a tick"
        );
    }
}
