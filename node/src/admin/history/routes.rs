//! The per-route half of the history: each route's request rate, error
//! share and p99 over the last 15 minutes, as this node answered them.
//!
//! A route has no window of its own (the health windows are per upstream),
//! so its points are differences of the counters `/metrics` already keeps
//! for it (`crate::metrics::RouteMetrics`): requests answered, by status,
//! and the histogram of time to an answer. Each sample keeps the totals it
//! read, and the next one's point is what was counted in between. A route
//! seen for the first time (or whose counters went back: deleted and added
//! again) only sets its baseline. Pure, like the rest of the history: the
//! totals and the time are handed in.

use std::collections::{BTreeMap, VecDeque};
use std::sync::PoisonError;

use serde::Serialize;

use super::{INTERVAL_MS, MAX_SERIES, POINTS, Point};
use crate::metrics::{LATENCY_BUCKETS, RouteMetrics, StatusCounts};

/// One route's counters at one moment, since the node started (or the
/// route was added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTotals {
    /// Requests answered, by an upstream or not.
    pub requests: u64,
    /// Of them, answers with a 5xx or 429 status, and those no upstream
    /// gave (502, 503, 504, 429 from Meridian itself).
    pub errors: u64,
    /// The time-to-answer histogram's buckets ([`LATENCY_BUCKETS`], then `+Inf`).
    pub latency: [u64; LATENCY_BUCKETS.len() + 1],
}

impl RouteTotals {
    /// Reads a route's counters (relaxed loads: a request counted between
    /// two of them shows up in the next sample).
    pub fn read(metrics: &RouteMetrics) -> Self {
        let mut totals = Self {
            latency: metrics.latency.bucket_counts(),
            ..Self::default()
        };
        totals.add(&metrics.unanswered, true);
        let targets = metrics
            .targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for target in targets.values() {
            totals.add(&target.answers, false);
        }
        totals
    }

    fn add(&mut self, counts: &StatusCounts, all_errors: bool) {
        for (status, n) in counts.counts() {
            self.requests += n;
            if all_errors || status >= 500 || status == 429 {
                self.errors += n;
            }
        }
    }

    /// What was counted since `before`, as a point at `at_ms`; `None` when
    /// a counter went back (the route was deleted and added again).
    fn since(&self, before: &Self, elapsed_ms: u64, at_ms: u64) -> Option<Point> {
        let requests = self.requests.checked_sub(before.requests)?;
        let errors = self.errors.checked_sub(before.errors)?;
        let mut buckets = [0; LATENCY_BUCKETS.len() + 1];
        for (i, b) in buckets.iter_mut().enumerate() {
            *b = self.latency[i].checked_sub(before.latency[i])?;
        }
        let elapsed_s = elapsed_ms.max(1) as f64 / 1000.0;
        Some(Point {
            at_unix_ms: at_ms,
            rate: requests as f64 / elapsed_s,
            error_share: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p99_ms: quantile_ms(&buckets, 0.99),
        })
    }
}

/// The `q` quantile of a histogram's (non-cumulative) bucket counts, in
/// milliseconds, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; the last finite bound when it falls in
/// `+Inf`; `None` without observations.
pub fn quantile_ms(buckets: &[u64; LATENCY_BUCKETS.len() + 1], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                break;
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        below += n;
    }
    LATENCY_BUCKETS.last().map(|s| s * 1000.0)
}

/// One route's series as the endpoint writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSeries {
    /// The model name clients send.
    pub route: String,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// The per-route rings and the totals of the last sample.
#[derive(Debug, Default)]
pub struct RouteHistory {
    last: BTreeMap<String, (u64, RouteTotals)>,
    series: BTreeMap<String, VecDeque<Point>>,
}

impl RouteHistory {
    /// Records the routes' `totals` read at `now_ms` (the caller samples
    /// once per interval): a point for each route with a baseline, a
    /// baseline for the others. Routes gone from `totals` lose their
    /// baseline; their points age out like the upstreams'.
    pub fn sample(&mut self, now_ms: u64, totals: Vec<(String, RouteTotals)>) {
        let mut last = BTreeMap::new();
        for (route, now) in totals {
            let point = self
                .last
                .get(&route)
                .and_then(|(at, before)| now.since(before, now_ms.saturating_sub(*at), now_ms));
            if let Some(point) = point
                && (self.series.contains_key(&route) || self.series.len() < MAX_SERIES)
            {
                let ring = self.series.entry(route.clone()).or_default();
                if ring.len() == POINTS {
                    ring.pop_front();
                }
                ring.push_back(point);
            }
            if last.len() < MAX_SERIES {
                last.insert(route, (now_ms, now));
            }
        }
        self.last = last;
        let oldest = now_ms.saturating_sub(INTERVAL_MS * POINTS as u64);
        self.series.retain(|_, ring| {
            while ring.front().is_some_and(|p| p.at_unix_ms <= oldest) {
                ring.pop_front();
            }
            !ring.is_empty()
        });
    }

    /// Every route's series, by name.
    pub fn answer(&self) -> Vec<RouteSeries> {
        self.series
            .iter()
            .map(|(route, ring)| RouteSeries {
                route: route.clone(),
                points: ring.iter().copied().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn points_are_what_was_counted_between_samples() {
        let metrics = RouteMetrics::default();
        let mut h = RouteHistory::default();
        let t0 = 1_764_480_000_000;
        // Counted before the first sample: only the baseline.
        metrics.target(&Arc::from("a")).answers.inc(200);
        h.sample(t0, vec![("fast".into(), RouteTotals::read(&metrics))]);
        assert!(h.answer().is_empty());

        let a = metrics.target(&Arc::from("a"));
        for _ in 0..7 {
            a.answers.inc(200);
            metrics.latency.observe(Duration::from_millis(40));
        }
        a.answers.inc(400);
        a.answers.inc(503);
        metrics.unanswered.inc(502);
        for _ in 0..3 {
            metrics.latency.observe(Duration::from_millis(700));
        }
        let t1 = t0 + INTERVAL_MS;
        h.sample(t1, vec![("fast".into(), RouteTotals::read(&metrics))]);
        let series = h.answer();
        assert_eq!(series.len(), 1);
        let p = series[0].points[0];
        assert_eq!(p.at_unix_ms, t1);
        // Ten requests in ten seconds; a 503 and a 502 of them are errors,
        // the client's 400 is not.
        assert_eq!(p.rate, 1.0);
        assert_eq!(p.error_share, 0.2);
        // The slowest three fell in the (0.5 s, 1 s] bucket.
        let p99 = p.p99_ms.unwrap();
        assert!(p99 > 500.0 && p99 <= 1000.0, "{p99}");

        // Nothing in the next interval: a zero rate and no p99.
        let t2 = t1 + INTERVAL_MS;
        h.sample(t2, vec![("fast".into(), RouteTotals::read(&metrics))]);
        let p = h.answer()[0].points[1];
        assert_eq!((p.rate, p.error_share, p.p99_ms), (0.0, 0.0, None));
    }

    #[test]
    fn a_route_added_again_only_sets_its_baseline() {
        let mut h = RouteHistory::default();
        let busy = RouteTotals {
            requests: 50,
            ..RouteTotals::default()
        };
        h.sample(0, vec![("r".into(), busy)]);
        // Deleted and added again: counters from zero.
        h.sample(INTERVAL_MS, vec![("r".into(), RouteTotals::default())]);
        assert!(h.answer().is_empty());
        // Gone from the table: its points age out after fifteen minutes.
        h.sample(2 * INTERVAL_MS, vec![("r".into(), busy)]);
        assert_eq!(h.answer()[0].points[0].rate, 5.0);
        h.sample(2 * INTERVAL_MS + INTERVAL_MS * POINTS as u64, vec![]);
        assert!(h.answer().is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut b = [0; LATENCY_BUCKETS.len() + 1];
        assert_eq!(quantile_ms(&b, 0.99), None);
        // 100 in (0.1 s, 0.25 s]: the 99th at 99 % of the way.
        b[5] = 100;
        let p = quantile_ms(&b, 0.99).unwrap();
        assert!((p - 248.5).abs() < 1e-6, "{p}");
        // Past the last bound: the last bound.
        b[LATENCY_BUCKETS.len()] = 1000;
        assert_eq!(quantile_ms(&b, 0.99), Some(120_000.0));
    }
}
