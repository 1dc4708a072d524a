//! The cluster through the admin API: who is leader, in which term, how far
//! each member has replicated; and membership changes (add a node as a
//! learner and promote it, or remove one), committed through Raft.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::ServerState;
use proto::state::Member;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminState, error, write_error};

/// The cluster routes.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/members", post(add_member))
        .route("/admin/v1/members/{id}", delete(remove_member))
}

/// `GET /admin/v1/cluster`.
#[derive(Serialize)]
struct ClusterView {
    id: u64,
    region: String,
    role: &'static str,
    term: u64,
    leader: Option<u64>,
    last_log_index: Option<u64>,
    commit_index: Option<u64>,
    applied_index: Option<u64>,
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    quorum_ack_ms: Option<u64>,
    members: Vec<MemberView>,
}

#[derive(Serialize)]
struct MemberView {
    id: u64,
    role: &'static str,
    raft_addr: String,
    admin_addr: Option<String>,
    region: Option<String>,
    /// On the leader: the last log index this member is known to hold.
    matched_index: Option<u64>,
    /// On the leader: how many entries this member is behind.
    lag: Option<u64>,
    /// Milliseconds since this member last answered this node (the leader
    /// hears from every member each heartbeat); `null` for this node itself
    /// and for members it has not talked to.
    last_contact_ms: Option<u64>,
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

async fn cluster(State(state): State<AdminState>) -> Json<ClusterView> {
    let metrics = state.cluster.raft.metrics().borrow().clone();
    let applied = state.cluster.applied();
    let membership = metrics.membership_config.membership();
    let last = metrics.last_log_index;
    let replication = metrics.replication.as_ref();
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let info = applied.state.nodes.get(id);
            let matched = replication
                .and_then(|r| r.get(id))
                .map(|m| m.map(|l| l.index).unwrap_or(0));
            MemberView {
                id: *id,
                role: if membership.voter_ids().any(|v| v == *id) {
                    "voter"
                } else {
                    "learner"
                },
                raft_addr: node.raft_addr.clone(),
                admin_addr: info.map(|i| i.admin_addr.clone()),
                region: info.map(|i| i.region.clone()),
                matched_index: matched,
                lag: matched.map(|m| last.unwrap_or(0).saturating_sub(m)),
                last_contact_ms: (*id != state.node_id)
                    .then(|| state.cluster.last_contact(&node.raft_addr))
                    .flatten()
                    .map(|d| d.as_millis() as u64),
            }
        })
        .collect();
    Json(ClusterView {
        id: state.node_id,
        region: state.region.to_string(),
        role: role(metrics.state),
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log_index: last,
        commit_index: applied_commit(&state),
        applied_index: metrics.last_applied.map(|l| l.index),
        snapshot_index: metrics.snapshot.map(|l| l.index),
        purged_index: metrics.purged.map(|l| l.index),
        quorum_ack_ms: metrics.millis_since_quorum_ack,
        members,
    })
}

/// The commit index as this node knows it: everything it applied is committed.
fn applied_commit(state: &AdminState) -> Option<u64> {
    state.cluster.applied().last_applied.map(|l| l.index)
}

/// `POST /admin/v1/members`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    id: u64,
    raft_addr: String,
    /// Promote to voter once it has caught up (default); false keeps a learner.
    #[serde(default = "yes")]
    voter: bool,
}

fn yes() -> bool {
    true
}

async fn add_member(State(state): State<AdminState>, body: Bytes) -> Response {
    let request: AddMember = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let message = e.to_string();
            let field = message.split('`').nth(1).map(str::to_owned);
            return error(
                StatusCode::BAD_REQUEST,
                &message,
                field.as_deref(),
                "invalid_config",
            );
        }
    };
    if request.id == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "must be at least 1",
            Some("id"),
            "invalid_config",
        );
    }
    if request.raft_addr.parse::<SocketAddr>().is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "must be host:port",
            Some("raft_addr"),
            "invalid_config",
        );
    }
    let member = Member {
        raft_addr: request.raft_addr,
        ..Member::default()
    };
    match state
        .cluster
        .add_member(request.id, member, request.voter)
        .await
    {
        Ok(()) => Json(json!({ "added": request.id, "voter": request.voter })).into_response(),
        Err(e) => write_error(e),
    }
}

async fn remove_member(State(state): State<AdminState>, Path(id): Path<u64>) -> Response {
    let (known, last_voter) = {
        let metrics = state.cluster.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        (membership.get_node(&id).is_some(), voters == [id])
    };
    if last_voter {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "node {id} is the cluster's last voter: without a voter nothing can be committed; \
                 add another voter first"
            ),
            Some("id"),
            "last_voter",
        );
    }
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            &format!("node {id} is not a member"),
            Some("id"),
            "not_found",
        );
    }
    match state.cluster.remove_member(id).await {
        Ok(()) => Json(json!({ "removed": id })).into_response(),
        Err(e) => write_error(e),
    }
}
