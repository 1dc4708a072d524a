//! What travels on a Raft stream: one [`RaftRequest`] out, one
//! [`RaftResponse`] back, and what a node does with a request.
//!
//! Every request arrives with its caller's node id, proved by the caller's
//! certificate (see [`crate::certs::node_id`]). Before anything reaches
//! openraft, [`check`] holds the caller to it: the sender a request claims
//! (a vote's candidate, the leader of an append or a snapshot, the member an
//! `Announce` or a health `Report` speaks for) must be the caller, and the
//! caller must be a member (voter or learner) of this node's membership. A
//! health report sent directly ([`RaftRequest::Health`]) names no sender: it
//! is filed under the caller's id.
//! A node that has no membership yet (never initialized, nothing
//! replicated) takes the Raft protocol itself (votes, appends, snapshots)
//! from any caller that is the node it claims to be, and no writes or reads:
//! it holds no state to protect, counts in no quorum until a leader's log
//! makes it a member, and the cluster that adds it (or the node that
//! initialized a new cluster naming it) must be able to reach it. A Meridian
//! node initializes itself before it answers peers, so it never serves
//! without a membership.

use std::future::Future;

use openraft::Membership;
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
    /// A voter asking whether it could win an election, before it raises
    /// its term (see [`crate::prevote`]).
    PreVote(crate::prevote::PreVote),
    /// The caller's latest health report, sent straight to each member
    /// rather than through the log. It names no sender: it is the caller's,
    /// whose certificate proves who it is, so no member can speak for
    /// another.
    Health(proto::health::HealthReport),
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
    Forward(Result<Written, ForwardError>),
    /// Answers [`RaftRequest::ReadIndex`]: the index to have applied (none
    /// before anything was written).
    ReadIndex(Result<Option<u64>, ForwardError>),
    /// The request never reached Raft: it was malformed, too large, or of a
    /// version this node does not speak.
    Failure(String),
    /// The request never reached Raft: the caller may not send it (see
    /// [`check`]). After the first six variants, so their encoding is
    /// that of earlier builds.
    Refused(Refusal),
    /// Answers [`RaftRequest::PreVote`].
    PreVote(crate::prevote::PreVoteAnswer),
    /// Answers [`RaftRequest::Health`]: taken, or why not.
    Health(Result<(), String>),
}

/// A forwarded write, applied on the leader: what applying it answered,
/// and the log index it was committed at, so the node that forwarded it can
/// wait until it has applied that far itself (read your writes) without
/// another round trip to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The state machine's answer.
    pub response: CommandResponse,
    /// The entry's log index.
    pub index: u64,
}

/// Why a peer's request was refused before it reached Raft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// The caller is not a voter or learner of this node's membership: a
    /// removed node, or a certificate of a node never added.
    #[error("node {caller} is not a member of this cluster")]
    NotAMember {
        /// The caller, from its certificate.
        caller: NodeId,
    },
    /// The request speaks for another node than the caller's certificate
    /// names.
    #[error("node {caller} sent {what} claiming to be {}", claimed_node(claimed))]
    Impersonation {
        /// The caller, from its certificate.
        caller: NodeId,
        /// What it sent (`Vote`, `AppendEntries`, `Forward(Announce)`, …).
        what: String,
        /// Who the request says it is from; none when it names nobody.
        claimed: Option<NodeId>,
    },
    /// A node without a membership takes the Raft protocol only: no
    /// forwarded writes or reads.
    #[error("node {caller} sent {what}, which a node not yet in a cluster does not take")]
    NotYetMember {
        /// The caller, from its certificate.
        caller: NodeId,
        /// What it sent.
        what: String,
    },
    // New kinds go at the end: bincode numbers variants by position.
    /// A node waiting to be added takes the Raft protocol only from the
    /// members its file names: another node of the same CA (a removed
    /// member, another cluster's) cannot claim it first.
    #[error(
        "node {caller} is not in this node's cluster.members; a node waiting to be added takes Raft only from the members its file names"
    )]
    NotExpected {
        /// The caller, from its certificate.
        caller: NodeId,
    },
    /// A snapshot chunk reaching past the largest snapshot a node can
    /// decode: written where it says, it would have the receiver reserve
    /// that much memory (an offset of 2^40 aborts the process).
    #[error(
        "node {caller} sent a snapshot chunk ending at byte {end}, past the {limit} bytes a snapshot may hold"
    )]
    SnapshotTooLarge {
        /// The caller, from its certificate.
        caller: NodeId,
        /// Where the chunk would end.
        end: u64,
        /// The largest snapshot taken.
        limit: u64,
    },
}

fn claimed_node(claimed: &Option<NodeId>) -> String {
    match claimed {
        Some(id) => format!("node {id}"),
        None => "no node".to_string(),
    }
}

impl RaftRequest {
    /// The request's kind, for logs and refusals.
    pub fn kind(&self) -> String {
        match self {
            Self::AppendEntries(_) => "AppendEntries".into(),
            Self::Vote(_) => "Vote".into(),
            Self::InstallSnapshot(_) => "InstallSnapshot".into(),
            Self::Forward(command) => format!("Forward({})", command_kind(command)),
            Self::ReadIndex => "ReadIndex".into(),
            Self::PreVote(_) => "PreVote".into(),
            Self::Health(_) => "Health".into(),
        }
    }

    /// The node the request says it comes from, when it names one: the
    /// candidate of a vote, the leader of an append or a snapshot, the
    /// member an `Announce`, `Report` or `Tenancy` is about. `Some(None)` is a request
    /// that must name its sender and names none.
    fn claimed_sender(&self) -> Option<Option<NodeId>> {
        match self {
            Self::AppendEntries(rpc) => Some(rpc.vote.leader_id().voted_for()),
            Self::Vote(rpc) => Some(rpc.vote.leader_id().voted_for()),
            Self::InstallSnapshot(rpc) => Some(rpc.vote.leader_id().voted_for()),
            Self::Forward(
                Command::Announce { id, .. }
                | Command::Report { id, .. }
                | Command::Tenancy { id, .. },
            ) => Some(Some(*id)),
            Self::Forward(
                Command::Seed { .. }
                | Command::PutUpstream(_)
                | Command::DeleteUpstream { .. }
                | Command::PutRoute(_)
                | Command::DeleteRoute { .. }
                | Command::PutKey(_)
                | Command::DeleteKey { .. }
                | Command::PutCatalogue { .. }
                | Command::AddCredits { .. },
            )
            | Self::ReadIndex
            | Self::PreVote(_)
            | Self::Health(_) => None,
        }
    }
}

fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::Seed { .. } => "Seed",
        Command::PutUpstream(_) => "PutUpstream",
        Command::DeleteUpstream { .. } => "DeleteUpstream",
        Command::PutRoute(_) => "PutRoute",
        Command::DeleteRoute { .. } => "DeleteRoute",
        Command::PutKey(_) => "PutKey",
        Command::DeleteKey { .. } => "DeleteKey",
        Command::Announce { .. } => "Announce",
        Command::Report { .. } => "Report",
        Command::PutCatalogue { .. } => "PutCatalogue",
        Command::AddCredits { .. } => "AddCredits",
        Command::Tenancy { .. } => "Tenancy",
    }
}

/// Whether `caller` (proved by its certificate) may send `request` to a node
/// whose membership is `membership`. Pure: the transport's identity rules
/// in one place (see the module documentation).
pub fn check(
    caller: NodeId,
    request: &RaftRequest,
    membership: &Membership<NodeId, Member>,
) -> Result<(), Refusal> {
    if let Some(claimed) = request.claimed_sender()
        && claimed != Some(caller)
    {
        return Err(Refusal::Impersonation {
            caller,
            what: request.kind(),
            claimed,
        });
    }
    if let RaftRequest::InstallSnapshot(rpc) = request {
        let end = rpc.offset.saturating_add(rpc.data.len() as u64);
        let limit = proto::codec::DECODE_LIMIT as u64;
        if end > limit {
            return Err(Refusal::SnapshotTooLarge { caller, end, limit });
        }
    }
    if membership.get_node(&caller).is_some() {
        return Ok(());
    }
    let uninitialized = membership.nodes().next().is_none();
    match request {
        RaftRequest::AppendEntries(_)
        | RaftRequest::InstallSnapshot(_)
        | RaftRequest::Vote(_)
        | RaftRequest::PreVote(_)
            if uninitialized =>
        {
            Ok(())
        }
        _ if uninitialized => Err(Refusal::NotYetMember {
            caller,
            what: request.kind(),
        }),
        _ => Err(Refusal::NotAMember { caller }),
    }
}

/// Whether `caller` may talk to a node at all, given the members its
/// configuration file names (`expected`): while the node holds no
/// membership, only they may (the cluster that adds it is made of them, or
/// the cluster being bootstrapped is). Without this, any node whose
/// certificate the CA signed, a removed member included, could replicate a
/// membership of its own to a node waiting to be added and capture it.
/// Once the node has a membership, [`check`] alone decides. An empty
/// `expected` (a file naming no members) restricts nothing.
pub fn check_expected(
    caller: NodeId,
    membership: &Membership<NodeId, Member>,
    expected: &std::collections::BTreeSet<NodeId>,
) -> Result<(), Refusal> {
    let waiting = membership.nodes().next().is_none();
    if !waiting || expected.is_empty() || expected.contains(&caller) {
        Ok(())
    } else {
        Err(Refusal::NotExpected { caller })
    }
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
    // New kinds go at the end: bincode numbers variants by position, so a
    // peer on the previous build still reads the three above.
    /// The leader could not confirm its leadership with a quorum of voters
    /// (too many are down or cut off): the caller answers "no quorum, retry"
    /// rather than a Raft failure. Carries openraft's words.
    #[error("raft failed the request: {0}")]
    NoQuorum(String),
    /// The leader's Raft core stopped (a storage failure, a panic, or a
    /// shutdown): nothing more is committed there until it restarts.
    /// Carries openraft's words.
    #[error("raft failed the request: {0}")]
    Fatal(String),
}

fn leader_hint(id: &Option<NodeId>, leader: &Option<Member>) -> String {
    match (id, leader) {
        (Some(id), Some(m)) => format!("the leader is node {id} at {}", m.raft_addr),
        (Some(id), None) => format!("the leader is node {id}"),
        _ => "no leader is known".to_string(),
    }
}

/// Where a node files the health reports its peers send it
/// ([`RaftRequest::Health`]): the caller's id (from its certificate) and its
/// report go in; `Err` says why the report was not taken, for the sender's
/// log. Called on the transport's task: it must not block.
pub type HealthSink =
    std::sync::Arc<dyn Fn(NodeId, proto::health::HealthReport) -> Result<(), String> + Send + Sync>;

/// Whether `caller` is a member of `raft`'s committed membership (a member
/// being removed stays one until its removal is committed here).
async fn committed_member(raft: &Raft, caller: NodeId) -> bool {
    raft.with_raft_state(move |state| {
        state
            .membership_state
            .committed()
            .membership()
            .get_node(&caller)
            .is_some()
    })
    .await
        == Ok(true)
}

/// What serves requests arriving on the transport. [`Raft`] is the real
/// one; tests substitute their own to see what arrives.
pub trait RpcHandler: Clone + Send + Sync + 'static {
    /// Whether `caller` may send this node anything at all, decided before
    /// its request is read: a frame may be as large as the transport's
    /// limit, and a node the CA signed but this cluster does not count (a
    /// removed member, another cluster's) must not have this node read and
    /// hold one per stream. [`check`] still decides each request once read.
    fn admits(&self, caller: NodeId) -> impl Future<Output = Result<(), Refusal>> + Send {
        let _ = caller;
        async { Ok(()) }
    }

    /// Handles one request from the node `caller` (the id its certificate
    /// names) and produces its response.
    fn handle(
        &self,
        caller: NodeId,
        request: RaftRequest,
    ) -> impl Future<Output = RaftResponse> + Send;
}

impl RpcHandler for Raft {
    /// A member of the effective or the committed membership, or anyone
    /// while this node has none (it takes the Raft protocol then, which
    /// [`check`] decides once the request is read).
    async fn admits(&self, caller: NodeId) -> Result<(), Refusal> {
        let effective = self.metrics().borrow().membership_config.clone();
        let membership = effective.membership();
        if membership.get_node(&caller).is_some()
            || membership.nodes().next().is_none()
            || committed_member(self, caller).await
        {
            Ok(())
        } else {
            Err(Refusal::NotAMember { caller })
        }
    }

    async fn handle(&self, caller: NodeId, request: RaftRequest) -> RaftResponse {
        let effective = self.metrics().borrow().membership_config.clone();
        let mut checked = check(caller, &request, effective.membership());
        if matches!(checked, Err(Refusal::NotAMember { .. })) {
            // A member being removed stays one until the removal is
            // committed here: a leader that removes itself must still
            // replicate (and commit) the change that removes it. Only a
            // member of the committed membership is let in this way, never
            // a node that an empty committed membership would let in.
            if committed_member(self, caller).await {
                checked = Ok(());
            }
        }
        if let Err(refusal) = checked {
            tracing::warn!(
                caller,
                request = %request.kind(),
                %refusal,
                "raft request refused"
            );
            return RaftResponse::Refused(refusal);
        }
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
                    .map(|written| Written {
                        response: written.data,
                        index: written.log_id.index,
                    })
                    .map_err(forward_error),
            ),
            RaftRequest::ReadIndex => RaftResponse::ReadIndex(
                self.get_read_log_id()
                    .await
                    .map(|(read, _applied)| read.map(|log_id| log_id.index))
                    .map_err(read_error),
            ),
            // A bare Raft cannot read its own last log id: the node serves
            // a `prevote::Voter`, which answers these itself.
            RaftRequest::PreVote(_) => {
                RaftResponse::PreVote(crate::prevote::PreVoteAnswer::Unknown)
            }
            // Nor has it a board: a node serves a `prevote::Voter` given
            // where its peers' reports go.
            RaftRequest::Health(_) => {
                RaftResponse::Health(Err("this node takes no health reports".into()))
            }
        }
    }
}

/// A failed forwarded write, by kind: the caller decides by the variant,
/// never by openraft's text.
fn forward_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ForwardError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        fatal @ RaftError::Fatal(_) => ForwardError::Fatal(fatal.to_string()),
        other => ForwardError::Raft(other.to_string()),
    }
}

/// A failed forwarded read-index request, by kind.
fn read_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>) -> ForwardError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ForwardError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        quorum @ RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => {
            ForwardError::NoQuorum(quorum.to_string())
        }
        fatal @ RaftError::Fatal(_) => ForwardError::Fatal(fatal.to_string()),
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
        through_the_wire(RaftResponse::Forward(Ok(Written {
            response: CommandResponse::Applied { changed: true },
            index: 7,
        })));
        through_the_wire(RaftResponse::Forward(Err(forward_error(
            RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader::new(
                2,
                member(2),
            ))),
        ))));
        through_the_wire(RaftResponse::Failure("no".into()));
    }

    fn membership(voters: &[NodeId], learners: &[NodeId]) -> Membership<NodeId, Member> {
        let nodes: BTreeMap<NodeId, Member> = voters
            .iter()
            .chain(learners)
            .map(|&n| (n, member(n)))
            .collect();
        let mut m = Membership::new(vec![voters.iter().copied().collect()], nodes);
        if voters.is_empty() {
            m = Membership::new(vec![], BTreeMap::new());
        }
        m
    }

    fn append(leader: NodeId) -> RaftRequest {
        RaftRequest::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(3, leader),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        })
    }

    fn snapshot(leader: NodeId) -> RaftRequest {
        RaftRequest::InstallSnapshot(InstallSnapshotRequest {
            vote: Vote::new_committed(3, leader),
            meta: SnapshotMeta::default(),
            offset: 0,
            data: vec![],
            done: true,
        })
    }

    fn vote(candidate: NodeId) -> RaftRequest {
        RaftRequest::Vote(VoteRequest::new(Vote::new(4, candidate), None))
    }

    fn forward(command: Command) -> RaftRequest {
        RaftRequest::Forward(command)
    }

    fn announce(id: NodeId) -> RaftRequest {
        forward(Command::Announce {
            id,
            info: proto::state::NodeInfo::default(),
        })
    }

    fn report(id: NodeId) -> RaftRequest {
        forward(Command::Report {
            id,
            report: proto::health::HealthReport::default(),
        })
    }

    fn direct_report() -> RaftRequest {
        RaftRequest::Health(proto::health::HealthReport {
            seq: 3,
            region: "eu".into(),
            ..Default::default()
        })
    }

    fn tenancy(id: NodeId) -> RaftRequest {
        forward(Command::Tenancy {
            id,
            report: proto::tenancy::TenantReport::default(),
        })
    }

    #[test]
    fn members_may_speak_for_themselves() {
        let m = membership(&[1, 2, 3], &[4]);
        for caller in [1, 2, 3, 4] {
            for request in [
                append(caller),
                snapshot(caller),
                vote(caller),
                announce(caller),
                report(caller),
                direct_report(),
                tenancy(caller),
                forward(Command::DeleteRoute { model: "m".into() }),
                RaftRequest::ReadIndex,
            ] {
                assert_eq!(check(caller, &request, &m), Ok(()), "{}", request.kind());
            }
        }
    }

    /// A member's snapshot chunk that claims an offset far past any
    /// snapshot (2^40, or the last byte a u64 names) is refused before
    /// openraft writes it; one ending exactly at the limit is taken.
    #[test]
    fn a_snapshot_chunk_past_the_decode_limit_is_refused() {
        let m = membership(&[1, 2, 3], &[]);
        let limit = proto::codec::DECODE_LIMIT as u64;
        for offset in [1 << 40, u64::MAX, limit] {
            let mut request = snapshot(2);
            if let RaftRequest::InstallSnapshot(rpc) = &mut request {
                rpc.offset = offset;
                rpc.data = vec![0];
            }
            assert!(
                matches!(
                    check(2, &request, &m),
                    Err(Refusal::SnapshotTooLarge { caller: 2, .. })
                ),
                "offset {offset}"
            );
        }
        let mut at_limit = snapshot(2);
        if let RaftRequest::InstallSnapshot(rpc) = &mut at_limit {
            rpc.offset = limit - 1;
            rpc.data = vec![0];
        }
        assert_eq!(check(2, &at_limit, &m), Ok(()));
    }

    #[test]
    fn a_member_may_not_speak_for_another() {
        let m = membership(&[1, 2, 3], &[]);
        for (request, what) in [
            (append(1), "AppendEntries"),
            (snapshot(1), "InstallSnapshot"),
            (vote(1), "Vote"),
            (announce(1), "Forward(Announce)"),
            (report(1), "Forward(Report)"),
            // Another node's spending: forging it would refund or drain a key.
            (tenancy(1), "Forward(Tenancy)"),
        ] {
            assert_eq!(
                check(2, &request, &m),
                Err(Refusal::Impersonation {
                    caller: 2,
                    what: what.into(),
                    claimed: Some(1)
                })
            );
        }
        let e = check(2, &announce(1), &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node 2 sent Forward(Announce) claiming to be node 1"
        );
        // Hostile ids: the largest, zero.
        assert!(check(2, &vote(u64::MAX), &m).is_err());
        assert!(check(2, &report(0), &m).is_err());
        assert!(check(2, &tenancy(u64::MAX), &m).is_err());
    }

    #[test]
    fn a_non_member_may_send_nothing() {
        let m = membership(&[1, 2, 3], &[4]);
        for request in [
            append(5),
            snapshot(5),
            vote(5),
            announce(5),
            report(5),
            // A removed member's (or a stranger's) figures move no board.
            direct_report(),
            forward(Command::PutKey(proto::state::KeyRecord {
                name: "k".into(),
                sha256: "ab".repeat(32),
                limits: Default::default(),
            })),
            forward(Command::DeleteKey { name: "k".into() }),
            RaftRequest::ReadIndex,
        ] {
            assert_eq!(
                check(5, &request, &m),
                Err(Refusal::NotAMember { caller: 5 }),
                "{}",
                request.kind()
            );
        }
    }

    #[test]
    fn a_node_not_yet_in_a_cluster_takes_the_protocol_only() {
        let empty = membership(&[], &[]);
        for request in [append(7), snapshot(7), vote(7)] {
            assert_eq!(check(7, &request, &empty), Ok(()), "{}", request.kind());
        }
        // Still held to its identity.
        assert!(matches!(
            check(7, &append(1), &empty),
            Err(Refusal::Impersonation { .. })
        ));
        for request in [
            announce(7),
            direct_report(),
            forward(Command::DeleteRoute { model: "m".into() }),
            RaftRequest::ReadIndex,
        ] {
            assert!(
                matches!(
                    check(7, &request, &empty),
                    Err(Refusal::NotYetMember { .. })
                ),
                "{}",
                request.kind()
            );
        }
    }

    #[test]
    fn a_node_waiting_to_be_added_takes_raft_only_from_the_members_of_its_file() {
        let empty = membership(&[], &[]);
        let file: std::collections::BTreeSet<NodeId> = [1, 2, 3, 5].into();
        for caller in [1, 2, 3, 5] {
            assert_eq!(check_expected(caller, &empty, &file), Ok(()));
        }
        // Another node of the same CA: a removed member, another cluster's
        // leader; hostile ids too.
        for caller in [4, 0, u64::MAX] {
            assert_eq!(
                check_expected(caller, &empty, &file),
                Err(Refusal::NotExpected { caller })
            );
        }
        // A file naming no members restricts nothing.
        assert_eq!(check_expected(4, &empty, &Default::default()), Ok(()));
        // Once a member, the membership decides (check), not the file.
        let joined = membership(&[1, 2, 3, 4, 5], &[]);
        assert_eq!(check_expected(4, &joined, &file), Ok(()));
        through_the_wire(RaftResponse::Refused(Refusal::NotExpected { caller: 4 }));
    }

    #[test]
    fn direct_reports_and_their_answers_cross_the_wire() {
        through_the_wire(direct_report());
        through_the_wire(RaftResponse::Health(Ok(())));
        through_the_wire(RaftResponse::Health(Err("no".into())));
    }

    #[test]
    fn refusals_cross_the_wire() {
        through_the_wire(RaftResponse::Refused(Refusal::NotAMember { caller: 9 }));
        through_the_wire(RaftResponse::Refused(Refusal::Impersonation {
            caller: 2,
            what: "Vote".into(),
            claimed: None,
        }));
    }

    #[test]
    fn forwarded_failures_keep_their_kind() {
        let quorum = read_error(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(
            openraft::error::QuorumNotEnough {
                cluster: "{1,2,3}".into(),
                got: BTreeSet::from([1]),
            },
        )));
        assert!(matches!(quorum, ForwardError::NoQuorum(_)), "{quorum:?}");
        let fatal = read_error(RaftError::Fatal(Fatal::Stopped));
        assert!(matches!(fatal, ForwardError::Fatal(_)), "{fatal:?}");
        let fatal = forward_error(RaftError::Fatal(Fatal::Stopped));
        assert!(matches!(fatal, ForwardError::Fatal(_)), "{fatal:?}");
        // The words are openraft's, as before, for the operator.
        assert!(fatal.to_string().contains("stopped"), "{fatal}");
        for e in [quorum, fatal] {
            through_the_wire(RaftResponse::ReadIndex(Err(e)));
        }
    }

    /// `ForwardError` as the previous build had it: three variants.
    #[derive(Debug, Serialize, Deserialize)]
    enum PreviousForwardError {
        NotLeader {
            leader_id: Option<NodeId>,
            leader: Option<Member>,
        },
        Raft(String),
        Network {
            addr: String,
            message: String,
        },
    }

    #[test]
    fn new_kinds_leave_the_old_encoding_alone() {
        // A peer on the previous build sends these; this build reads them
        // as the same variants (bincode numbers variants by position).
        let old = [
            PreviousForwardError::NotLeader {
                leader_id: Some(2),
                leader: Some(member(2)),
            },
            PreviousForwardError::Raft("shutting down".into()),
            PreviousForwardError::Network {
                addr: "127.0.0.1:7002".into(),
                message: "refused".into(),
            },
        ];
        let new = [
            ForwardError::NotLeader {
                leader_id: Some(2),
                leader: Some(member(2)),
            },
            ForwardError::Raft("shutting down".into()),
            ForwardError::Network {
                addr: "127.0.0.1:7002".into(),
                message: "refused".into(),
            },
        ];
        for (old, new) in old.iter().zip(new) {
            let frame = encode(old).unwrap();
            assert_eq!(frame, encode(&new).unwrap());
            let back: ForwardError = decode(&frame[HEADER_LEN..]).unwrap();
            assert_eq!(back, new);
        }
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
