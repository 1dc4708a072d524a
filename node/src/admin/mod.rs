//! The admin listener: liveness and readiness for load balancers and GeoDNS,
//! Prometheus metrics ([`metrics`]) and the dashboard's static page
//! ([`dashboard`]), all unauthenticated because they reveal nothing secret;
//! and the `/admin/v1` API behind a bearer token: the health board (this
//! node's windows and circuits, and every member's shared reports), their
//! last 15 minutes ([`history`]), recent failovers, the replicated configuration ([`config`]), the cluster and
//! its members ([`cluster`]), the model catalogue ([`catalogue`]), client
//! keys with their limits and balances ([`keys`]), top-ups ([`credits`])
//! and the usage ledger ([`usage`]).
//!
//! Every answer is a wire type of [`proto::api::admin`], which the CLI and
//! the tests read too; every refusal is an [`AdminError`], which knows its
//! status and code and is written as the OpenAI error envelope in one place.

mod catalogue;
mod cluster;
mod config;
mod credits;
mod dashboard;
mod error;
mod health;
mod history;
mod keys;
mod metrics;
mod usage;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proto::api::admin::{DisabledUpstream, Readiness};

pub use self::error::AdminError;
use crate::auth::{KeyHash, bearer_token, hash_key};
use crate::catalogue::Ledger;
use crate::cluster::Cluster;
use crate::health::board::HealthBoard;
use crate::routing::{LocalTrust, RoutingSnapshot, Secrets};

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
    /// What this node saw of the model catalogue (applied lists, its own fetches).
    pub catalogue: Arc<Ledger>,
}

/// The largest admin request body: far above any upstream, route or key.
const MAX_ADMIN_BODY_BYTES: usize = 1 << 20;

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/admin/v1/health", get(health::health))
        .route("/admin/v1/events", get(health::events))
        .route("/admin/v1/catalogue", get(catalogue::catalogue))
        .merge(history::routes(state.snapshot.clone(), state.board.clone()))
        .merge(config::routes())
        .merge(keys::routes())
        .merge(credits::routes())
        .merge(usage::routes())
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
    AdminError::TooLarge {
        limit: MAX_ADMIN_BODY_BYTES,
    }
    .into_response()
}

/// A body over the limit gets the same JSON error as every other refusal
/// (axum's own 413 is plain text).
async fn json_too_large(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    too_large()
}

/// The admin token, when the node has one; without one (a loopback
/// listener), a request a web page could have sent is refused
/// ([`crate::loopback`]).
async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.token else {
        return match crate::loopback::check(req.headers()) {
            Ok(()) => next.run(req).await,
            Err(foreign) => AdminError::NotLocal(foreign.header()).into_response(),
        };
    };
    match bearer_token(req.headers()) {
        Some(token) if hash_key(token) == expected => next.run(req).await,
        _ => AdminError::Unauthorized.into_response(),
    }
}

/// Ready when the configuration is applied and something can be served: a
/// usable route, or a usable upstream (every upstream answers addressed
/// names, `{upstream}/{model}`, with no route at all). A node
/// that has not applied the cluster's configuration (a new node before the
/// first leader seeds it, or one that cannot reach its peers on first
/// start) would serve a table that is not the cluster's, so GeoDNS must
/// not send it clients.
fn judge(
    seeded: bool,
    applied_index: Option<u64>,
    routes: usize,
    usable_routes: usize,
    usable_upstreams: usize,
) -> Readiness {
    let config_applied = seeded && applied_index.is_some();
    Readiness {
        ready: config_applied && (usable_routes > 0 || usable_upstreams > 0),
        config_applied,
        applied_index,
        routes,
        usable_routes,
        disabled_upstreams: Vec::new(),
        removed: false,
        cut_off_ms: None,
    }
}

/// This node's readiness, as `/readyz` and `/metrics` report it.
pub(crate) fn readiness(state: &AdminState) -> Readiness {
    let snapshot = state.snapshot.load();
    let usable_routes = snapshot.routes.values().filter(|r| r.usable()).count();
    let built = *state.routing_built.borrow();
    let usable_upstreams = snapshot.upstreams.iter().filter(|u| u.usable()).count();
    let mut readiness = judge(
        state.cluster.applied().state.seeded,
        built,
        snapshot.routes.len(),
        usable_routes,
        usable_upstreams,
    );
    let standing = &state.cluster.standing;
    if standing.removed() {
        readiness.removed = true;
        readiness.ready = false;
    }
    readiness.cut_off_ms = standing
        .cut_off()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    readiness.disabled_upstreams = snapshot
        .upstreams
        .iter()
        .filter_map(|u| {
            u.disabled.as_ref().map(|d| DisabledUpstream {
                id: u.id.to_string(),
                field: d.field.to_owned(),
            })
        })
        .collect();
    readiness
}

/// Whether `/readyz` was asked `strict=true` (or `strict=1`): then it is
/// also 503 while the node is cut off from its cluster, for GeoDNS to
/// prefer regions that hear theirs. Plain `/readyz` (Kubernetes' readiness
/// probe) stays 200 then: the node still serves. Anything else in the query
/// is ignored, never refused: a health check must not fail on its URL.
fn strict(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "strict=true" | "strict=1"))
    })
}

async fn readyz(
    State(state): State<AdminState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, AdminError> {
    // A node whose Raft core stopped commits and applies nothing more (the
    // process exits on it; this covers the moments before it does).
    if let Some(why) = state.cluster.core_failure() {
        return Err(AdminError::RaftStopped(why));
    }
    let body = readiness(&state);
    let status = if body.ready && !(strict(query.as_deref()) && body.cut_off_ms.is_some()) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::{judge, strict};

    #[test]
    fn only_strict_true_or_1_is_strict() {
        assert!(strict(Some("strict=true")));
        assert!(strict(Some("x=1&strict=1")));
        for q in [
            "",
            "strict",
            "strict=",
            "strict=banana",
            "strict=TRUE",
            "%73trict=true",
            "nostrict=true",
        ] {
            assert!(!strict(Some(q)), "{q}");
        }
        assert!(!strict(None));
    }

    #[test]
    fn ready_needs_the_applied_configuration_and_a_usable_route() {
        // A new node before the seed is applied: nothing to serve.
        assert!(!judge(false, None, 0, 0, 0).ready);
        // Seeded, but the table is still the one built from nothing.
        let r = judge(true, None, 2, 2, 2);
        assert!(!r.ready && !r.config_applied);
        // A write applied before the seed: routes, but not the cluster's yet.
        let r = judge(false, Some(3), 1, 1, 1);
        assert!(!r.ready && !r.config_applied);
        // Applied, but nothing can be served from this node.
        let r = judge(true, Some(4), 1, 0, 0);
        assert!(!r.ready && r.config_applied);
        assert!(judge(true, Some(4), 2, 1, 1).ready);
        // No route, but an upstream that answers addressed names.
        assert!(judge(true, Some(4), 0, 0, 1).ready);
    }
}
