//! `GET /admin/v1/health` and `GET /admin/v1/events`: this node's view of
//! every upstream (its own window and circuit, and what every member
//! reported) and its recent failovers, written as the wire types of
//! [`proto::api::admin`]. The node's own types (its windows, breakers,
//! board) stay free to change; what clients read changes only here.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use proto::api::admin::{
    BoardView, CircuitState, DisabledView, Events, FailoverEvent, HealthAnswer, KeyStatus,
    Quantiles, ReportView, ReportedView, UpstreamHealth, WindowView,
};

use super::AdminState;
use crate::health::board::{ReportInfo, UpstreamBoard, View};
use crate::health::breaker::Circuit;
use crate::health::{self, WindowSummary};
use crate::metrics;
use crate::routing::{Disabled, KeyState};

/// `GET /admin/v1/health`.
pub(super) async fn health(State(state): State<AdminState>) -> Json<HealthAnswer> {
    let snapshot = state.snapshot.load();
    let board = state.board.load();
    let upstreams = snapshot
        .upstreams
        .iter()
        .map(|u| UpstreamHealth {
            id: u.id.to_string(),
            region: u.region.to_string(),
            base_url: u.config.base_url.clone(),
            key: key_status(&u.key_state),
            disabled: u.disabled.as_ref().map(disabled),
            in_flight: u.live.in_flight.load(Ordering::Relaxed),
            circuit: circuit(u.live.circuit()),
            window: window(&u.live.summary.load()),
            shared: board.upstream(&u.id).map(shared).unwrap_or_default(),
        })
        .collect();
    Json(HealthAnswer {
        node: state.node_id,
        region: state.region.to_string(),
        upstreams,
        reports: board
            .reports
            .iter()
            .map(|(id, r)| (*id, report(r)))
            .collect(),
    })
}

/// `GET /admin/v1/events`: this node's recent failovers, newest first.
pub(super) async fn events(State(state): State<AdminState>) -> Json<Events> {
    let snapshot = state.snapshot.load();
    Json(Events {
        node: state.node_id,
        region: state.region.to_string(),
        failovers: snapshot
            .metrics
            .events
            .recent()
            .into_iter()
            .map(failover)
            .collect(),
    })
}

fn key_status(key: &KeyState) -> KeyStatus {
    match key {
        KeyState::NotNeeded => KeyStatus::NotNeeded,
        KeyState::Present => KeyStatus::Present,
        KeyState::Missing(why) => KeyStatus::Missing(why.clone()),
    }
}

fn disabled(d: &Disabled) -> DisabledView {
    DisabledView {
        field: d.field.to_owned(),
        reason: d.reason.clone(),
    }
}

fn circuit(c: Circuit) -> CircuitState {
    match c {
        Circuit::Closed => CircuitState::Closed,
        Circuit::Open => CircuitState::Open,
        Circuit::HalfOpen => CircuitState::HalfOpen,
    }
}

fn quantiles(q: &health::Quantiles) -> Quantiles {
    Quantiles {
        count: q.count,
        p50: q.p50,
        p90: q.p90,
        p95: q.p95,
        p99: q.p99,
        p999: q.p999,
    }
}

fn window(w: &WindowSummary) -> WindowView {
    WindowView {
        window_s: w.window_s,
        attempts: w.attempts,
        successes: w.successes,
        client_errors: w.client_errors,
        errors: w.errors,
        timeouts: w.timeouts,
        error_rate: w.error_rate,
        ttfb_ms: quantiles(&w.ttfb_ms),
        total_ms: quantiles(&w.total_ms),
    }
}

fn view(v: &View) -> ReportedView {
    ReportedView {
        nodes: v.nodes,
        attempts: v.attempts,
        successes: v.successes,
        errors: v.errors,
        timeouts: v.timeouts,
        error_rate: v.error_rate,
        ttfb_ms: quantiles(&v.ttfb_ms),
        total_ms: quantiles(&v.total_ms),
        report_age_ms: v.report_age_ms,
    }
}

fn shared(b: &UpstreamBoard) -> BoardView {
    BoardView {
        regions: b
            .regions
            .iter()
            .map(|(region, v)| (region.clone(), view(v)))
            .collect(),
        merged: view(&b.merged),
    }
}

fn report(r: &ReportInfo) -> ReportView {
    ReportView {
        region: r.region.clone(),
        seq: r.seq,
        age_ms: r.age_ms,
        stale: r.stale,
        undecodable: r.undecodable,
    }
}

fn failover(e: metrics::FailoverEvent) -> FailoverEvent {
    FailoverEvent {
        seq: e.seq,
        at_unix_ms: e.at_unix_ms,
        request_id: e.request_id,
        route: e.route.to_string(),
        from: e.from.to_string(),
        to: e.to.to_string(),
        reason: e.reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    /// The wire type writes what the node's own type wrote before it, byte
    /// for byte (the node's types still derive `Serialize`).
    fn same<A: serde::Serialize, B: serde::Serialize>(ours: &A, wire: &B) {
        assert_eq!(
            serde_json::to_string(ours).unwrap(),
            serde_json::to_string(wire).unwrap()
        );
    }

    fn q(base: f64) -> health::Quantiles {
        health::Quantiles {
            count: 40,
            p50: base,
            p90: base * 2.0,
            p95: base * 2.5,
            p99: base * 3.1,
            p999: base * 4.0,
        }
    }

    #[test]
    fn every_part_writes_the_same_json_as_before() {
        let w = WindowSummary {
            window_s: 30,
            attempts: 40,
            successes: 37,
            client_errors: 1,
            errors: 1,
            timeouts: 1,
            error_rate: 0.05,
            ttfb_ms: q(12.5),
            total_ms: q(80.25),
        };
        same(&w, &window(&w));
        let v = View {
            nodes: 2,
            attempts: 52,
            successes: 50,
            errors: 1,
            timeouts: 1,
            error_rate: 2.0 / 52.0,
            ttfb_ms: q(10.0),
            total_ms: q(70.0),
            report_age_ms: 800,
        };
        let b = UpstreamBoard {
            regions: BTreeMap::from([("eu".to_owned(), v.clone()), ("us".to_owned(), v.clone())]),
            merged: v,
        };
        same(&b, &shared(&b));
        same(&UpstreamBoard::default(), &BoardView::default());
        for k in [
            KeyState::NotNeeded,
            KeyState::Present,
            KeyState::Missing("OPENAI_API_KEY is not set".into()),
        ] {
            same(&k, &key_status(&k));
        }
        for c in [Circuit::Closed, Circuit::Open, Circuit::HalfOpen] {
            same(&c, &circuit(c));
        }
        let d = Disabled {
            field: "api_key_env",
            reason: "not allowed here".into(),
        };
        same(&d, &disabled(&d));
        for undecodable in [0, 2] {
            let r = ReportInfo {
                region: "ap".into(),
                seq: 9,
                age_ms: 1200,
                stale: true,
                undecodable,
            };
            same(&r, &report(&r));
        }
        let e = metrics::FailoverEvent {
            seq: 3,
            at_unix_ms: 1_764_480_000_000,
            request_id: "req-3".into(),
            route: Arc::from("fast"),
            from: Arc::from("alpha"),
            to: Arc::from("bravo"),
            reason: "HTTP 503".into(),
        };
        same(&e, &failover(e.clone()));
    }
}
