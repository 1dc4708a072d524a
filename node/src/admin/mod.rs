//! The admin listener: liveness and readiness for load balancers and GeoDNS
//! (unauthenticated, they reveal nothing), and the `/admin/v1` API behind a
//! bearer token: the health board (this node's windows and circuits, and
//! every member's shared reports), the replicated configuration
//! ([`config`]) and the cluster and its members ([`cluster`]).

mod cluster;
mod config;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::auth::{KeyHash, hash_key};
use crate::board::{HealthBoard, ReportInfo, UpstreamBoard};
use crate::breaker::Circuit;
use crate::cluster::{Cluster, WriteError};
use crate::error::error_json;
use crate::health::WindowSummary;
use crate::routing::{KeyState, RoutingSnapshot};

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
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/admin/v1/health", get(health))
        .merge(config::routes())
        .merge(cluster::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .with_state(state)
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.token else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
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

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    routes: usize,
    usable_routes: usize,
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let snapshot = state.snapshot.load();
    let usable_routes = snapshot.routes.values().filter(|r| r.usable()).count();
    let body = Readiness {
        ready: usable_routes > 0,
        routes: snapshot.routes.len(),
        usable_routes,
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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
