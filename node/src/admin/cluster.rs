//! The cluster through the admin API: who is leader, in which term, how far
//! each member has replicated; and membership changes (add a node as a
//! learner and promote it, or remove one), committed through Raft.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::ServerState;
use proto::api::admin::{
    AddMember, ClusterView, MemberAdded, MemberRemoved, MemberRole, MemberView, Role,
};
use proto::config::PeerAddr;
use proto::state::Member;

use super::{AdminError, AdminState};

/// The cluster routes.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/members", post(add_member))
        .route("/admin/v1/members/{id}", delete(remove_member))
}

fn role(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// `GET /admin/v1/cluster`.
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
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
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
                rtt_ms: (*id != state.node_id)
                    .then(|| state.cluster.round_trip(&node.raft_addr))
                    .flatten()
                    .map(|d| d.as_millis() as u64),
            }
        })
        .collect();
    Json(ClusterView {
        id: state.node_id,
        region: state.region.to_string(),
        // openraft 0.9 keeps a leader that lost its quorum in the leader
        // state until it hears a higher term; say what it is.
        role: match metrics.state {
            ServerState::Leader if state.cluster.standing.cut_off().is_some() => Role::Isolated,
            other => role(other),
        },
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log_index: last,
        commit_index: committed(&state).await,
        applied_index: metrics.last_applied.map(|l| l.index),
        snapshot_index: metrics.snapshot.map(|l| l.index),
        purged_index: metrics.purged.map(|l| l.index),
        quorum_ack_ms: metrics.millis_since_quorum_ack,
        members,
    })
}

/// The commit index as this node's Raft knows it: what a quorum holds,
/// which may run ahead of what it has applied (`applied_index`). Falls back
/// to the applied index when the Raft core has stopped.
async fn committed(state: &AdminState) -> Option<u64> {
    match state.cluster.raft.with_raft_state(|st| st.committed).await {
        Ok(committed) => committed.map(|l| l.index),
        Err(_) => state.cluster.applied().last_applied.map(|l| l.index),
    }
}

/// `POST /admin/v1/members`.
async fn add_member(
    State(state): State<AdminState>,
    body: Bytes,
) -> Result<Json<MemberAdded>, AdminError> {
    let request: AddMember = serde_json::from_slice(&body).map_err(|e| {
        let message = e.to_string();
        let field = message.split('`').nth(1).map(str::to_owned);
        AdminError::Invalid { field, message }
    })?;
    if request.id == 0 {
        return Err(AdminError::invalid("id", "must be at least 1"));
    }
    // An IP address or a DNS name (a StatefulSet pod's), resolved at each
    // dial; the peer is still known by the node id of its certificate.
    let raft_addr = request
        .raft_addr
        .parse::<PeerAddr>()
        .map_err(|e| AdminError::invalid("raft_addr", format!("must be host:port: {e}")))?;
    let member = Member {
        raft_addr: raft_addr.to_string(),
        ..Member::default()
    };
    state
        .cluster
        .add_member(request.id, member, request.voter)
        .await?;
    Ok(Json(MemberAdded {
        added: request.id,
        voter: request.voter,
    }))
}

/// `DELETE /admin/v1/members/{id}`.
async fn remove_member(
    State(state): State<AdminState>,
    Path(id): Path<u64>,
) -> Result<Json<MemberRemoved>, AdminError> {
    let (known, last_voter) = {
        let metrics = state.cluster.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        (membership.get_node(&id).is_some(), voters == [id])
    };
    if last_voter {
        return Err(AdminError::LastVoter(id));
    }
    if !known {
        return Err(AdminError::NotAMember(id));
    }
    state.cluster.remove_member(id).await?;
    Ok(Json(MemberRemoved { removed: id }))
}
