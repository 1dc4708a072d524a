//! How health is shared: this node's reports go into the Raft log, and the
//! board is rebuilt from every member's as they are applied.
//!
//! Reporting never holds anything up. A report that cannot be committed in
//! time (no leader, no quorum) is dropped and the next one, a report
//! interval later, carries fresher figures anyway; meanwhile the node routes
//! on its own windows and the last board it built.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use proto::health::HealthReport;
use proto::state::Command;
use raft::store::Applied;
use tokio::sync::watch;

use super::board::{self, HealthBoard, Seen};
use super::cooldown;
use super::registry::Registry;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::server;

/// Proposes each report the recorder cuts, numbered after the last one
/// this node sent or the cluster holds from it (a restarted node carries on
/// from the applied state), and records each one's encoded size in
/// `metrics` (what it costs every link). Ends on shutdown or when the
/// recorder stops.
pub async fn report(
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    node_id: u64,
    mut reports: watch::Receiver<Option<Arc<HealthReport>>>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_seq = 0u64;
    let mut failing = false;
    let mut last_empty = false;
    loop {
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            () = server::stopped(&mut stop) => return,
        }
        let Some(cut) = reports.borrow_and_update().clone() else {
            continue;
        };
        // An idle node says so once, not every second.
        let empty = cut.upstreams.is_empty() && cut.cooldowns.is_empty();
        if empty && last_empty && !failing {
            continue;
        }
        let held = cluster
            .applied()
            .state
            .health
            .get(&node_id)
            .map_or(0, |r| r.seq);
        let mut report = HealthReport::clone(&cut);
        report.seq = last_seq.max(held) + 1;
        last_seq = report.seq;
        let seq = report.seq;
        let command = Command::Report {
            id: node_id,
            report,
        };
        if let Ok(bytes) = proto::codec::encoded_len(&command) {
            metrics.health_report.set(bytes);
        }
        let write = cluster.write(command);
        // A report older than two intervals is not worth committing.
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(interval * 2, write) => outcome,
            () = server::stopped(&mut stop) => return,
        };
        match outcome {
            Ok(Ok(_)) => {
                last_empty = empty;
                if failing {
                    tracing::info!(seq, "health reports reach the cluster again");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, seq, "health report not committed; routing on this node's own figures until the cluster is back");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!(
                    seq,
                    "health report not committed in time; routing on this node's own figures until the cluster is back"
                );
            }
            _ => tracing::debug!(seq, "health report not committed"),
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

/// Rebuilds the board whenever a report is applied, and every `interval`
/// besides, so reports age (and stale ones drop out) even when nothing is
/// applied, as on a node cut off from the leader. After each rebuild every
/// upstream of the routing table gets its shared estimate in its live
/// health ([`Registry`]), so the request path reads one value instead of
/// looking the board up. (An upstream new in a rebuilt routing table gets
/// its estimate at the next rebuild, within `interval`; until then it is
/// judged on its own window. One whose configuration changed keeps it.)
pub async fn follow_board(
    mut applied: watch::Receiver<Arc<Applied>>,
    board: Arc<ArcSwap<HealthBoard>>,
    estimates: Estimates,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Arc<Applied>> = None;
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            () = server::stopped(&mut stop) => return,
        }
        let current = applied.borrow_and_update().clone();
        // The cooldowns' clock: a report's cooldowns start when it is
        // first seen, on the clock requests compare them with.
        let now_ms = cooldown::now_ms();
        let same_reports = last
            .as_ref()
            .is_some_and(|l| l.state.health == current.state.health);
        if !same_reports {
            board::note_seen(&mut seen, &current.state.health, now_ms);
        }
        let members: BTreeSet<u64> = current
            .membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let built = HealthBoard::build(&current.state.health, &members, &seen, now_ms);
        let heard = current
            .state
            .health
            .iter()
            .filter(|(id, _)| **id != estimates.node && members.contains(*id))
            .filter_map(|(id, r)| {
                let at = seen.get(id).filter(|s| s.seq == r.seq)?.at_ms;
                Some((at, &r.cooldowns))
            });
        let cooled = cooldown::from_reports(heard, now_ms);
        for (id, live) in estimates.registry.current().iter() {
            let estimate = built.ttfb_estimate(id, &estimates.region, estimates.min_samples);
            live.shared_ttfb.store(estimate.map(Arc::new));
            let until = cooled.get(&**id).copied().unwrap_or(0);
            if until > live.cooldown.until() {
                tracing::info!(upstream = %id, cooldown_ms = until - now_ms,
                    "another node's upstream asked to be left alone (Retry-After): cooled here too");
            }
            live.cooldown.set_shared(until);
        }
        board.store(Arc::new(built));
        last = Some(current);
    }
}
