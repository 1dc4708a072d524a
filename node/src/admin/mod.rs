//! The admin listener: liveness and readiness for load balancers and GeoDNS,
//! Prometheus metrics ([`metrics`]) and the dashboard's static page
//! ([`dashboard`]), all unauthenticated because they reveal nothing secret;
//! and the `/admin/v1` API behind a bearer token: the health board (this
//! node's windows and circuits, and every member's shared reports), recent
//! failovers, the replicated configuration ([`config`]) and the cluster and
//! its members ([`cluster`]).

mod cluster;
mod config;
mod dashboard;
mod metrics;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::auth::{KeyHash, bearer_token, hash_key};
use crate::board::{HealthBoard, ReportInfo, UpstreamBoard};
use crate::breaker::Circuit;
use crate::cluster::{Cluster, WriteError};
use crate::error::error_json;
use crate::health::WindowSummary;
use crate::routing::{Disabled, KeyState, LocalTrust, RoutingSnapshot, Secrets};

/// What the admin API reads.
#[derive(Clone)]
pub struct AdminState {
    /// The live routing table.
    pub snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    /// The cluster's shared health, as last built on this node.
    pub board: Arc<ArcSwap<HealthBoard>>,
    /// The log index each routing table was built from, as it is swapped in.
    pub routing_built: tokio::sync::watch::Receiver<Option<u64>>,
    /// This node's cluster handle.
    pub cluster: Arc<Cluster>,
    /// This node's id.
    pub node_id: u64,
    /// This node's region.
    pub region: Arc<str>,
    /// Hash of the admin token; `None` means no token (loopback only).
    pub token: Option<KeyHash>,
    /// What this node's own file allows upstreams written here to read.
    pub trust: Arc<LocalTrust>,
    /// This node's secrets, to check an upstream's key before proposing it.
    pub secrets: Arc<dyn Secrets + Send + Sync>,
}

/// The largest admin request body: far above any upstream, route or key.
const MAX_ADMIN_BODY_BYTES: usize = 1 << 20;

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/admin/v1/health", get(health))
        .route("/admin/v1/events", get(events))
        .merge(config::routes())
        .merge(cluster::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::routes())
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES))
        .layer(middleware::map_response(json_too_large))
        .layer(middleware::from_fn(refuse_declared_too_large))
        .with_state(state)
}

/// A body declared larger than the limit is refused before any of it is
/// read, so a client waiting on `Expect: 100-continue` (curl, for large
/// bodies) gets its answer at once instead of sending it all.
async fn refuse_declared_too_large(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ADMIN_BODY_BYTES as u64) {
        return too_large();
    }
    next.run(req).await
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is over the admin API's limit of {MAX_ADMIN_BODY_BYTES} bytes"),
        None,
        "request_too_large",
    )
}

/// A body over the limit gets the same JSON error as every other refusal
/// (axum's own 413 is plain text).
async fn json_too_large(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    too_large()
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.token else {
        return next.run(req).await;
    };
    match bearer_token(req.headers()) {
        Some(token) if hash_key(token) == expected => next.run(req).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "A valid admin token is required: `Authorization: Bearer TOKEN`.",
            None,
            "invalid_admin_token",
        ),
    }
}

/// An admin error in the same JSON shape as the data plane's, naming the
/// offending field in `param`.
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    field: Option<&str>,
    code: &str,
) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_json(message, kind, field, Some(code)),
    )
        .into_response()
}

/// Whether this node can serve, and why not.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// `config_applied` and at least one usable route.
    pub ready: bool,
    /// The cluster's configuration is applied here: the replicated state
    /// has been seeded, and the routing table is current at an applied log
    /// index (not built from nothing, as at a new node's start).
    pub config_applied: bool,
    /// The log index the routing table is known to be current at.
    pub applied_index: Option<u64>,
    /// Routes in the table.
    pub routes: usize,
    /// Routes with at least one upstream this node can send to.
    pub usable_routes: usize,
    /// Upstreams this node does not use, with the field at fault (the
    /// reasons are in `/admin/v1/health` and the log: this answer needs no
    /// token).
    pub disabled_upstreams: Vec<DisabledUpstream>,
}

/// An upstream disabled on this node, as `/readyz` names it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct DisabledUpstream {
    /// Its id.
    pub id: String,
    /// The field to fix.
    pub field: &'static str,
}

impl Readiness {
    /// Ready when the configuration is applied and a route is usable. A
    /// node that has not applied the cluster's configuration (a new node
    /// before the first leader seeds it, or one that cannot reach its
    /// peers on first start) would serve a table that is not the
    /// cluster's, so GeoDNS must not send it clients.
    fn judge(
        seeded: bool,
        applied_index: Option<u64>,
        routes: usize,
        usable_routes: usize,
    ) -> Self {
        let config_applied = seeded && applied_index.is_some();
        Self {
            ready: config_applied && usable_routes > 0,
            config_applied,
            applied_index,
            routes,
            usable_routes,
            disabled_upstreams: Vec::new(),
        }
    }
}

/// This node's readiness, as `/readyz` and `/metrics` report it.
pub(crate) fn readiness(state: &AdminState) -> Readiness {
    let snapshot = state.snapshot.load();
    let usable_routes = snapshot.routes.values().filter(|r| r.usable()).count();
    let built = *state.routing_built.borrow();
    let mut readiness = Readiness::judge(
        state.cluster.applied().state.seeded,
        built,
        snapshot.routes.len(),
        usable_routes,
    );
    readiness.disabled_upstreams = snapshot
        .upstreams
        .iter()
        .filter_map(|u| {
            u.disabled.as_ref().map(|d| DisabledUpstream {
                id: u.id.to_string(),
                field: d.field,
            })
        })
        .collect();
    readiness
}

async fn readyz(State(state): State<AdminState>) -> Response {
    // A node whose Raft core stopped commits and applies nothing more (the
    // process exits on it; this covers the moments before it does).
    if let Some(why) = state.cluster.core_failure() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The Raft core stopped: {why}."),
            None,
            "raft_stopped",
        );
    }
    let body = readiness(&state);
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[derive(Serialize)]
struct HealthAnswer {
    node: u64,
    region: Arc<str>,
    upstreams: Vec<UpstreamHealth>,
    /// Every member's latest report, with its age as this node judges it.
    reports: std::collections::BTreeMap<u64, ReportInfo>,
}

#[derive(Serialize)]
struct UpstreamHealth {
    id: Arc<str>,
    region: Arc<str>,
    base_url: String,
    key: KeyState,
    /// Why this node does not use it, naming the field; `null` when it does.
    disabled: Option<Disabled>,
    in_flight: usize,
    /// This node's circuit breaker.
    circuit: Circuit,
    /// This node's own window.
    window: WindowSummary,
    /// What every member reported, per region and merged.
    #[serde(flatten)]
    shared: UpstreamBoard,
}

async fn health(State(state): State<AdminState>) -> Json<HealthAnswer> {
    let snapshot = state.snapshot.load();
    let board = state.board.load();
    let upstreams = snapshot
        .upstreams
        .iter()
        .map(|u| UpstreamHealth {
            id: u.id.clone(),
            region: u.region.clone(),
            base_url: u.config.base_url.clone(),
            key: u.key_state.clone(),
            disabled: u.disabled.clone(),
            in_flight: u.live.in_flight.load(Ordering::Relaxed),
            circuit: u.live.circuit(),
            window: (**u.live.summary.load()).clone(),
            shared: board.upstream(&u.id).cloned().unwrap_or_default(),
        })
        .collect();
    Json(HealthAnswer {
        node: state.node_id,
        region: state.region.clone(),
        upstreams,
        reports: board.reports.clone(),
    })
}

/// `GET /admin/v1/events`: this node's recent failovers, newest first.
async fn events(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let snapshot = state.snapshot.load();
    Json(serde_json::json!({
        "node": state.node_id,
        "region": &*state.region,
        "failovers": snapshot.metrics.events.recent(),
    }))
}

/// A failed write or consistent read: 503 with `Retry-After` while there
/// is no leader to reach, 500 when Raft itself failed.
pub(crate) fn write_error(e: WriteError) -> Response {
    let message = e.to_string();
    let mut response = match e {
        WriteError::NoLeader | WriteError::Unreachable(_) | WriteError::NoQuorum(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &message, None, "no_leader")
        }
        WriteError::NotLeader { .. } => error(
            StatusCode::MISDIRECTED_REQUEST,
            &message,
            None,
            "not_leader",
        ),
        WriteError::NotCaughtUp(..) => error(
            StatusCode::GATEWAY_TIMEOUT,
            &message,
            Some("id"),
            "not_caught_up",
        ),
        WriteError::Raft(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &message,
            None,
            "raft_error",
        ),
    };
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::Readiness;

    #[test]
    fn ready_needs_the_applied_configuration_and_a_usable_route() {
        // A new node before the seed is applied: nothing to serve.
        assert!(!Readiness::judge(false, None, 0, 0).ready);
        // Seeded, but the table is still the one built from nothing.
        let r = Readiness::judge(true, None, 2, 2);
        assert!(!r.ready && !r.config_applied);
        // A write applied before the seed: routes, but not the cluster's yet.
        let r = Readiness::judge(false, Some(3), 1, 1);
        assert!(!r.ready && !r.config_applied);
        // Applied, but no route can be served from this node.
        let r = Readiness::judge(true, Some(4), 1, 0);
        assert!(!r.ready && r.config_applied);
        assert!(Readiness::judge(true, Some(4), 2, 1).ready);
    }
}
