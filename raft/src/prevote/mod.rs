//! Pre-vote: a node asks whether it could win before it campaigns.
//!
//! openraft 0.9 has no pre-vote. A follower cut off from the leader (a
//! one-way partition, a lossy link) campaigns on its own, raising its term
//! each time; when it is heard again its higher term makes the healthy
//! leader step down, and the cluster takes no writes until a new election
//! ends. So Meridian switches openraft's own election timer off
//! (`enable_elect = false`) and campaigns itself ([`campaign`]): once a
//! voter has heard no leader for openraft's own wait (the leader lease plus
//! a random election timeout), it asks the other voters a [`PreVote`]
//! question that changes nothing on them, and only when a majority would
//! vote for it does it trigger openraft's election. A voter says yes only
//! if its own lease from a leader has run out (or, being the leader, it
//! has not heard from a quorum within it) and the asker's log is at least
//! as up to date as its own: the same rules as openraft's real vote, so a
//! pre-vote that passes is an election that can be won.

pub mod campaign;
mod handler;

use std::time::Duration;

use openraft::LogId;
use serde::{Deserialize, Serialize};

use crate::NodeId;

pub use handler::{Voter, leader_heard, vote_set};

/// "Would you vote for me?", sent before a campaign; nothing changes on
/// the node asked. The asker is the node its certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    /// The asker's last log id: the real vote compares the same.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// The answer to a [`PreVote`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreVoteAnswer {
    /// The node would vote for the asker.
    Granted,
    /// It hears a leader (or, being the leader, a quorum) within the lease.
    LeaderAlive,
    /// Its log is more up to date than the asker's.
    LogBehind,
    /// It cannot say (its Raft stopped, or its log cannot be read).
    Unknown,
    /// It belongs to no cluster yet (it was just started, empty): it would
    /// vote, as it takes any vote while it has no membership.
    Uninitialized,
}

impl PreVoteAnswer {
    /// Whether the asker may count it as a vote.
    pub fn grants(&self) -> bool {
        matches!(self, Self::Granted | Self::Uninitialized)
    }
}

/// Why a pre-vote got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The node refused the asker by the transport's identity rules: a
    /// `NotAMember` refusal says a cluster exists there without the asker.
    #[error("refused: {0}")]
    Refused(crate::network::rpc::Refusal),
    /// It could not be reached, or answered something else.
    #[error("{0}")]
    Network(String),
}

/// Whether the answers a starting node got from the other members of its
/// file say that a cluster already runs: then it must not bootstrap one
/// (openraft's `initialize` campaigns at once, and a node that raised its
/// term would depose the running cluster's leader when it is added).
/// Fresh nodes of a cluster being created answer `Uninitialized`, or are not
/// up yet.
pub fn cluster_runs(answers: &[Result<PreVoteAnswer, AskError>]) -> bool {
    answers.iter().any(|a| match a {
        Ok(PreVoteAnswer::Uninitialized) => false,
        Ok(_) => true,
        Err(AskError::Refused(refusal)) => {
            matches!(refusal, crate::network::rpc::Refusal::NotAMember { .. })
        }
        Err(AskError::Network(_)) => false,
    })
}

/// Whether most of the `others` (the other voters this node knows of)
/// refused its pre-vote as coming from a node that is not a member: the
/// cluster removed it.
pub fn is_stranger(answers: &[Result<PreVoteAnswer, AskError>], others: usize) -> bool {
    let refused = answers
        .iter()
        .filter(|a| {
            matches!(
                a,
                Err(AskError::Refused(
                    crate::network::rpc::Refusal::NotAMember { .. }
                ))
            )
        })
        .count();
    others > 0 && 2 * refused > others
}

/// What a voter knows when asked, read from its Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterView {
    /// It leads now.
    pub leading: bool,
    /// As the leader: how long since a quorum acknowledged it.
    pub quorum_ack_ago: Option<Duration>,
    /// As a follower: it holds a committed vote (a leader it follows) and
    /// last heard from that leader this long ago.
    pub leader_heard_ago: Option<Duration>,
    /// Its own last log id.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// How a voter answers a [`PreVote`]: openraft's vote rules (leader lease,
/// then log recency), without changing anything.
pub fn answer(view: &VoterView, lease: Duration, asker: &PreVote) -> PreVoteAnswer {
    let leader_alive = if view.leading {
        view.quorum_ack_ago.is_some_and(|ago| ago < lease)
    } else {
        view.leader_heard_ago.is_some_and(|ago| ago < lease)
    };
    if leader_alive {
        PreVoteAnswer::LeaderAlive
    } else if asker.last_log_id < view.last_log_id {
        // LogId orders by (leader term and id, index), as Raft's vote does.
        PreVoteAnswer::LogBehind
    } else {
        PreVoteAnswer::Granted
    }
}

/// Whether `granted` answers, with the asker's own vote, are a majority of
/// `voters`.
pub fn won(granted: usize, voters: usize) -> bool {
    voters > 0 && 2 * (granted + 1) > voters
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn follower(heard_ms: Option<u64>, last: Option<LogId<NodeId>>) -> VoterView {
        VoterView {
            leading: false,
            quorum_ack_ago: None,
            leader_heard_ago: heard_ms.map(Duration::from_millis),
            last_log_id: last,
        }
    }

    const LEASE: Duration = Duration::from_millis(2000);

    #[test]
    fn a_follower_that_hears_its_leader_refuses() {
        let asker = PreVote {
            last_log_id: log(3, 100),
        };
        assert_eq!(
            answer(&follower(Some(500), log(3, 90)), LEASE, &asker),
            PreVoteAnswer::LeaderAlive
        );
        // The lease ran out: the asker's log decides.
        assert_eq!(
            answer(&follower(Some(2500), log(3, 90)), LEASE, &asker),
            PreVoteAnswer::Granted
        );
        assert_eq!(
            answer(&follower(None, log(3, 100)), LEASE, &asker),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_longer_or_newer_log_refuses_a_staler_asker() {
        let asker = PreVote {
            last_log_id: log(3, 100),
        };
        assert_eq!(
            answer(&follower(None, log(3, 101)), LEASE, &asker),
            PreVoteAnswer::LogBehind
        );
        // A newer term wins over a longer log, as in Raft.
        assert_eq!(
            answer(&follower(None, log(4, 10)), LEASE, &asker),
            PreVoteAnswer::LogBehind
        );
        assert_eq!(
            answer(&follower(None, log(2, 500)), LEASE, &asker),
            PreVoteAnswer::Granted
        );
        let empty = PreVote { last_log_id: None };
        assert_eq!(
            answer(&follower(None, None), LEASE, &empty),
            PreVoteAnswer::Granted
        );
        assert_eq!(
            answer(&follower(None, log(1, 1)), LEASE, &empty),
            PreVoteAnswer::LogBehind
        );
    }

    #[test]
    fn a_leader_refuses_while_a_quorum_acknowledges_it() {
        let asker = PreVote {
            last_log_id: log(3, 100),
        };
        let leader = |ack_ms: Option<u64>| VoterView {
            leading: true,
            quorum_ack_ago: ack_ms.map(Duration::from_millis),
            leader_heard_ago: None,
            last_log_id: log(3, 100),
        };
        assert_eq!(
            answer(&leader(Some(100)), LEASE, &asker),
            PreVoteAnswer::LeaderAlive
        );
        // An isolated leader: no quorum within the lease.
        assert_eq!(
            answer(&leader(Some(5000)), LEASE, &asker),
            PreVoteAnswer::Granted
        );
        assert_eq!(answer(&leader(None), LEASE, &asker), PreVoteAnswer::Granted);
    }

    #[test]
    fn a_cluster_runs_when_any_member_answers_or_refuses_a_stranger() {
        use crate::network::rpc::Refusal;
        let fresh = Err(AskError::Refused(Refusal::NotYetMember {
            caller: 4,
            what: "PreVote".into(),
        }));
        let down = Err(AskError::Network("unreachable".into()));
        assert!(!cluster_runs(&[]));
        assert!(!cluster_runs(&[fresh.clone(), down.clone()]));
        assert!(cluster_runs(&[
            down.clone(),
            Err(AskError::Refused(Refusal::NotAMember { caller: 4 }))
        ]));
        assert!(cluster_runs(&[fresh, Ok(PreVoteAnswer::LeaderAlive)]));
        assert!(cluster_runs(&[down.clone(), Ok(PreVoteAnswer::Unknown)]));
        // Fresh nodes of a cluster being created answer for themselves.
        assert!(!cluster_runs(&[down, Ok(PreVoteAnswer::Uninitialized)]));
        assert!(PreVoteAnswer::Uninitialized.grants() && PreVoteAnswer::Granted.grants());
        assert!(!PreVoteAnswer::LeaderAlive.grants() && !PreVoteAnswer::Unknown.grants());
    }

    #[test]
    fn a_node_most_others_refuse_as_a_stranger_was_removed() {
        use crate::network::rpc::Refusal;
        let stranger = || Err(AskError::Refused(Refusal::NotAMember { caller: 2 }));
        let down = || Err(AskError::Network("unreachable".into()));
        assert!(is_stranger(&[stranger(), stranger()], 2));
        assert!(!is_stranger(&[stranger(), down()], 2));
        assert!(!is_stranger(
            &[stranger(), Ok(PreVoteAnswer::LeaderAlive)],
            2
        ));
        assert!(is_stranger(&[stranger(), stranger(), down()], 3));
        assert!(!is_stranger(&[], 0));
    }

    #[test]
    fn majorities_count_the_asker() {
        assert!(won(0, 1));
        assert!(!won(0, 2));
        assert!(won(1, 2));
        assert!(!won(0, 3));
        assert!(won(1, 3));
        assert!(!won(1, 4));
        assert!(won(2, 4));
        assert!(won(2, 5));
        assert!(!won(0, 0));
    }
}
