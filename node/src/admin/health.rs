//! `GET /admin/v1/health` and `GET /admin/v1/events`: this node's view of
//! every upstream (its own window and circuit, and what every member
//! reported) and its recent failovers, written as the wire types of
//! [`proto::api::admin`]. The windows and the board are those wire types
//! themselves; the node's own key, circuit, disabled and event types are
//! turned into them here, so what clients read changes only in proto.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use proto::api::admin::{
    CircuitState, DisabledView, Events, FailoverEvent, HealthAnswer, KeyStatus, UpstreamHealth,
};

use super::AdminState;
use crate::health::breaker::Circuit;
use crate::health::cooldown;
use crate::metrics;
use crate::routing::{Disabled, KeyState};

/// `GET /admin/v1/health`.
pub(super) async fn health(State(state): State<AdminState>) -> Json<HealthAnswer> {
    let snapshot = state.snapshot.load();
    let board = state.board.load();
    let now_ms = cooldown::now_ms();
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
            cooldown_ms: u
                .live
                .cooldown
                .left(now_ms)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            window: u.live.summary.load().as_ref().clone(),
            shared: board.upstream(&u.id).cloned().unwrap_or_default(),
        })
        .collect();
    Json(HealthAnswer {
        node: state.node_id,
        region: state.region.to_string(),
        upstreams,
        reports: board
            .reports
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect(),
        classes: snapshot.metrics.classes.load().report(now_ms),
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

    #[test]
    fn every_part_writes_the_same_json_as_before() {
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
