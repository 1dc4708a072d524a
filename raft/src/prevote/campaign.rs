//! The asking side: when a voter may campaign, and the campaign itself.
//!
//! The wait is openraft's own (the leader lease plus a random election
//! timeout after the leader was last heard, or after the last round), so
//! a lost leader is replaced as fast as before; only the pre-vote round, one
//! round trip, is added.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::NodeId;
use crate::network::Network;
use crate::store::LogStore;
use crate::types::Raft;

use super::{AskError, PreVote, PreVoteAnswer, handler::view, is_stranger, won};

/// The timing of the campaigns, from openraft's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The leader lease (openraft's `election_timeout_max`).
    pub lease: Duration,
    /// The random election timeout's bounds.
    pub timeout_min: Duration,
    /// Upper bound of the random election timeout.
    pub timeout_max: Duration,
}

impl Timing {
    /// From openraft's configuration, as its own election timer reads it.
    pub fn of(config: &openraft::Config) -> Self {
        Self {
            lease: Duration::from_millis(config.election_timeout_max),
            timeout_min: Duration::from_millis(config.election_timeout_min),
            timeout_max: Duration::from_millis(config.election_timeout_max),
        }
    }

    /// How long to hear nothing before the next round: the lease plus a
    /// random election timeout, drawn again after every round so that two
    /// voters that lost the same leader do not ask in lockstep.
    pub fn draw(&self, rng: &mut impl Rng) -> Duration {
        let (lo, hi) = (self.timeout_min, self.timeout_max.max(self.timeout_min));
        self.lease + rng.random_range(lo..=hi)
    }

    /// How often the campaigner looks: often enough not to add to the wait.
    pub fn tick(&self) -> Duration {
        (self.timeout_min / 20).clamp(Duration::from_millis(10), Duration::from_millis(100))
    }
}

/// Whether a round is due: nothing heard from a leader, and no round of
/// ours, for `wait` (counted from the start at the earliest).
pub fn due(
    now: Instant,
    started: Instant,
    heard: Option<Instant>,
    last_round: Option<Instant>,
    wait: Duration,
) -> bool {
    let since = [heard, last_round]
        .into_iter()
        .flatten()
        .fold(started, Instant::max);
    now.saturating_duration_since(since) >= wait
}

/// Whether this node's vote was set or refreshed (a vote given, a leader's
/// append) after `before`, the reading taken when the round started.
pub fn moved_on(before: Option<Instant>, now: Option<Instant>) -> bool {
    match (before, now) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(before), Some(now)) => now > before,
    }
}

/// Runs until `raft` stops: campaigns for node `id` whenever it is a voter
/// that has heard no leader for the wait and a majority would vote for it.
///
/// `stranger` is set after each round to whether most of the other voters
/// refused this node as not a member of their cluster: removed, though its
/// own log may never learn it.
pub async fn run(
    id: NodeId,
    raft: Raft,
    network: Network,
    log: LogStore,
    timing: Timing,
    stranger: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let started = Instant::now();
    let mut wait = timing.draw(&mut rand::rng());
    let mut last_round: Option<Instant> = None;
    // The answers of the last lost round: a node that keeps losing the same
    // way (a removed node its old peers no longer know, a follower cut off
    // from a quorum) says so once, not every election timeout.
    let mut last_lost: Option<Vec<PreVoteAnswer>> = None;
    let mut ticker = tokio::time::interval(timing.tick());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (leading, voters) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            let membership = m.membership_config.membership();
            let voters: Vec<_> = membership
                .voter_ids()
                .filter_map(|v| membership.get_node(&v).map(|n| (v, n.clone())))
                .collect();
            (m.state == openraft::ServerState::Leader, voters)
        };
        if leading || !voters.iter().any(|(v, _)| *v == id) {
            continue;
        }
        let Ok(heard) = raft.with_raft_state(|st| st.vote_last_modified()).await else {
            return;
        };
        if !due(Instant::now(), started, heard, last_round, wait) {
            continue;
        }
        last_round = Some(Instant::now());
        wait = timing.draw(&mut rand::rng());
        let others: Vec<_> = voters.into_iter().filter(|(v, _)| *v != id).collect();
        let granted = if others.is_empty() {
            0
        } else {
            let Some(own) = view(&raft, &log).await else {
                continue;
            };
            let asker = PreVote {
                last_log_id: own.last_log_id,
            };
            let mut asks = tokio::task::JoinSet::new();
            for (peer, member) in &others {
                let (network, asker) = (network.clone(), asker.clone());
                let (peer, member) = (*peer, member.clone());
                asks.spawn(async move {
                    let answer = tokio::time::timeout(
                        timing.timeout_min,
                        network.pre_vote(peer, &member, asker),
                    )
                    .await;
                    answer.unwrap_or_else(|_| Err(AskError::Network("no answer".into())))
                });
            }
            let results = asks.join_all().await;
            // Most of the others refuse this node as a stranger: their
            // membership no longer names it (the entry that removed it may
            // never reach it, as the leader stops replicating to it).
            stranger.store(
                is_stranger(&results, others.len()),
                std::sync::atomic::Ordering::Relaxed,
            );
            let answers: Vec<PreVoteAnswer> = results
                .into_iter()
                .map(|r| r.unwrap_or(PreVoteAnswer::Unknown))
                .collect();
            let granted = answers.iter().filter(|a| a.grants()).count();
            if !won(granted, others.len() + 1) {
                if repeated(&last_lost, &answers) {
                    tracing::debug!(?answers, "pre-vote lost again: not campaigning");
                } else {
                    tracing::info!(?answers, "pre-vote lost: not campaigning");
                }
                last_lost = Some(answers);
                continue;
            }
            last_lost = None;
            // The round took a round trip: another voter may have been
            // elected meanwhile (this node voted for it, or heard its first
            // append). Campaigning now would depose a leader elected a
            // moment ago.
            let Ok(now_heard) = raft.with_raft_state(|st| st.vote_last_modified()).await else {
                return;
            };
            if moved_on(heard, now_heard) {
                tracing::info!(
                    granted,
                    "pre-vote won, but this node voted or heard a leader during the round: not campaigning"
                );
                continue;
            }
            granted
        };
        tracing::info!(
            granted,
            voters = others.len() + 1,
            "pre-vote won: campaigning"
        );
        if raft.trigger().elect().await.is_err() {
            return;
        }
    }
}

/// Whether a lost round's `answers` are those of the round lost before it
/// (`last`), in whatever order they came back: nothing new to tell the
/// operator.
fn repeated(last: &Option<Vec<PreVoteAnswer>>, answers: &[PreVoteAnswer]) -> bool {
    let Some(last) = last else {
        return false;
    };
    let count = |of: &[PreVoteAnswer], a: &PreVoteAnswer| of.iter().filter(|b| *b == a).count();
    last.len() == answers.len() && answers.iter().all(|a| count(last, a) == count(answers, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_lost_the_same_way_again_is_not_news() {
        let lost = vec![PreVoteAnswer::Unknown, PreVoteAnswer::Granted];
        assert!(!repeated(&None, &lost), "the first loss is told");
        assert!(repeated(&Some(lost.clone()), &lost));
        // The answers come back in the order they arrive.
        let reversed = vec![PreVoteAnswer::Granted, PreVoteAnswer::Unknown];
        assert!(repeated(&Some(lost.clone()), &reversed));
        let other = vec![PreVoteAnswer::Unknown, PreVoteAnswer::Unknown];
        assert!(!repeated(&Some(lost.clone()), &other), "a change is told");
        assert!(!repeated(&Some(lost), &[PreVoteAnswer::Unknown]));
    }

    #[test]
    fn a_round_is_due_only_after_the_wait_since_the_last_news() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(3500);
        let at = |ms| t0 + Duration::from_millis(ms);
        // Fresh start: the wait counts from the start.
        assert!(!due(at(3000), t0, None, None, wait));
        assert!(due(at(3500), t0, None, None, wait));
        // A leader heard at 2 s pushes it to 5.5 s.
        assert!(!due(at(5000), t0, Some(at(2000)), None, wait));
        assert!(due(at(5500), t0, Some(at(2000)), None, wait));
        // A round at 6 s pushes the next to 9.5 s.
        assert!(!due(at(9000), t0, Some(at(2000)), Some(at(6000)), wait));
        assert!(due(at(9500), t0, Some(at(2000)), Some(at(6000)), wait));
    }

    #[test]
    fn a_round_overtaken_by_an_election_does_not_campaign() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(80);
        // Nothing happened during the round.
        assert!(!moved_on(Some(t0), Some(t0)));
        assert!(!moved_on(None, None));
        // It voted for another candidate, or heard a new leader.
        assert!(moved_on(Some(t0), Some(later)));
        assert!(moved_on(None, Some(later)));
    }

    #[test]
    fn the_wait_is_the_lease_plus_a_random_timeout() {
        let timing = Timing {
            lease: Duration::from_millis(2000),
            timeout_min: Duration::from_millis(1500),
            timeout_max: Duration::from_millis(2000),
        };
        let mut rng = rand::rng();
        for _ in 0..100 {
            let w = timing.draw(&mut rng);
            assert!(
                w >= Duration::from_millis(3500) && w <= Duration::from_millis(4000),
                "{w:?}"
            );
        }
        assert_eq!(timing.tick(), Duration::from_millis(75));
    }
}
