//! How health is shared: this node sends each report it cuts straight to
//! every other member (see [`super::peers`] for why not through the log),
//! and the board is rebuilt from everyone's as they arrive.
//!
//! Reporting never holds anything up. Each member has its own sender, which
//! always sends the newest report: a member that is slow or unreachable
//! holds up no other, and a report it could not take in time is replaced by
//! the next, an interval later. Meanwhile every node routes on its own
//! windows and the last board it built.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use proto::health::HealthReport;
use proto::state::Member;
use raft::store::Applied;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::board::HealthBoard;
use super::cooldown;
use super::peers::{Received, Reports};
use super::registry::Registry;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::server;

/// The newest report for one member, and where to send it.
type Outgoing = Option<(Member, Arc<HealthReport>)>;

/// Where reports go: this node's own board, and every other member.
pub struct Outbox {
    /// This node's cluster: its members, and the transport to them.
    pub cluster: Arc<Cluster>,
    /// Where each report's encoded size is recorded (what it costs a link).
    pub metrics: Arc<Metrics>,
    /// The reports this node holds, its own included.
    pub reports: Arc<Reports>,
    /// This node's id.
    pub node_id: u64,
}

/// Numbers each report the recorder cuts, files it on this node's own board
/// and hands it to each member's sender. Numbers start from the wall clock
/// in milliseconds, so a restarted node's reports replace its old ones on
/// every member without anything stored. Ends on shutdown or when the
/// recorder stops; every sender ends with it.
pub async fn report(
    outbox: Outbox,
    mut cuts: watch::Receiver<Option<Arc<HealthReport>>>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Outbox {
        cluster,
        metrics,
        reports,
        node_id,
    } = outbox;
    let mut seq = 0u64;
    let mut links: BTreeMap<u64, watch::Sender<Outgoing>> = BTreeMap::new();
    let mut senders = JoinSet::new();
    loop {
        tokio::select! {
            changed = cuts.changed() => if changed.is_err() { return },
            () = server::stopped(&mut stop) => return,
        }
        let Some(cut) = cuts.borrow_and_update().clone() else {
            continue;
        };
        seq = next_seq(seq, unix_ms());
        let mut report = HealthReport::clone(&cut);
        report.seq = seq;
        if let Ok(bytes) = proto::codec::encoded_len(&report) {
            metrics.health_report.set(bytes);
        }
        let report = Arc::new(report);
        if let Err(e) = reports.take(node_id, HealthReport::clone(&report), cooldown::now_ms()) {
            tracing::warn!(error = %e, seq, "this node's own health report was not taken");
        }
        let applied = cluster.applied();
        let members: BTreeMap<u64, Member> = applied
            .membership
            .membership()
            .nodes()
            .filter(|(id, _)| **id != node_id)
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        // A member removed: its sender ends once its send in flight does.
        links.retain(|id, _| members.contains_key(id));
        while senders.try_join_next().is_some() {}
        for (id, member) in members {
            let link = links.entry(id).or_insert_with(|| {
                let (tx, rx) = watch::channel(None);
                senders.spawn(send_to(cluster.clone(), id, rx, interval * 2));
                tx
            });
            link.send_replace(Some((member, report.clone())));
        }
    }
}

/// The number of the report after `last`, cut at `now_unix_ms`: the wall
/// clock when it is ahead, so numbers grow across restarts, and one more
/// than the last when it is not (a clock set back never reuses a number).
pub fn next_seq(last: u64, now_unix_ms: u64) -> u64 {
    now_unix_ms.max(last.saturating_add(1))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Sends member `peer` the newest report handed over, each within `ttl`;
/// reports handed over while one is in flight are skipped for the newest.
/// Says once when the member stops taking them and once when it takes them
/// again. Ends when its member is removed or reporting stops.
async fn send_to(
    cluster: Arc<Cluster>,
    peer: u64,
    mut newest: watch::Receiver<Outgoing>,
    ttl: Duration,
) {
    let mut failing = false;
    while newest.changed().await.is_ok() {
        let Some((member, report)) = newest.borrow_and_update().clone() else {
            continue;
        };
        let seq = report.seq;
        match cluster
            .send_health(peer, &member, HealthReport::clone(&report), ttl)
            .await
        {
            Ok(()) => {
                if failing {
                    tracing::info!(peer, seq, "health reports reach this member again");
                }
                failing = false;
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(peer, seq, %error, "health report not taken; this member routes on older figures from this node until it takes one again");
            }
            Err(error) => tracing::debug!(peer, seq, %error, "health report not taken"),
        }
    }
}

/// Where the board's figures go for the router.
pub struct Estimates {
    /// Every upstream's live health: each upstream of the routing table
    /// gets its estimate there.
    pub registry: Arc<Registry>,
    /// This node's region.
    pub region: String,
    /// Samples a region's (or the cluster's) figures need to count.
    pub min_samples: u64,
    /// This node's id: its own report's cooldowns are already in force
    /// here, and are not started again from the report.
    pub node: u64,
}

/// Rebuilds the board whenever a report arrives, at most every quarter
/// `interval` (a rebuild merges every member's histograms; twenty members
/// reporting each second must not mean twenty rebuilds), and every
/// `interval` besides, so reports age (and stale ones drop out) even when
/// none arrive, as on a node cut off from the others. A cooldown in a report
/// is started at once, not at the next rebuild. After each rebuild every
/// upstream of the routing table gets its shared estimate in its live
/// health ([`Registry`]), so the request path reads one value instead of
/// looking the board up. (An upstream new in a rebuilt routing table gets
/// its estimate at the next rebuild, within `interval`; until then it is
/// judged on its own window. One whose configuration changed keeps it.)
pub async fn follow_board(
    mut applied: watch::Receiver<Arc<Applied>>,
    reports: Arc<Reports>,
    board: Arc<ArcSwap<HealthBoard>>,
    estimates: Estimates,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut arrived = reports.subscribe();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let settle = interval / 4;
    let mut next_build = tokio::time::Instant::now();
    let mut pending = true;
    loop {
        tokio::select! {
            changed = arrived.changed() => if changed.is_err() { return } else { pending = true },
            changed = applied.changed() => if changed.is_err() { return } else { pending = true },
            _ = tick.tick() => pending = true,
            () = tokio::time::sleep_until(next_build), if pending => {}
            () = server::stopped(&mut stop) => return,
        }
        let current = applied.borrow_and_update().clone();
        let members: BTreeSet<u64> = current
            .membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        reports.retain(|id| members.contains(&id));
        let held = arrived.borrow_and_update().clone();
        // The cooldowns' clock: reports were timed on it as they arrived.
        let now_ms = cooldown::now_ms();
        cool(&estimates, &held, &members, now_ms);
        if pending && tokio::time::Instant::now() >= next_build {
            let built = HealthBoard::build(&held, &members, now_ms);
            for (id, live) in estimates.registry.current().iter() {
                let estimate = built.ttfb_estimate(id, &estimates.region, estimates.min_samples);
                live.publish_shared(estimate);
            }
            board.store(Arc::new(built));
            pending = false;
            next_build = tokio::time::Instant::now() + settle;
        }
    }
}

/// Starts on every upstream of the routing table the cooldowns other
/// members' reports asked for, counted from when each report arrived.
fn cool(
    estimates: &Estimates,
    held: &BTreeMap<u64, Arc<Received>>,
    members: &BTreeSet<u64>,
    now_ms: u64,
) {
    let heard = held
        .iter()
        .filter(|(id, _)| **id != estimates.node && members.contains(*id))
        .map(|(_, r)| (r.at_ms, &r.cooldowns));
    let cooled = cooldown::from_reports(heard, now_ms);
    for (id, live) in estimates.registry.current().iter() {
        let until = cooled.get(&**id).copied().unwrap_or(0);
        if until > live.cooldown.until() {
            tracing::info!(upstream = %id, cooldown_ms = until - now_ms,
                "another node's upstream asked to be left alone (Retry-After): cooled here too");
        }
        live.cooldown.set_shared(until);
    }
}

#[cfg(test)]
mod tests {
    use super::next_seq;

    #[test]
    fn report_numbers_follow_the_wall_clock_and_never_repeat() {
        // The first report of a process: the wall clock.
        assert_eq!(next_seq(0, 1_700_000_000_000), 1_700_000_000_000);
        // Two cuts within a millisecond, or a clock set back: one more.
        assert_eq!(
            next_seq(1_700_000_000_000, 1_700_000_000_000),
            1_700_000_000_001
        );
        assert_eq!(next_seq(1_700_000_000_000, 5), 1_700_000_000_001);
        // No clock at all (before 1970) still counts up; the largest stays.
        assert_eq!(next_seq(41, 0), 42);
        assert_eq!(next_seq(u64::MAX, 0), u64::MAX);
    }
}
