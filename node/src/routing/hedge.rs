//! The hedging budget of a route: a token bucket that every request fills a
//! little (by the route's budget share) and every hedge empties by one, so
//! hedges never exceed that share of the route's requests, plus a small
//! burst. Lock-free: the bucket is one atomic, counted in thousandths of a
//! token; the arithmetic is pure and tested on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Thousandths of a token per token.
const UNIT: u64 = 1_000;

/// Hedges the bucket holds at most: a burst after a quiet spell.
const BURST: u64 = 10;

/// The bucket after a request deposits `share` of a token.
pub fn deposit(tokens: u64, share: f64) -> u64 {
    let add = (share.clamp(0.0, 1.0) * UNIT as f64).round() as u64;
    tokens.saturating_add(add).min(BURST * UNIT)
}

/// The bucket after a hedge takes a token, if it holds one.
pub fn withdraw(tokens: u64) -> Option<u64> {
    tokens.checked_sub(UNIT)
}

/// A route's hedging: when to hedge and how much.
#[derive(Debug)]
pub struct Hedge {
    /// The quantile of the target's time to first byte to wait for.
    pub quantile: f64,
    /// Never sooner than this.
    pub min_delay: Duration,
    /// Share of requests that may be hedged.
    pub share: f64,
    tokens: AtomicU64,
}

impl Hedge {
    /// A hedge policy with an empty bucket.
    pub fn new(quantile: f64, min_delay: Duration, share: f64) -> Self {
        Self {
            quantile,
            min_delay,
            share,
            tokens: AtomicU64::new(0),
        }
    }

    /// A request arrived: it earns the route a share of a hedge.
    pub fn earn(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(deposit(t, self.share))
            });
    }

    /// Takes one hedge from the budget; false when it is spent.
    pub fn spend(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, withdraw)
            .is_ok()
    }

    /// The delay for a target whose time to first byte has these
    /// quantiles (ms): the configured quantile, interpolated between the
    /// ones the window keeps, never below `min_delay`.
    pub fn delay(&self, p50: f64, p90: f64, p95: f64, p99: f64) -> Duration {
        let points = [(0.5, p50), (0.9, p90), (0.95, p95), (0.99, p99)];
        let q = self.quantile;
        let ms = match points.iter().position(|(at, _)| q <= *at) {
            Some(0) => p50,
            None => p99,
            Some(i) => {
                let (q0, v0) = points[i - 1];
                let (q1, v1) = points[i];
                v0 + (v1 - v0) * (q - q0) / (q1 - q0)
            }
        };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0).max(self.min_delay)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_bucket_caps_hedges_at_the_share_plus_a_burst() {
        let hedge = Hedge::new(0.95, Duration::ZERO, 0.1);
        let mut hedges = 0;
        for _ in 0..10_000 {
            hedge.earn();
            // A route that would hedge every request.
            if hedge.spend() {
                hedges += 1;
            }
        }
        assert_eq!(hedges, 1_000);
        // A quiet spell fills the bucket only up to the burst.
        for _ in 0..1_000 {
            hedge.earn();
        }
        let burst = (0..100).filter(|_| hedge.spend()).count();
        assert_eq!(burst, BURST as usize);
    }

    #[test]
    fn deposits_and_withdrawals_are_exact() {
        assert_eq!(deposit(0, 0.1), 100);
        assert_eq!(deposit(9_950, 0.1), 10_000);
        assert_eq!(deposit(0, 7.0), 1_000);
        assert_eq!(withdraw(999), None);
        assert_eq!(withdraw(1_500), Some(500));
    }

    #[test]
    fn delay_reads_the_quantile() {
        let hedge = Hedge::new(0.95, Duration::from_millis(5), 0.1);
        assert_eq!(
            hedge.delay(10.0, 20.0, 30.0, 90.0),
            Duration::from_millis(30)
        );
        let p97 = Hedge::new(0.97, Duration::ZERO, 0.1).delay(10.0, 20.0, 30.0, 90.0);
        assert_eq!(p97, Duration::from_millis(60));
        assert_eq!(
            Hedge::new(0.3, Duration::ZERO, 0.1).delay(10.0, 20.0, 30.0, 90.0),
            Duration::from_millis(10)
        );
        assert_eq!(hedge.delay(1.0, 1.0, 1.0, 1.0), Duration::from_millis(5));
    }
}
