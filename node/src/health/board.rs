//! The health board: every member's latest report merged, per upstream, into
//! one view per region and one for the whole cluster. Rebuilt after each
//! applied report and swapped whole, so the router reads it without a lock.
//!
//! [`HealthBoard::build`] is pure: the reports as received (decoded, each
//! with when this node took it, milliseconds on its own clock), the members
//! and the time go in; no clock is read. Reports from nodes that left the
//! cluster are ignored, and so are reports older than their own window: a
//! node that stopped reporting (dead, or cut off) stops counting once its
//! samples would have aged out anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hdrhistogram::Histogram;
use proto::health::empty_histogram;
use serde::Serialize;

use super::peers::{Received, Window};
use super::window::{Quantiles, error_rate, quantiles};

/// One upstream as the cluster sees it: per region, and every region merged.
pub use proto::api::admin::BoardView as UpstreamBoard;
/// What the board says of one member's report.
pub use proto::api::admin::ReportView as ReportInfo;
/// What a set of reports says about one upstream, as the admin API writes it.
pub use proto::api::admin::ReportedView as View;

/// Every upstream's shared health.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HealthBoard {
    /// Per upstream id.
    pub upstreams: HashMap<Arc<str>, UpstreamBoard>,
    /// Reports merged, by member id, with their age in milliseconds.
    pub reports: BTreeMap<u64, ReportInfo>,
}

#[derive(Default)]
struct Acc {
    nodes: usize,
    successes: u64,
    client_errors: u64,
    errors: u64,
    timeouts: u64,
    ttfb: Option<Histogram<u64>>,
    total: Option<Histogram<u64>>,
    age_ms: u64,
}

impl Acc {
    fn add(&mut self, w: &Window, age_ms: u64) {
        self.nodes += 1;
        // Saturating: a report's counters come from another node.
        self.successes = self.successes.saturating_add(w.successes);
        self.client_errors = self.client_errors.saturating_add(w.client_errors);
        self.errors = self.errors.saturating_add(w.errors);
        self.timeouts = self.timeouts.saturating_add(w.timeouts);
        self.age_ms = self.age_ms.max(age_ms);
        w.ttfb.add_to(&mut self.ttfb);
        w.total.add_to(&mut self.total);
    }

    fn merge(&mut self, other: &Acc) {
        self.nodes += other.nodes;
        self.successes = self.successes.saturating_add(other.successes);
        self.client_errors = self.client_errors.saturating_add(other.client_errors);
        self.errors = self.errors.saturating_add(other.errors);
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
        self.age_ms = self.age_ms.max(other.age_ms);
        add_histograms(&mut self.ttfb, &other.ttfb);
        add_histograms(&mut self.total, &other.total);
    }

    fn view(&self) -> View {
        let attempts = self
            .successes
            .saturating_add(self.client_errors)
            .saturating_add(self.errors)
            .saturating_add(self.timeouts);
        let q = |h: &Option<Histogram<u64>>| h.as_ref().map(quantiles).unwrap_or_default();
        View {
            nodes: self.nodes,
            attempts,
            successes: self.successes,
            errors: self.errors,
            timeouts: self.timeouts,
            error_rate: error_rate(self.errors.saturating_add(self.timeouts), attempts),
            ttfb_ms: q(&self.ttfb),
            total_ms: q(&self.total),
            report_age_ms: self.age_ms,
        }
    }
}

impl HealthBoard {
    /// Merges the reports of `members` as of `now_ms` (on the clock their
    /// arrival times were taken on).
    pub fn build(
        reports: &BTreeMap<u64, Arc<Received>>,
        members: &BTreeSet<u64>,
        now_ms: u64,
    ) -> Self {
        let mut board = HealthBoard::default();
        let mut acc: BTreeMap<&Arc<str>, BTreeMap<&str, Acc>> = BTreeMap::new();
        for (id, report) in reports {
            if !members.contains(id) {
                continue;
            }
            let (age_ms, stale) = report.age(now_ms);
            if !stale {
                for (upstream, window) in &report.upstreams {
                    acc.entry(upstream)
                        .or_default()
                        .entry(&report.region)
                        .or_default()
                        .add(window, age_ms);
                }
            }
            board.reports.insert(
                *id,
                ReportInfo {
                    region: report.region.clone(),
                    seq: report.seq,
                    age_ms,
                    stale,
                    undecodable: report.undecodable,
                },
            );
        }
        for (upstream, regions) in acc {
            let mut merged = Acc::default();
            let mut out = UpstreamBoard::default();
            for (region, a) in regions {
                merged.merge(&a);
                out.regions.insert(region.to_owned(), a.view());
            }
            out.merged = merged.view();
            board.upstreams.insert(upstream.clone(), out);
        }
        board
    }

    /// The shared view of one upstream, if any member reported it.
    pub fn upstream(&self, id: &str) -> Option<&UpstreamBoard> {
        self.upstreams.get(id)
    }

    /// What the cluster says an upstream's time to first byte is, for a
    /// node in `region`: that region's reports when they hold at least
    /// `min_samples`, else the whole cluster's, else nothing.
    pub fn ttfb_estimate(&self, id: &str, region: &str, min_samples: u64) -> Option<Quantiles> {
        let board = self.upstream(id)?;
        let enough = |q: &Quantiles| q.count >= min_samples;
        board
            .regions
            .get(region)
            .map(|v| v.ttfb_ms)
            .filter(enough)
            .or_else(|| Some(board.merged.ttfb_ms).filter(enough))
    }
}

/// Adds `from` into `into` (made empty of the health shape on first use).
fn add_histograms(into: &mut Option<Histogram<u64>>, from: &Option<Histogram<u64>>) {
    if let Some(from) = from {
        // Both of the health shape, so adding cannot fail.
        let _ = into.get_or_insert_with(empty_histogram).add(from);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proto::health::{HealthReport, UpstreamWindow, encode_histogram};

    /// Reports as taken on this node at `at_ms`.
    fn taken(reports: BTreeMap<u64, HealthReport>, at_ms: u64) -> BTreeMap<u64, Arc<Received>> {
        reports
            .into_iter()
            .map(|(id, r)| (id, Arc::new(Received::decode(r, at_ms).unwrap())))
            .collect()
    }

    fn window(ms: &[u64], errors: u64) -> UpstreamWindow {
        let mut h = empty_histogram();
        for v in ms {
            h.record(v * 1_000).unwrap();
        }
        UpstreamWindow {
            successes: ms.len() as u64,
            errors,
            ttfb: encode_histogram(&h).unwrap(),
            total: encode_histogram(&h).unwrap(),
            ..UpstreamWindow::default()
        }
    }

    fn report(seq: u64, region: &str, upstreams: &[(&str, UpstreamWindow)]) -> HealthReport {
        HealthReport {
            seq,
            region: region.into(),
            at_unix_ms: 0,
            window_ms: 30_000,
            upstreams: upstreams
                .iter()
                .map(|(id, w)| (id.to_string(), w.clone()))
                .collect(),
            cooldowns: BTreeMap::new(),
        }
    }

    #[test]
    fn merges_per_region_and_across_the_cluster() {
        let fast: Vec<u64> = vec![10; 99];
        let slow: Vec<u64> = vec![500; 100];
        let reports = BTreeMap::from([
            (1, report(3, "us", &[("x", window(&fast, 1))])),
            (
                2,
                report(9, "eu", &[("x", window(&slow, 0)), ("y", window(&[7], 0))]),
            ),
            (3, report(1, "eu", &[("x", window(&slow, 0))])),
        ]);
        let members = BTreeSet::from([1, 2, 3]);
        let board = HealthBoard::build(&taken(reports, 1_000), &members, 1_500);
        let x = board.upstream("x").unwrap();
        assert_eq!(x.regions["us"].ttfb_ms.count, 99);
        assert_eq!(x.regions["us"].errors, 1);
        assert!((x.regions["us"].error_rate - 0.01).abs() < 1e-9);
        assert_eq!(x.regions["eu"].nodes, 2);
        assert_eq!(x.regions["eu"].ttfb_ms.count, 200);
        assert!(x.regions["eu"].ttfb_ms.p50 >= 495.0);
        assert_eq!(x.merged.nodes, 3);
        assert_eq!(x.merged.ttfb_ms.count, 299);
        assert!(x.merged.ttfb_ms.p99 >= 495.0, "{:?}", x.merged);
        assert!(x.merged.ttfb_ms.p50 >= 495.0);
        assert_eq!(x.merged.report_age_ms, 500);
        assert_eq!(board.upstream("y").unwrap().merged.nodes, 1);
        assert!(board.upstream("z").is_none());
        // Estimates: the region's own when it has enough, else the cluster's.
        assert_eq!(board.ttfb_estimate("x", "eu", 100).unwrap().count, 200);
        assert_eq!(board.ttfb_estimate("x", "us", 100).unwrap().count, 299);
        assert_eq!(board.ttfb_estimate("x", "ap", 100).unwrap().count, 299);
        assert!(board.ttfb_estimate("x", "us", 300).is_none());
        assert!(board.ttfb_estimate("z", "us", 1).is_none());
    }

    #[test]
    fn departed_members_and_stale_reports_do_not_count() {
        let reports = BTreeMap::from([
            (1, report(1, "us", &[("x", window(&[10], 0))])),
            (2, report(1, "eu", &[("x", window(&[900], 0))])),
            (4, report(1, "ap", &[("x", window(&[900], 0))])),
        ]);
        let mut held = taken(reports, 0);
        // Node 1 reports again later; node 2 goes quiet.
        held.extend(taken(
            BTreeMap::from([(1, report(2, "us", &[("x", window(&[10], 0))]))]),
            29_000,
        ));
        let board = HealthBoard::build(&held, &BTreeSet::from([1, 2]), 31_000);
        let x = board.upstream("x").unwrap();
        assert_eq!(x.merged.nodes, 1, "node 2 is stale, node 4 left");
        assert!(x.merged.ttfb_ms.p99 < 11.0);
        assert!(board.reports[&2].stale);
        assert!(!board.reports.contains_key(&4));
        assert_eq!(board.reports[&1].age_ms, 2_000);
    }

    proptest::proptest! {
        /// The merged view of an upstream is exactly the sum of its
        /// regions, whatever the reports.
        #[test]
        fn merged_is_the_sum_of_regions(
            reports in proptest::collection::vec(
                (0usize..3, proptest::collection::vec(1u64..5_000, 0..40), 0u64..5),
                1..8,
            )
        ) {
            let regions = ["us", "eu", "ap"];
            let map: BTreeMap<u64, HealthReport> = reports
                .iter()
                .enumerate()
                .map(|(i, (r, ms, errors))| {
                    (i as u64, report(1, regions[*r], &[("x", window(ms, *errors))]))
                })
                .collect();
            let members: BTreeSet<u64> = map.keys().copied().collect();
            let board = HealthBoard::build(&taken(map.clone(), 0), &members, 0);
            let x = board.upstream("x").unwrap();
            let sum = |f: fn(&View) -> u64| x.regions.values().map(f).sum::<u64>();
            proptest::prop_assert_eq!(x.merged.attempts, sum(|v| v.attempts));
            proptest::prop_assert_eq!(x.merged.errors, sum(|v| v.errors));
            proptest::prop_assert_eq!(x.merged.ttfb_ms.count, sum(|v| v.ttfb_ms.count));
            proptest::prop_assert_eq!(x.merged.nodes, map.len());
            let max_p99 = x.regions.values().map(|v| v.ttfb_ms.p99).fold(0.0, f64::max);
            proptest::prop_assert!(x.merged.ttfb_ms.p99 <= max_p99 + 1e-9);
        }
    }

    #[test]
    fn a_corrupt_histogram_is_counted_not_fatal() {
        let mut w = window(&[10, 20], 0);
        w.ttfb = b"garbage".to_vec();
        let reports = BTreeMap::from([(1, report(1, "us", &[("x", w)]))]);
        let board = HealthBoard::build(&taken(reports, 0), &BTreeSet::from([1]), 0);
        assert_eq!(board.reports[&1].undecodable, 1);
        let x = board.upstream("x").unwrap();
        assert_eq!(x.merged.ttfb_ms.count, 0);
        assert_eq!(x.merged.total_ms.count, 2);
    }
}
