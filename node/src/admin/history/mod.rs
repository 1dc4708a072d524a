//! `GET /admin/v1/history`: the dashboard's charts, the last 15 minutes of
//! every upstream's request rate, error share and p99 time to first byte,
//! as this node saw them (its own window) and as the health board merges
//! the members' reports (per region and for the whole cluster); and of
//! every route's, as this node answered them (`routes`, from the counters
//! `/metrics` keeps).
//!
//! Kept in memory on each node, nowhere else: a ring of at most
//! [`POINTS`] samples per series, one every [`INTERVAL_MS`], so a restart
//! starts the charts afresh and the answer stays small whatever the
//! traffic. [`History`] is pure (the time of each sample is passed in); the
//! task that feeds it reads the clock and the live board.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use proto::api::admin::{BoardView, WindowView};
use serde::Serialize;

use crate::health::board::HealthBoard;
use crate::routing::RoutingSnapshot;

mod routes;

pub use routes::{RouteHistory, RouteSeries, RouteTotals};

/// One sample every ten seconds…
pub const INTERVAL_MS: u64 = 10_000;
/// …ninety of them: fifteen minutes.
pub const POINTS: usize = 90;
/// Series kept at most (upstreams × scopes), so a table churned through the
/// admin API cannot grow the answer without bound.
pub const MAX_SERIES: usize = 256;

/// Whose figures a series holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "scope", content = "region")]
pub enum Scope {
    /// Every member's reports merged.
    Cluster,
    /// The reports of one region's members.
    Region(String),
    /// This node's own window.
    Node,
}

/// One upstream's figures at one moment, for one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The upstream's id.
    pub upstream: String,
    /// Whose figures.
    pub scope: Scope,
    /// The point itself.
    pub point: Point,
}

/// One point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// When it was sampled.
    pub at_unix_ms: u64,
    /// Attempts per second over the window.
    pub rate: f64,
    /// (errors + timeouts) / attempts, 0 when there were none.
    pub error_share: f64,
    /// p99 time to first byte in milliseconds; none without samples.
    pub p99_ms: Option<f64>,
}

/// One series as the endpoint writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The upstream's id.
    pub upstream: String,
    /// Whose figures (`cluster`, `region` with its name, or `node`).
    #[serde(flatten)]
    pub scope: Scope,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// The answer of `GET /admin/v1/history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryAnswer {
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// Samples kept per series.
    pub points: usize,
    /// Every series, by upstream then scope.
    pub series: Vec<Series>,
    /// Every route's series (this node's answers), by name.
    pub routes: Vec<RouteSeries>,
}

/// The rings. Pure: each sample's time is given.
#[derive(Debug, Default)]
pub struct History {
    last_ms: Option<u64>,
    series: BTreeMap<(String, Scope), VecDeque<Point>>,
    routes: RouteHistory,
}

impl History {
    /// Records `readings` taken at `now_ms` if a sample is due (none taken
    /// in the last [`INTERVAL_MS`], less a little slack for a late tick);
    /// says whether it did. Points older than the span are dropped, and
    /// with them the series of upstreams that are gone.
    pub fn sample(&mut self, now_ms: u64, readings: Vec<Reading>) -> bool {
        if self
            .last_ms
            .is_some_and(|last| now_ms < last.saturating_add(INTERVAL_MS * 9 / 10))
        {
            return false;
        }
        self.last_ms = Some(now_ms);
        for r in readings {
            let key = (r.upstream, r.scope);
            if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
                continue;
            }
            let ring = self.series.entry(key).or_default();
            if ring.len() == POINTS {
                ring.pop_front();
            }
            ring.push_back(r.point);
        }
        let span = INTERVAL_MS * POINTS as u64;
        let oldest = now_ms.saturating_sub(span);
        self.series.retain(|_, ring| {
            while ring.front().is_some_and(|p| p.at_unix_ms <= oldest) {
                ring.pop_front();
            }
            !ring.is_empty()
        });
        true
    }

    /// What the endpoint writes.
    pub fn answer(&self) -> HistoryAnswer {
        HistoryAnswer {
            interval_ms: INTERVAL_MS,
            points: POINTS,
            series: self
                .series
                .iter()
                .map(|((upstream, scope), ring)| Series {
                    upstream: upstream.clone(),
                    scope: scope.clone(),
                    points: ring.iter().copied().collect(),
                })
                .collect(),
            routes: self.routes.answer(),
        }
    }

    /// Records the routes' totals read at `now_ms`, with the sample
    /// [`History::sample`] just took (call it only when that said it did).
    pub fn sample_routes(&mut self, now_ms: u64, totals: Vec<(String, RouteTotals)>) {
        self.routes.sample(now_ms, totals);
    }
}

/// The health window's span when no window has said its own yet (a window
/// is first published with an upstream's first attempt): the default.
pub const DEFAULT_WINDOW_S: u64 = 30;

/// The span of the health windows, in seconds: what any of this node's
/// windows says (one setting for all, the members' reports included).
pub fn window_span_s<'a>(windows: impl IntoIterator<Item = &'a WindowView>) -> u64 {
    windows
        .into_iter()
        .map(|w| w.window_s)
        .max()
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_WINDOW_S)
}

/// One upstream's readings at `at_ms`: this node's window, and the
/// board's merged and per-region views when it has them; rates are
/// attempts over `span_s`.
pub fn readings(
    upstream: &str,
    at_ms: u64,
    span_s: u64,
    window: &WindowView,
    board: Option<&BoardView>,
) -> Vec<Reading> {
    let span_s = span_s.max(1) as f64;
    let point = |attempts: u64, error_rate: f64, count: u64, p99: f64| Point {
        at_unix_ms: at_ms,
        rate: attempts as f64 / span_s,
        error_share: error_rate,
        p99_ms: (count > 0).then_some(p99),
    };
    let reading = |scope, point| Reading {
        upstream: upstream.to_owned(),
        scope,
        point,
    };
    let mut out = vec![reading(
        Scope::Node,
        point(
            window.attempts,
            window.error_rate,
            window.ttfb_ms.count,
            window.ttfb_ms.p99,
        ),
    )];
    if let Some(board) = board {
        let m = &board.merged;
        if m.nodes > 0 {
            out.push(reading(
                Scope::Cluster,
                point(m.attempts, m.error_rate, m.ttfb_ms.count, m.ttfb_ms.p99),
            ));
        }
        for (region, v) in &board.regions {
            out.push(reading(
                Scope::Region(region.clone()),
                point(v.attempts, v.error_rate, v.ttfb_ms.count, v.ttfb_ms.p99),
            ));
        }
    }
    out
}

/// The endpoint, with its own state (the rings), merged into the admin API
/// behind its token; and the task that samples every [`INTERVAL_MS`],
/// which ends when the router (and so the rings) is dropped.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    board: Arc<ArcSwap<HealthBoard>>,
) -> Router<S> {
    let history = Arc::new(Mutex::new(History::default()));
    // Without a runtime (a router built in a plain unit test) nothing is
    // sampled and the answer stays empty.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sampler(Arc::downgrade(&history), snapshot, board));
    }
    Router::new()
        .route("/admin/v1/history", get(answer))
        .with_state(history)
}

async fn answer(State(history): State<Arc<Mutex<History>>>) -> Json<HistoryAnswer> {
    let answer = match history.lock() {
        Ok(h) => h.answer(),
        Err(poisoned) => poisoned.into_inner().answer(),
    };
    Json(answer)
}

async fn sampler(
    history: Weak<Mutex<History>>,
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    board: Arc<ArcSwap<HealthBoard>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(history) = history.upgrade() else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let snapshot = snapshot.load();
        let board = board.load();
        let windows: Vec<_> = snapshot
            .upstreams
            .iter()
            .map(|u| (u, u.live.summary.load_full()))
            .collect();
        let span_s = window_span_s(windows.iter().map(|(_, w)| w.as_ref()));
        let taken: Vec<Reading> = windows
            .iter()
            .flat_map(|(u, w)| readings(&u.id, now_ms, span_s, w, board.upstream(&u.id)))
            .collect();
        let routes: Vec<(String, RouteTotals)> = snapshot
            .routes
            .values()
            .map(|r| (r.name.to_string(), RouteTotals::read(&r.metrics)))
            .collect();
        let mut h = match history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        if h.sample(now_ms, taken) {
            h.sample_routes(now_ms, routes);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proto::api::admin::{Quantiles, ReportedView};

    use super::*;

    fn window(attempts: u64, error_rate: f64, p99: f64) -> WindowView {
        WindowView {
            window_s: 30,
            attempts,
            error_rate,
            ttfb_ms: Quantiles {
                count: attempts,
                p99,
                ..Quantiles::default()
            },
            ..WindowView::default()
        }
    }

    #[test]
    fn a_sample_every_interval_and_ninety_kept() {
        let mut h = History::default();
        let t0 = 1_764_480_000_000;
        for i in 0..100u64 {
            let at = t0 + i * INTERVAL_MS;
            assert!(h.sample(at, readings("u", at, 30, &window(30 * i, 0.0, 80.0), None)));
            // A second tick in the same interval is not a sample.
            assert!(!h.sample(
                at + 1_000,
                readings("u", at, 30, &window(1, 0.0, 1.0), None)
            ));
        }
        let a = h.answer();
        assert_eq!(a.series.len(), 1);
        let points = &a.series[0].points;
        assert_eq!(points.len(), POINTS);
        assert_eq!(points[0].at_unix_ms, t0 + 10 * INTERVAL_MS);
        // 30 × 99 attempts over a 30 s window.
        assert_eq!(points[POINTS - 1].rate, 99.0);
        assert_eq!(points[POINTS - 1].p99_ms, Some(80.0));
    }

    #[test]
    fn a_series_not_seen_for_fifteen_minutes_is_dropped() {
        let mut h = History::default();
        let t0 = 1_000_000;
        h.sample(t0, readings("gone", t0, 30, &window(3, 0.5, 9.0), None));
        for i in 1..=POINTS as u64 {
            let at = t0 + i * INTERVAL_MS;
            h.sample(at, readings("kept", at, 30, &window(0, 0.0, 0.0), None));
        }
        let a = h.answer();
        assert_eq!(a.series.len(), 1, "{a:?}");
        assert_eq!(a.series[0].upstream, "kept");
        // No samples: no p99, and nothing drawn for it.
        assert_eq!(a.series[0].points[0].p99_ms, None);
    }

    #[test]
    fn the_board_gives_the_cluster_and_each_region() {
        let merged = ReportedView {
            nodes: 2,
            attempts: 60,
            error_rate: 0.25,
            ttfb_ms: Quantiles {
                count: 60,
                p99: 300.0,
                ..Quantiles::default()
            },
            ..ReportedView::default()
        };
        let board = BoardView {
            regions: [("r1".to_owned(), merged.clone())].into(),
            merged,
        };
        // This node's window has seen nothing yet: the default span.
        let span = window_span_s([&WindowView::default()]);
        assert_eq!(span, DEFAULT_WINDOW_S);
        let r = readings("u", 5, span, &WindowView::default(), Some(&board));
        let scopes: Vec<_> = r.iter().map(|r| r.scope.clone()).collect();
        assert_eq!(
            scopes,
            [Scope::Node, Scope::Cluster, Scope::Region("r1".into())]
        );
        assert_eq!(r[1].point.rate, 2.0);
        assert_eq!(r[1].point.error_share, 0.25);
        let json = serde_json::to_value(Series {
            upstream: "u".into(),
            scope: Scope::Region("r1".into()),
            points: vec![],
        })
        .unwrap();
        assert_eq!(json["scope"], "region");
        assert_eq!(json["region"], "r1");
    }

    #[test]
    fn series_are_bounded() {
        let mut h = History::default();
        let many: Vec<Reading> = (0..MAX_SERIES + 10)
            .flat_map(|i| readings(&format!("u{i}"), 1, 30, &window(1, 0.0, 1.0), None))
            .collect();
        h.sample(1, many);
        assert_eq!(h.answer().series.len(), MAX_SERIES);
    }
}
