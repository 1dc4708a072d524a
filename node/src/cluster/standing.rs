//! Where this node stands in its cluster, for the data plane and `/readyz`:
//! a member hearing its cluster, a member that has heard no quorum for
//! longer than a bound (cut off: it keeps serving the last configuration it
//! applied, and says so), or a node the cluster removed (it serves nothing).
//!
//! Judged from openraft's effective membership, which takes a removal as
//! soon as its entry reaches this node (before it is committed here), and
//! from when a leader (or, on the leader, a quorum) was last heard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use raft::NodeId;
use raft::types::Raft;
use tokio::time::Instant;

/// What the node knows, read from its Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// It holds a membership (it was bootstrapped or added).
    pub has_membership: bool,
    /// The membership names it (voter or learner).
    pub member: bool,
    /// It leads.
    pub leading: bool,
    /// As the leader: since a quorum last acknowledged it.
    pub quorum_ack: Option<Duration>,
    /// As a follower: since it last heard the leader it follows.
    pub leader_heard: Option<Duration>,
    /// Since its vote was last set or refreshed, committed or not: a node
    /// voting in an election, or a leader just elected and not yet
    /// acknowledged, is in touch with its cluster, not cut off.
    pub vote_set: Option<Duration>,
    /// Since the node began listening: its start, or its wake from a pause
    /// (see `Listening`). What counts when nothing was heard since: silence
    /// while it could not listen says nothing of its cluster.
    pub listening: Duration,
    /// Most of the other voters refused its last pre-vote as coming from a
    /// node that is not a member: removed, though the entry that removed it
    /// may never reach it (the leader stops replicating to it).
    pub refused_as_stranger: bool,
}

/// The verdict on [`Facts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A member that heard its cluster within the bound.
    Member,
    /// A member (or a node waiting to be added) that has heard no quorum for
    /// this long, more than the bound.
    CutOff(Duration),
    /// The cluster's membership no longer names it.
    Removed,
}

/// Judges `facts`: removed first, then cut off past `bound`.
pub fn judge(facts: &Facts, bound: Duration) -> Verdict {
    if (facts.has_membership && !facts.member) || facts.refused_as_stranger {
        return Verdict::Removed;
    }
    let heard = if facts.leading {
        facts.quorum_ack
    } else {
        facts.leader_heard
    }
    .or(facts.vote_set);
    let silent = heard.unwrap_or(facts.listening).min(facts.listening);
    if silent > bound {
        Verdict::CutOff(silent)
    } else {
        Verdict::Member
    }
}

/// The last verdict, readable without a lock on the request path.
#[derive(Debug, Default)]
pub struct Standing {
    removed: AtomicBool,
    /// Milliseconds without a quorum past the bound; 0 while heard.
    cut_off_ms: AtomicU64,
}

impl Standing {
    /// Whether the cluster removed this node.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// How long this node has heard no quorum, once past the bound.
    pub fn cut_off(&self) -> Option<Duration> {
        match self.cut_off_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    fn set(&self, verdict: Verdict) {
        self.removed
            .store(verdict == Verdict::Removed, Ordering::Relaxed);
        let ms = match verdict {
            Verdict::CutOff(silent) => u64::try_from(silent.as_millis()).unwrap_or(u64::MAX).max(1),
            _ => 0,
        };
        self.cut_off_ms.store(ms, Ordering::Relaxed);
    }
}

/// How often the standing is judged again.
const EVERY: Duration = Duration::from_millis(250);

/// When this node last began listening to its cluster: its start, or the
/// end of a pause that held the whole process (a stop signal, a stalled
/// VM), seen as a sleep of one tick that lasted over three. A leader frozen
/// past the bound wakes with its last quorum long gone; judged on that, it
/// would refuse the writes it was sent while frozen before it could read
/// the heartbeats that depose it. Only the sleep is timed: a slow answer
/// from the Raft core between two sleeps is not a pause.
#[derive(Debug, Clone, Copy)]
struct Listening {
    since: Instant,
}

impl Listening {
    /// Listening from `now`, the node's start.
    fn new(now: Instant) -> Self {
        Self { since: now }
    }

    /// Woken at `now` from a sleep of [`EVERY`] begun at `asleep`: how long
    /// the node has been listening.
    fn woke(&mut self, asleep: Instant, now: Instant) -> Duration {
        if now.saturating_duration_since(asleep) > 3 * EVERY {
            self.since = now;
        }
        now.saturating_duration_since(self.since)
    }
}

/// Judges node `id`'s standing every [`EVERY`] until its Raft stops, and
/// logs each change of verdict.
pub async fn watch(
    id: NodeId,
    raft: Raft,
    standing: Arc<Standing>,
    stranger: Arc<AtomicBool>,
    bound: Duration,
) {
    let mut listening = Listening::new(Instant::now());
    let mut last = Verdict::Member;
    loop {
        let asleep = Instant::now();
        tokio::time::sleep(EVERY).await;
        let listened = listening.woke(asleep, Instant::now());
        let (has_membership, member, leading, quorum_ack) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            let membership = m.membership_config.membership();
            (
                membership.nodes().next().is_some(),
                membership.get_node(&id).is_some(),
                m.state == openraft::ServerState::Leader,
                m.millis_since_quorum_ack.map(Duration::from_millis),
            )
        };
        let Some(heard) = raft::prevote::leader_heard(&raft).await else {
            return;
        };
        let Some(vote_set) = raft::prevote::vote_set(&raft).await else {
            return;
        };
        let facts = Facts {
            has_membership,
            member,
            leading,
            quorum_ack,
            leader_heard: heard,
            vote_set,
            listening: listened,
            refused_as_stranger: stranger.load(Ordering::Relaxed),
        };
        let verdict = judge(&facts, bound);
        standing.set(verdict);
        let changed = !matches!(
            (last, verdict),
            (Verdict::Member, Verdict::Member)
                | (Verdict::Removed, Verdict::Removed)
                | (Verdict::CutOff(_), Verdict::CutOff(_))
        );
        if changed {
            match verdict {
                Verdict::Removed => tracing::error!(
                    "this node was removed from the cluster: it serves nothing more (503) and \
                     campaigns no more; wipe its data dir and add it again to bring it back"
                ),
                Verdict::CutOff(silent) => tracing::warn!(
                    silent_s = silent.as_secs(),
                    "no quorum heard for longer than {bound:?}: serving the last configuration \
                     applied here; /readyz?strict=true answers 503"
                ),
                Verdict::Member => tracing::info!("the cluster is heard again"),
            }
        }
        last = verdict;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    fn follower(heard_s: Option<u64>) -> Facts {
        Facts {
            has_membership: true,
            member: true,
            leading: false,
            quorum_ack: None,
            leader_heard: heard_s.map(Duration::from_secs),
            vote_set: heard_s.map(Duration::from_secs),
            listening: Duration::from_secs(600),
            refused_as_stranger: false,
        }
    }

    #[test]
    fn a_follower_is_cut_off_once_it_hears_no_leader_past_the_bound() {
        assert_eq!(judge(&follower(Some(1)), BOUND), Verdict::Member);
        assert_eq!(judge(&follower(Some(5)), BOUND), Verdict::Member);
        assert_eq!(
            judge(&follower(Some(6)), BOUND),
            Verdict::CutOff(Duration::from_secs(6))
        );
        // Never heard a leader: counted from the start, so a node just
        // started is not cut off at once.
        let fresh = Facts {
            listening: Duration::from_secs(2),
            ..follower(None)
        };
        assert_eq!(judge(&fresh, BOUND), Verdict::Member);
        assert_eq!(
            judge(&follower(None), BOUND),
            Verdict::CutOff(Duration::from_secs(600))
        );
        // Between leaders: it voted for a candidate a second ago (an
        // uncommitted vote), so it is in an election, not cut off.
        let voting = Facts {
            vote_set: Some(Duration::from_secs(1)),
            ..follower(None)
        };
        assert_eq!(judge(&voting, BOUND), Verdict::Member);
        let stale_vote = Facts {
            vote_set: Some(Duration::from_secs(8)),
            ..follower(None)
        };
        assert_eq!(
            judge(&stale_vote, BOUND),
            Verdict::CutOff(Duration::from_secs(8))
        );
    }

    #[test]
    fn an_isolated_leader_is_cut_off_too() {
        let leader = |ack_s: Option<u64>| Facts {
            leading: true,
            quorum_ack: ack_s.map(Duration::from_secs),
            ..follower(None)
        };
        assert_eq!(judge(&leader(Some(0)), BOUND), Verdict::Member);
        // Just elected, no quorum acknowledgement yet: counted from its
        // election, not from the node's start.
        let elected = Facts {
            vote_set: Some(Duration::from_millis(50)),
            ..leader(None)
        };
        assert_eq!(judge(&elected, BOUND), Verdict::Member);
        assert_eq!(
            judge(&leader(Some(30)), BOUND),
            Verdict::CutOff(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_leader_frozen_past_the_bound_is_not_cut_off_as_it_wakes() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut listening = Listening::new(start);
        // Each sleep of 250 ms from the end of the last one (`t`).
        let mut t = 0;
        let mut sleep = |listening: &mut Listening, took: u64| {
            let asleep = t;
            t += took;
            listening.woke(at(asleep), at(t))
        };
        assert_eq!(sleep(&mut listening, 250), Duration::from_millis(250));
        // Late, by less than two ticks: a busy runtime, still listening.
        assert_eq!(sleep(&mut listening, 740), Duration::from_millis(990));
        // Frozen for 30 s in a sleep: it wakes listening afresh.
        let woke = sleep(&mut listening, 30_000);
        assert_eq!(woke, Duration::ZERO);
        let frozen = Facts {
            leading: true,
            quorum_ack: Some(Duration::from_secs(30)),
            listening: woke,
            ..follower(None)
        };
        assert_eq!(judge(&frozen, BOUND), Verdict::Member);
        // Still unheard a bound after it woke: cut off, counted from then.
        for _ in 0..25 {
            sleep(&mut listening, 250);
        }
        let still = Facts {
            listening: sleep(&mut listening, 250),
            ..frozen
        };
        assert_eq!(
            judge(&still, BOUND),
            Verdict::CutOff(Duration::from_millis(6_500))
        );
    }

    #[test]
    fn a_node_the_membership_does_not_name_is_removed() {
        let removed = Facts {
            member: false,
            ..follower(Some(0))
        };
        assert_eq!(judge(&removed, BOUND), Verdict::Removed);
        // Its own membership still names it, but the others refuse it.
        let refused = Facts {
            refused_as_stranger: true,
            ..follower(Some(9))
        };
        assert_eq!(judge(&refused, BOUND), Verdict::Removed);
        // No membership yet (a node waiting to be added) is not removed.
        let waiting = Facts {
            has_membership: false,
            member: false,
            ..follower(None)
        };
        assert_eq!(
            judge(&waiting, BOUND),
            Verdict::CutOff(Duration::from_secs(600))
        );
        let standing = Standing::default();
        standing.set(Verdict::Removed);
        assert!(standing.removed() && standing.cut_off().is_none());
        standing.set(Verdict::CutOff(Duration::from_millis(7300)));
        assert!(!standing.removed());
        assert_eq!(standing.cut_off(), Some(Duration::from_millis(7300)));
        standing.set(Verdict::Member);
        assert_eq!(standing.cut_off(), None);
    }
}
