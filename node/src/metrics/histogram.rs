//! The request path's counters: a histogram of durations and answers by
//! status, each a few relaxed atomic adds, never a lock.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};

/// Bucket bounds, in seconds, of the request and first-byte histograms:
/// from a cached embedding (milliseconds) to a long completion (minutes).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

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

    /// The count of each bucket of [`LATENCY_BUCKETS`], then `+Inf`, not
    /// cumulative: what the dashboard's history takes differences of.
    pub fn bucket_counts(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    pub(super) fn encode(&self, mut m: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::sync::Arc;

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
}
