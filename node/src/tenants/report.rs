//! The tenants' tasks: reporting this node's usage and demand through Raft
//! (`Command::Tenancy`), and rebuilding every key's state as the applied
//! state changes and as time passes.
//!
//! A report goes every report interval while any key has demand here or a
//! usage cell not yet committed (and once more when the demand stops, so
//! the cluster learns it). Its cells are cumulative for this boot, so one
//! that does not commit is sent again in the next report and counted once
//! (the ledger takes the growth past what it holds). A failure is logged
//! once, like the health reports; while reports fail for longer than
//! `SILENT_INTERVALS` intervals the node keeps only its floor of each
//! limit (see the module above).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::state::{Command, CommandResponse};
use proto::tenancy::TenantReport;
use raft::store::Applied;
use tokio::sync::watch;

use super::cells::DAY_MS;
use super::{Tenants, now_ms};
use crate::cluster::Cluster;
use crate::server;

impl Tenants {
    /// The next report at `now_ms`, if there is anything to say: this
    /// node's demand and its cells not yet committed. `seq` numbers it.
    pub(super) fn next_report(
        &self,
        now_ms: u64,
        seq: u64,
        usage_days: u32,
        had_demand: bool,
    ) -> Option<TenantReport> {
        let demand = self.demand(now_ms);
        let usage = self.cells.dirty();
        if demand.is_empty() && usage.is_empty() && !had_demand {
            return None;
        }
        Some(TenantReport {
            boot: self.boot,
            seq,
            usage_days,
            demand,
            usage,
        })
    }

    /// A report was committed (or not) at `now_ms`.
    pub(super) fn reported(&self, report: Option<&TenantReport>, now_ms: u64, usage_days: u32) {
        match report {
            Some(report) => {
                self.cells
                    .committed(&report.usage, (now_ms / DAY_MS) as u32, usage_days);
                self.failing_since.store(0, Ordering::Relaxed);
            }
            None => {
                let _ = self.failing_since.compare_exchange(
                    0,
                    now_ms.max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// The sequence number of this boot's last report the cluster holds.
    fn held_seq(&self, applied: &Applied) -> u64 {
        applied
            .state
            .tenancy
            .nodes
            .get(&self.node)
            .filter(|n| n.boot == self.boot)
            .map_or(0, |n| n.seq)
    }
}

/// Proposes this node's tenancy report every `interval` while there is
/// something to report. Ends on shutdown.
pub async fn report(
    cluster: Arc<Cluster>,
    tenants: Arc<Tenants>,
    interval: Duration,
    usage_days: u32,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seq = 0u64;
    let mut had_demand = false;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = server::stopped(&mut stop) => return,
        }
        let now = now_ms();
        let seq = last_seq.max(tenants.held_seq(&cluster.applied())) + 1;
        let Some(report) = tenants.next_report(now, seq, usage_days, had_demand) else {
            continue;
        };
        last_seq = seq;
        let demand = !report.demand.is_empty();
        let write = cluster.write(Command::Tenancy {
            id: tenants.node,
            report: report.clone(),
        });
        // A report older than two intervals is not worth committing: the
        // next one carries the same cells, fresher.
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(interval * 2, write) => outcome,
            () = server::stopped(&mut stop) => return,
        };
        let error = match outcome {
            Ok(Ok(CommandResponse::Applied { .. })) => None,
            Ok(Ok(CommandResponse::Rejected(e))) => Some(e.to_string()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("not committed in time".to_owned()),
        };
        match error {
            None => {
                tenants.reported(Some(&report), now_ms(), usage_days);
                had_demand = demand;
                if failing {
                    tracing::info!(seq, "tenancy reports reach the cluster again");
                }
                failing = false;
            }
            Some(error) => {
                tenants.reported(None, now, usage_days);
                if !failing {
                    failing = true;
                    tracing::warn!(
                        %error, seq,
                        "tenancy report not committed; usage is sent again with the next one, and \
                         limits hold this node's last share (its floor if this lasts)"
                    );
                } else {
                    tracing::debug!(%error, seq, "tenancy report not committed");
                }
            }
        }
    }
}

/// Rebuilds every key's state whenever the applied state changes, and
/// every `interval` besides, so a node cut off from the cluster falls back
/// to its floor in time even when nothing is applied.
pub async fn follow(
    tenants: Arc<Tenants>,
    mut applied: watch::Receiver<Arc<Applied>>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            () = server::stopped(&mut stop) => return,
        }
        let current = applied.borrow_and_update().clone();
        tenants.rebuild(current, now_ms());
    }
}
