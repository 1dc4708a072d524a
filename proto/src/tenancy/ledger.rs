//! The replicated ledger: prepaid credits, spending and usage per key,
//! and each node's recent demand.
//!
//! Every node reports cumulative counters for its current process lifetime
//! (a *boot*). The ledger remembers the last reading it applied per node
//! and cell, and adds only the growth past it, so a report committed twice
//! (a retried proposal), overtaken by a newer one, or repeating cells
//! already counted, counts once. A node's new boot starts its counters at
//! zero; the ledger then forgets the old boot's readings (what they counted
//! stays counted) and ignores any late report of that older boot: a spend
//! reported by a process that died before its report committed is lost,
//! never counted twice.
//!
//! Top-ups carry an id chosen by the operator (or the CLI), and the ledger
//! keeps the last [`TOPUP_IDS`] ids of each key, so a retried top-up counts
//! once.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{Counters, TenantReport, UsageBucket};
use crate::error::FieldError;

/// Top-up ids remembered per key, for retries: a top-up retried after
/// more than this many later top-ups of the same key would count again.
pub const TOPUP_IDS: usize = 1024;

/// The most usage cells the ledger keeps; past it, the oldest days go
/// first, so the state and its snapshots stay bounded whatever the traffic.
pub const MAX_USAGE_CELLS: usize = 200_000;

/// Days of usage kept when no report has said otherwise.
pub const DEFAULT_USAGE_DAYS: u32 = 90;

/// A key's prepaid balance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credits {
    /// The opening balance plus every top-up, in nanodollars.
    pub added_nanos: u64,
    /// Every answer's cost since the ledger was opened, in nanodollars.
    pub spent_nanos: u64,
    /// The ids of the latest top-ups, oldest first.
    pub topups: VecDeque<String>,
}

impl Credits {
    /// What is left, in nanodollars; negative when answers in flight as it
    /// ran out cost more than was left.
    pub fn balance_nanos(&self) -> i128 {
        i128::from(self.added_nanos) - i128::from(self.spent_nanos)
    }
}

/// What the ledger holds of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLedger {
    /// The boot its counters belong to.
    pub boot: u64,
    /// The sequence number of its latest applied report in that boot.
    pub seq: u64,
    /// [`Tenancy::reports`] when its latest report was applied: how
    /// recent its demand is, counted in reports the cluster applied since.
    pub at_report: u64,
    /// Its latest demand per key, requests per minute.
    pub demand: BTreeMap<String, u64>,
    /// Its latest cumulative reading per cell, this boot.
    pub last: BTreeMap<UsageBucket, Counters>,
    /// The newest day it has reported a cell of.
    pub day: u32,
}

/// The tenants' part of the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenancy {
    /// Prepaid balances, by key name. Kept when a key is deleted, so
    /// money is never lost by removing and re-adding a key.
    pub credits: BTreeMap<String, Credits>,
    /// Usage per key, day, model and upstream, summed over every node.
    pub usage: BTreeMap<UsageBucket, Counters>,
    /// What each reporting node last said, by node id.
    pub nodes: BTreeMap<u64, NodeLedger>,
    /// Tenant reports applied so far: the ledger's logical clock, which
    /// tells a node that has gone silent from one still reporting.
    pub reports: u64,
    /// The cluster's today: the median of the newest day each node has
    /// reported, so one node with a wrong clock cannot make the ledger
    /// drop the days everyone else still counts.
    pub today: u32,
    /// Cells before this day have been dropped.
    pub pruned_before: u32,
}

impl Tenancy {
    /// Opens a key's ledger with its opening balance, unless it has one.
    /// Returns whether anything changed.
    pub fn open(&mut self, key: &str, opening_nanos: u64) -> bool {
        if self.credits.contains_key(key) {
            return false;
        }
        self.credits.insert(
            key.to_owned(),
            Credits {
                added_nanos: opening_nanos,
                ..Credits::default()
            },
        );
        true
    }

    /// Adds a top-up to a key's ledger, which must be open. `Ok(false)`:
    /// a top-up with that id was applied already.
    pub fn top_up(&mut self, key: &str, id: &str, nanos: u64) -> Result<bool, FieldError> {
        super::check_token("id", id, 128)?;
        let Some(credits) = self.credits.get_mut(key) else {
            return Err(FieldError::new(
                "key",
                format!("`{key}` has no prepaid balance: give the key `credits_usd` first"),
            ));
        };
        if credits.topups.iter().any(|seen| seen == id) {
            return Ok(false);
        }
        credits.added_nanos = credits.added_nanos.checked_add(nanos).ok_or_else(|| {
            FieldError::new("add_usd", "the balance would exceed what a ledger holds")
        })?;
        credits.topups.push_back(id.to_owned());
        while credits.topups.len() > TOPUP_IDS {
            credits.topups.pop_front();
        }
        Ok(true)
    }

    /// Applies one node's report. Returns whether anything changed.
    pub fn report(&mut self, node: u64, report: &TenantReport) -> Result<bool, FieldError> {
        check_report(report)?;
        let entry = self.nodes.entry(node).or_default();
        if report.boot < entry.boot {
            // A late report of a lifetime that has ended: its counters
            // would restart a reading already folded in.
            return Ok(false);
        }
        if report.boot > entry.boot {
            *entry = NodeLedger {
                boot: report.boot,
                day: entry.day,
                ..NodeLedger::default()
            };
        }
        self.reports += 1;
        if report.seq > entry.seq {
            entry.seq = report.seq;
            entry.demand = report.demand.clone();
            entry.at_report = self.reports;
        }
        let oldest = self.today.saturating_sub(report.usage_days);
        if let Some(newest) = report.usage.iter().map(|(c, _)| c.day).max() {
            entry.day = entry.day.max(newest);
        }
        for (cell, reading) in &report.usage {
            if cell.day < oldest {
                continue;
            }
            let last = entry.last.entry(cell.clone()).or_default();
            let growth = reading.growth_since(last);
            *last = last.max(reading);
            if growth == Counters::default() {
                continue;
            }
            self.usage.entry(cell.clone()).or_default().add(&growth);
            if let Some(credits) = self.credits.get_mut(&cell.key) {
                credits.spent_nanos = credits.spent_nanos.saturating_add(growth.cost_nanos);
            }
        }
        let mut days: Vec<u32> = self.nodes.values().map(|n| n.day).collect();
        days.sort_unstable();
        // The lower median: with two nodes, the one behind.
        let median = days.get(days.len().saturating_sub(1) / 2).copied();
        self.today = self.today.max(median.unwrap_or(0));
        self.prune(report.usage_days);
        Ok(true)
    }

    /// Drops cells older than `days` before today, and the oldest days
    /// past [`MAX_USAGE_CELLS`]. Walks the cells only when there is
    /// something to drop, not on every report.
    fn prune(&mut self, days: u32) {
        let mut oldest = self.today.saturating_sub(days);
        if oldest <= self.pruned_before && self.usage.len() <= MAX_USAGE_CELLS {
            return;
        }
        while self.usage.len() > MAX_USAGE_CELLS {
            // The days are not the map's order: find the oldest one held.
            let Some(day) = self.usage.keys().map(|c| c.day).min() else {
                break;
            };
            oldest = oldest.max(day.saturating_add(1));
            let before = self.usage.len();
            self.usage.retain(|c, _| c.day >= oldest);
            if self.usage.len() == before {
                // Every cell is on the last day a `u32` holds (refused by
                // `check_report`): nothing older is left to drop.
                break;
            }
        }
        self.usage.retain(|c, _| c.day >= oldest);
        for node in self.nodes.values_mut() {
            node.last.retain(|c, _| c.day >= oldest);
        }
        self.pruned_before = self.pruned_before.max(oldest);
    }

    /// Whether a key's prepaid balance is kept (opened by a key with
    /// `credits_usd`): only those can be topped up.
    pub fn has_ledger(&self, key: &str) -> bool {
        self.credits.contains_key(key)
    }

    /// A key's recent demand on each node still reporting: the input of
    /// the shares ([`super::share`]). A node whose last report is more than
    /// `silent_after` reports old has gone silent and demands nothing.
    pub fn demand_of<'a>(
        &'a self,
        key: &'a str,
        silent_after: u64,
    ) -> impl Iterator<Item = (u64, u64)> + 'a {
        self.nodes.iter().filter_map(move |(id, node)| {
            let fresh = self.reports.saturating_sub(node.at_report) <= silent_after;
            let demand = node.demand.get(key).copied().unwrap_or(0);
            (fresh && demand > 0).then_some((*id, demand))
        })
    }
}

/// The latest day a usage cell may name: days since 1970, about the year
/// 4700. Past it a cell is a lie, and one on `u32::MAX` could never be
/// pruned by age.
const MAX_DAY: u32 = 1_000_000;

fn check_report(report: &TenantReport) -> Result<(), FieldError> {
    if report.usage.len() > super::MAX_REPORT_CELLS {
        return Err(FieldError::new(
            "usage",
            format!("more than {} cells", super::MAX_REPORT_CELLS),
        ));
    }
    if !(1..=crate::config::TenantsConfig::MAX_USAGE_DAYS).contains(&report.usage_days) {
        // Applied to every node's cells, not only the reporter's: 0 would
        // erase everyone's history but today's.
        return Err(FieldError::new(
            "usage_days",
            format!(
                "must be between 1 and {}",
                crate::config::TenantsConfig::MAX_USAGE_DAYS
            ),
        ));
    }
    if let Some(cell) = report.usage.iter().find(|(c, _)| c.day > MAX_DAY) {
        return Err(FieldError::new(
            "usage",
            format!("day {} is past {MAX_DAY}", cell.0.day),
        ));
    }
    if report.demand.len() > super::MAX_REPORT_CELLS {
        return Err(FieldError::new(
            "demand",
            format!("more than {} keys", super::MAX_REPORT_CELLS),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn cell(key: &str, day: u32) -> UsageBucket {
        UsageBucket {
            key: key.into(),
            day,
            model: "fast".into(),
            upstream: "a".into(),
        }
    }

    fn reading(requests: u64, cost_nanos: u64) -> Counters {
        Counters {
            requests,
            input_tokens: requests * 10,
            output_tokens: requests * 5,
            cost_nanos,
        }
    }

    /// A member's hostile reports: a day no clock reaches, or a
    /// retention of zero days, are refused with nothing applied; the
    /// ledger is as before.
    #[test]
    fn a_report_with_an_impossible_day_or_retention_is_refused() {
        let mut ledger = Tenancy::default();
        let one = Counters {
            requests: 1,
            ..Counters::default()
        };
        ledger
            .report(1, &report(1, 1, &[(cell("acme", 20_000), one)]))
            .unwrap();
        let before = ledger.clone();
        let far = report(1, 2, &[(cell("acme", u32::MAX), one)]);
        assert_eq!(ledger.report(2, &far).unwrap_err().field, "usage");
        let mut erase = report(1, 2, &[]);
        erase.usage_days = 0;
        assert_eq!(ledger.report(2, &erase).unwrap_err().field, "usage_days");
        assert_eq!(ledger, before);
    }

    /// Pruning ends even when every cell is on the last day a `u32`
    /// holds (cells a report can no longer carry, but a ledger may).
    #[test]
    fn pruning_ends_when_every_cell_is_on_the_last_day() {
        let mut ledger = Tenancy::default();
        for i in 0..=MAX_USAGE_CELLS {
            let mut c = cell("acme", u32::MAX);
            c.model = format!("m{i}");
            ledger.usage.insert(c, Counters::default());
        }
        ledger.prune(30);
        assert_eq!(ledger.usage.len(), MAX_USAGE_CELLS + 1);
    }

    fn report(boot: u64, seq: u64, cells: &[(UsageBucket, Counters)]) -> TenantReport {
        TenantReport {
            boot,
            seq,
            usage_days: 30,
            demand: BTreeMap::from([("acme".to_owned(), 60)]),
            usage: cells.to_vec(),
        }
    }

    #[test]
    fn a_report_applied_twice_counts_once() {
        let mut t = Tenancy::default();
        t.open("acme", 1_000);
        let r = report(1, 1, &[(cell("acme", 100), reading(3, 30))]);
        t.report(7, &r).unwrap();
        t.report(7, &r).unwrap();
        assert_eq!(t.usage[&cell("acme", 100)], reading(3, 30));
        assert_eq!(t.credits["acme"].spent_nanos, 30);
        // A newer reading adds only its growth; an older one overtaken by
        // it (committed late) adds nothing.
        t.report(7, &report(1, 3, &[(cell("acme", 100), reading(5, 50))]))
            .unwrap();
        t.report(7, &report(1, 2, &[(cell("acme", 100), reading(4, 40))]))
            .unwrap();
        assert_eq!(t.usage[&cell("acme", 100)], reading(5, 50));
        assert_eq!(t.credits["acme"].balance_nanos(), 950);
    }

    #[test]
    fn a_new_boot_starts_over_and_a_dead_one_is_ignored() {
        let mut t = Tenancy::default();
        t.open("acme", 1_000);
        t.report(7, &report(1, 9, &[(cell("acme", 100), reading(5, 50))]))
            .unwrap();
        // Restarted: its counters begin at zero again.
        t.report(7, &report(2, 1, &[(cell("acme", 100), reading(2, 20))]))
            .unwrap();
        assert_eq!(t.usage[&cell("acme", 100)], reading(7, 70));
        // A report of the dead process, committed late, counts nothing.
        t.report(7, &report(1, 10, &[(cell("acme", 100), reading(9, 90))]))
            .unwrap();
        assert_eq!(t.usage[&cell("acme", 100)], reading(7, 70));
        assert_eq!(t.credits["acme"].spent_nanos, 70);
        // Two nodes add up.
        t.report(8, &report(1, 1, &[(cell("acme", 100), reading(1, 10))]))
            .unwrap();
        assert_eq!(t.usage[&cell("acme", 100)], reading(8, 80));
    }

    #[test]
    fn top_ups_count_once_by_id() {
        let mut t = Tenancy::default();
        assert!(t.open("acme", 5));
        assert!(!t.open("acme", 1_000), "a ledger opens once");
        assert!(t.top_up("acme", "t-1", 10).unwrap());
        assert!(!t.top_up("acme", "t-1", 10).unwrap());
        assert_eq!(t.credits["acme"].added_nanos, 15);
        assert!(t.top_up("acme", "bad id", 10).is_err());
        assert!(t.top_up("acme", "t-2", u64::MAX).is_err());
        assert_eq!(t.credits["acme"].added_nanos, 15, "a refusal adds nothing");
        for i in 0..TOPUP_IDS + 5 {
            t.top_up("acme", &format!("n{i}"), 1).unwrap();
        }
        assert_eq!(t.credits["acme"].topups.len(), TOPUP_IDS);
    }

    #[test]
    fn one_wrong_clock_drops_nothing() {
        let mut t = Tenancy::default();
        t.report(1, &report(1, 1, &[(cell("acme", 100), reading(1, 0))]))
            .unwrap();
        t.report(2, &report(1, 1, &[(cell("acme", 100), reading(1, 0))]))
            .unwrap();
        t.report(3, &report(1, 1, &[(cell("acme", 9_999), reading(1, 0))]))
            .unwrap();
        assert_eq!(t.today, 100);
        assert!(t.usage.contains_key(&cell("acme", 100)));
        assert!(t.top_up("nobody", "t", 1).is_err(), "no ledger, no top-up");
    }

    #[test]
    fn old_days_are_dropped() {
        let mut t = Tenancy::default();
        t.report(7, &report(1, 1, &[(cell("acme", 10), reading(1, 0))]))
            .unwrap();
        t.report(7, &report(1, 2, &[(cell("acme", 50), reading(1, 0))]))
            .unwrap();
        assert!(
            !t.usage.contains_key(&cell("acme", 10)),
            "older than 30 days"
        );
        assert!(t.usage.contains_key(&cell("acme", 50)));
        // A cell older than the window is not counted at all.
        t.report(7, &report(1, 3, &[(cell("acme", 11), reading(1, 0))]))
            .unwrap();
        assert!(!t.usage.contains_key(&cell("acme", 11)));
        assert!(t.nodes[&7].last.keys().all(|c| c.day >= 20));
    }

    #[test]
    fn silent_nodes_demand_nothing() {
        let mut t = Tenancy::default();
        t.report(1, &report(1, 1, &[])).unwrap();
        for seq in 2..10 {
            t.report(2, &report(1, seq, &[])).unwrap();
        }
        let demand: Vec<_> = t.demand_of("acme", 4).collect();
        assert_eq!(
            demand,
            vec![(2, 60)],
            "node 1 has been silent for 8 reports"
        );
        let demand: Vec<_> = t.demand_of("acme", 100).collect();
        assert_eq!(demand, vec![(1, 60), (2, 60)]);
    }
}
