//! The serving side: a node's Raft, plus the answers to pre-votes, which
//! need the node's own last log id (openraft keeps it to itself).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::NodeId;
use crate::network::{HealthSink, RaftRequest, RaftResponse, RpcHandler};
use crate::store::LogStore;
use crate::types::Raft;

use super::{PreVote, PreVoteAnswer, VoterView, answer};

/// What serves peers on a node that campaigns with pre-votes: its Raft for
/// every Raft request, and the pre-vote answers beside it.
#[derive(Clone)]
pub struct Voter {
    raft: Raft,
    log: LogStore,
    lease: Duration,
    expected: Arc<BTreeSet<NodeId>>,
    health: Option<HealthSink>,
}

impl Voter {
    /// Serves `raft`, whose log is `log`; `lease` is how long a leader heard
    /// keeps this node from granting a pre-vote (openraft's leader lease,
    /// its `election_timeout_max`); `expected` are the members the node's
    /// file names, the only peers it takes Raft from while it has no
    /// membership (see [`crate::network::rpc::check_expected`]).
    pub fn new(raft: Raft, log: LogStore, lease: Duration, expected: BTreeSet<NodeId>) -> Self {
        Self {
            raft,
            log,
            lease,
            expected: Arc::new(expected),
            health: None,
        }
    }

    /// Files the health reports members send into `sink`; without one they
    /// are answered "this node takes no health reports".
    pub fn with_health(mut self, sink: HealthSink) -> Self {
        self.health = Some(sink);
        self
    }

    async fn pre_vote(&self, asker: &PreVote) -> PreVoteAnswer {
        match view(&self.raft, &self.log).await {
            Some(view) => answer(&view, self.lease, asker),
            None => PreVoteAnswer::Unknown,
        }
    }
}

/// How long ago `raft` last heard the leader it follows (a committed vote
/// refreshed by that leader's appends); `Some(None)` when it follows none,
/// `None` when its core stopped. What openraft's own vote lease reads, and
/// what the node's standing (cut off or not) is judged by.
pub async fn leader_heard(raft: &Raft) -> Option<Option<Duration>> {
    raft.with_raft_state(|st| {
        st.vote_ref()
            .is_committed()
            .then(|| st.vote_last_modified())
            .flatten()
    })
    .await
    .ok()
    .map(|at| at.map(|at| at.elapsed()))
}

/// How long ago `raft`'s vote was last set or refreshed, committed or not:
/// a leader's append refreshes it, and so does a vote given in an election.
/// `Some(None)` when it never voted, `None` when its core stopped. A node
/// whose vote moves is in touch with its cluster, even between leaders.
pub async fn vote_set(raft: &Raft) -> Option<Option<Duration>> {
    raft.with_raft_state(|st| st.vote_last_modified())
        .await
        .ok()
        .map(|at| at.map(|at| at.elapsed()))
}

/// What `raft` knows now, for a pre-vote; `None` when it stopped or its
/// log cannot be read.
pub(super) async fn view(raft: &Raft, log: &LogStore) -> Option<VoterView> {
    let (leading, quorum_ack) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        (
            m.state == openraft::ServerState::Leader,
            m.millis_since_quorum_ack,
        )
    };
    let heard = leader_heard(raft).await?;
    let last_log_id = match log.last_log_id() {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(error = %e, "pre-vote: cannot read the last log id");
            return None;
        }
    };
    Some(VoterView {
        leading,
        quorum_ack_ago: quorum_ack.map(Duration::from_millis),
        leader_heard_ago: heard,
        last_log_id,
    })
}

impl RpcHandler for Voter {
    async fn admits(&self, caller: NodeId) -> Result<(), crate::network::rpc::Refusal> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        crate::network::rpc::check_expected(caller, membership.membership(), &self.expected)?;
        self.raft.admits(caller).await
    }

    async fn handle(&self, caller: NodeId, request: RaftRequest) -> RaftResponse {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if let Err(refusal) =
            crate::network::rpc::check_expected(caller, membership.membership(), &self.expected)
        {
            tracing::warn!(caller, request = %request.kind(), %refusal, "raft request refused");
            return RaftResponse::Refused(refusal);
        }
        match request {
            RaftRequest::PreVote(asker) => {
                let request = RaftRequest::PreVote(asker);
                if let Err(refusal) =
                    crate::network::rpc::check(caller, &request, membership.membership())
                {
                    return RaftResponse::Refused(refusal);
                }
                let RaftRequest::PreVote(asker) = request else {
                    return RaftResponse::Failure("pre-vote lost in dispatch".into());
                };
                let answer = if membership.membership().nodes().next().is_none() {
                    PreVoteAnswer::Uninitialized
                } else {
                    self.pre_vote(&asker).await
                };
                tracing::debug!(caller, ?answer, "pre-vote answered");
                RaftResponse::PreVote(answer)
            }
            RaftRequest::Health(report) => {
                let Some(sink) = &self.health else {
                    return self.raft.handle(caller, RaftRequest::Health(report)).await;
                };
                let request = RaftRequest::Health(report);
                if let Err(refusal) =
                    crate::network::rpc::check(caller, &request, membership.membership())
                {
                    tracing::debug!(caller, %refusal, "health report refused");
                    return RaftResponse::Refused(refusal);
                }
                let RaftRequest::Health(report) = request else {
                    return RaftResponse::Failure("health report lost in dispatch".into());
                };
                RaftResponse::Health(sink(caller, report))
            }
            other => self.raft.handle(caller, other).await,
        }
    }
}
