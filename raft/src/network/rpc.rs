//! What travels on a Raft stream: one [`RaftRequest`] out, one
//! [`RaftResponse`] back, and what a node does with a request.

use std::future::Future;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use proto::state::{Command, CommandResponse, Member};
use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Raft, TypeConfig};

/// One RPC from a peer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Replication and heartbeats from the leader.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// A candidate asking for a vote.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot from the leader.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write a follower received, for the leader to propose.
    Forward(Command),
    /// A follower's linearizable read: the leader confirms its leadership
    /// with a quorum and answers the log index the reader must have applied.
    ReadIndex,
}

/// The answer to a [`RaftRequest`], carrying the remote Raft's own result.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// Answers [`RaftRequest::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answers [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answers [`RaftRequest::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Answers [`RaftRequest::Forward`].
    Forward(Result<CommandResponse, ForwardError>),
    /// Answers [`RaftRequest::ReadIndex`]: the index to have applied (none
    /// before anything was written).
    ReadIndex(Result<Option<u64>, ForwardError>),
    /// The request never reached Raft: it was malformed, too large, or of a
    /// version this node does not speak.
    Failure(String),
}

/// Why a forwarded write was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ForwardError {
    /// The node asked is not the leader; retry at the leader if one is known.
    #[error("not the leader; {}", leader_hint(leader_id, leader))]
    NotLeader {
        /// The leader's id, if the node knows one.
        leader_id: Option<NodeId>,
        /// Where the leader is, if known.
        leader: Option<Member>,
    },
    /// The leader's Raft failed the request (it is shutting down, or has no
    /// quorum, say).
    #[error("raft failed the request: {0}")]
    Raft(String),
    /// The node could not be asked: unreachable, refused, or too slow.
    #[error("cannot reach {addr}: {message}")]
    Network {
        /// The Raft address dialled.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

fn leader_hint(id: &Option<NodeId>, leader: &Option<Member>) -> String {
    match (id, leader) {
        (Some(id), Some(m)) => format!("the leader is node {id} at {}", m.raft_addr),
        (Some(id), None) => format!("the leader is node {id}"),
        _ => "no leader is known".to_string(),
    }
}

/// What serves requests arriving on the transport. [`Raft`] is the real
/// one; tests substitute their own to see what arrives.
pub trait RpcHandler: Clone + Send + Sync + 'static {
    /// Handles one request and produces its response.
    fn handle(&self, request: RaftRequest) -> impl Future<Output = RaftResponse> + Send;
}

impl RpcHandler for Raft {
    async fn handle(&self, request: RaftRequest) -> RaftResponse {
        match request {
            RaftRequest::AppendEntries(rpc) => {
                RaftResponse::AppendEntries(self.append_entries(rpc).await)
            }
            RaftRequest::Vote(rpc) => RaftResponse::Vote(self.vote(rpc).await),
            RaftRequest::InstallSnapshot(rpc) => {
                RaftResponse::InstallSnapshot(self.install_snapshot(rpc).await)
            }
            RaftRequest::Forward(command) => RaftResponse::Forward(
                self.client_write(command)
                    .await
                    .map(|written| written.data)
                    .map_err(forward_error),
            ),
            RaftRequest::ReadIndex => RaftResponse::ReadIndex(
                self.get_read_log_id()
                    .await
                    .map(|(read, _applied)| read.map(|log_id| log_id.index))
                    .map_err(read_error),
            ),
        }
    }
}

fn forward_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ForwardError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        other => ForwardError::Raft(other.to_string()),
    }
}

fn read_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>) -> ForwardError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ForwardError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        other => ForwardError::Raft(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::{BTreeMap, BTreeSet};

    use openraft::error::{Fatal, ForwardToLeader, SnapshotMismatch};
    use openraft::raft::AppendEntriesResponse;
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, SnapshotSegmentId,
        StoredMembership, Vote,
    };
    use proto::codec::{HEADER_LEN, decode, encode};

    use super::*;

    /// Encodes and decodes through the wire codec; compares Debug output
    /// since openraft's messages are not all `PartialEq`.
    fn through_the_wire<T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(value: T) {
        let frame = encode(&value).unwrap();
        let back: T = decode(&frame[HEADER_LEN..]).unwrap();
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
    }

    fn member(n: u64) -> Member {
        Member {
            raft_addr: format!("127.0.0.1:{}", 7000 + n),
            admin_addr: format!("127.0.0.1:{}", 9000 + n),
            region: format!("r{n}"),
        }
    }

    #[test]
    fn openraft_messages_cross_the_wire() {
        let log_id = |term, index| LogId::new(CommittedLeaderId::new(term, 1), index);
        let nodes: BTreeMap<NodeId, Member> = (1..=3).map(|n| (n, member(n))).collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
        let entries = vec![
            Entry::<TypeConfig> {
                log_id: log_id(1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Membership(membership.clone()),
            },
            Entry {
                log_id: log_id(1, 3),
                payload: EntryPayload::Normal(Command::DeleteRoute { model: "m".into() }),
            },
        ];
        through_the_wire(RaftRequest::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 0)),
            entries,
            leader_commit: Some(log_id(1, 2)),
        }));
        through_the_wire(RaftRequest::Vote(VoteRequest::new(Vote::new(2, 3), None)));
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 3)),
            last_membership: StoredMembership::new(Some(log_id(1, 2)), membership),
            snapshot_id: "s-1".into(),
        };
        through_the_wire(RaftRequest::InstallSnapshot(InstallSnapshotRequest {
            vote: Vote::new_committed(1, 1),
            meta,
            offset: 0,
            data: vec![1, 2, 3],
            done: true,
        }));
        through_the_wire(RaftRequest::Forward(Command::DeleteKey {
            name: "k".into(),
        }));
    }

    #[test]
    fn remote_results_cross_the_wire() {
        through_the_wire(RaftResponse::AppendEntries(Ok(
            AppendEntriesResponse::Success,
        )));
        through_the_wire(RaftResponse::AppendEntries(Err(RaftError::Fatal(
            Fatal::Stopped,
        ))));
        through_the_wire(RaftResponse::Vote(Ok(VoteResponse::new(
            Vote::new(2, 3),
            None,
            true,
        ))));
        through_the_wire(RaftResponse::InstallSnapshot(Err(RaftError::APIError(
            InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: "b".into(),
                    offset: 4,
                },
            }),
        ))));
        through_the_wire(RaftResponse::Forward(Ok(CommandResponse::Applied {
            changed: true,
        })));
        through_the_wire(RaftResponse::Forward(Err(forward_error(
            RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader::new(
                2,
                member(2),
            ))),
        ))));
        through_the_wire(RaftResponse::Failure("no".into()));
    }

    #[test]
    fn not_leader_names_the_leader() {
        let e = forward_error(RaftError::APIError(ClientWriteError::ForwardToLeader(
            ForwardToLeader::new(2, member(2)),
        )));
        assert_eq!(
            e.to_string(),
            "not the leader; the leader is node 2 at 127.0.0.1:7002"
        );
        let e = forward_error(RaftError::APIError(ClientWriteError::ForwardToLeader(
            ForwardToLeader::empty(),
        )));
        assert_eq!(e.to_string(), "not the leader; no leader is known");
    }
}
