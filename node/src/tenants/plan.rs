//! This node's allowances per key, computed purely from the applied state
//! (and whether this node's reports have stopped committing): what the
//! request path checks against.

use std::collections::{BTreeSet, HashMap};

use proto::state::ClusterState;
use proto::tenancy::KeyLimits;
use proto::tenancy::share::{FLOOR, SILENT_INTERVALS, share};

/// What this node may admit of one key, until the next rebuild.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Plan {
    /// This node's fraction of the key's limits.
    pub share: f64,
    /// An even split between the participating nodes.
    pub even: f64,
    /// Requests per minute this node may admit (at least one).
    pub rpm: Option<f64>,
    /// Tokens per minute this node may admit (at least one).
    pub tpm: Option<f64>,
    /// What this node may spend of the key's credits.
    pub credits: Option<Allowance>,
}

/// This node's part of a key's balance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Allowance {
    /// What the ledger holds of this node's spending in its current boot,
    /// in nanodollars: spending past it is not yet committed.
    pub held_nanos: u64,
    /// How much spending not yet committed this node may run up:
    /// `share × max(0, balance)`, in nanodollars.
    pub allowance_nanos: f64,
}

impl Allowance {
    /// Whether a node that has spent `spent_nanos` this boot may start
    /// another request: its spending not yet committed is below its
    /// allowance.
    pub fn admits(&self, spent_nanos: u64) -> bool {
        (spent_nanos.saturating_sub(self.held_nanos) as f64) < self.allowance_nanos
    }
}

/// The nodes that split every limit: the announced members and this node.
pub fn participants(state: &ClusterState, node: u64) -> BTreeSet<u64> {
    let mut p: BTreeSet<u64> = state.nodes.keys().copied().collect();
    p.insert(node);
    p
}

/// This node's share of `key`'s limits. `cut_off`: this node's reports
/// have not committed for longer than [`SILENT_INTERVALS`] intervals, so
/// it keeps only its floor (never zero, never everything).
pub fn share_of(state: &ClusterState, node: u64, key: &str, cut_off: bool) -> f64 {
    let p = participants(state, node);
    if cut_off {
        return FLOOR / p.len().max(1) as f64;
    }
    let silent_after = SILENT_INTERVALS.saturating_mul(p.len() as u64);
    let demand: Vec<(u64, u64)> = state.tenancy.demand_of(key, silent_after).collect();
    share(node, &p, &demand)
}

/// What the ledger holds of this node's spending per key, for its boot
/// `boot` (nothing when it holds an older boot's).
pub fn held_by_key(state: &ClusterState, node: u64, boot: u64) -> HashMap<&str, u64> {
    let mut held: HashMap<&str, u64> = HashMap::new();
    if let Some(ledger) = state.tenancy.nodes.get(&node).filter(|l| l.boot == boot) {
        for (cell, counters) in &ledger.last {
            *held.entry(cell.key.as_str()).or_default() += counters.cost_nanos;
        }
    }
    held
}

/// This node's plan for a key with `limits`.
pub fn plan(
    state: &ClusterState,
    node: u64,
    key: &str,
    limits: &KeyLimits,
    held_nanos: u64,
    cut_off: bool,
) -> Plan {
    if !limits.is_rate_limited() && limits.credits_nanos.is_none() {
        return Plan::default();
    }
    let share = share_of(state, node, key, cut_off);
    // At least one per minute per node: a limit smaller than the number of
    // nodes would otherwise admit nothing anywhere.
    let part = |limit: u64| (limit as f64 * share).max(1.0);
    let credits = limits.credits_nanos.map(|opening| {
        let balance = state
            .tenancy
            .credits
            .get(key)
            .map_or(i128::from(opening), |c| c.balance_nanos());
        Allowance {
            held_nanos,
            allowance_nanos: share * balance.max(0) as f64,
        }
    });
    Plan {
        share,
        even: 1.0 / participants(state, node).len().max(1) as f64,
        rpm: limits.rpm.map(part),
        tpm: limits.tpm.map(part),
        credits,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;

    use proto::state::NodeInfo;
    use proto::tenancy::{Counters, TenantReport, UsageBucket};

    use super::*;

    fn state(nodes: &[u64]) -> ClusterState {
        let mut s = ClusterState::default();
        for id in nodes {
            s.nodes.insert(
                *id,
                NodeInfo {
                    admin_addr: String::new(),
                    region: format!("r{id}"),
                },
            );
        }
        s
    }

    fn limits() -> KeyLimits {
        KeyLimits {
            rpm: Some(600),
            tpm: Some(90_000),
            credits_nanos: Some(1_000),
            ..KeyLimits::default()
        }
    }

    fn report(seq: u64, demand: u64, cost: u64) -> TenantReport {
        TenantReport {
            boot: 7,
            seq,
            usage_days: 30,
            demand: BTreeMap::from([("acme".to_owned(), demand)]),
            usage: vec![(
                UsageBucket {
                    key: "acme".into(),
                    day: 1,
                    model: "fast".into(),
                    upstream: "a".into(),
                },
                Counters {
                    requests: 1,
                    cost_nanos: cost,
                    ..Counters::default()
                },
            )],
        }
    }

    #[test]
    fn shares_split_evenly_then_by_demand() {
        let mut s = state(&[1, 2, 3]);
        let even = plan(&s, 1, "acme", &limits(), 0, false);
        assert!((even.share - 1.0 / 3.0).abs() < 1e-9);
        assert!((even.rpm.unwrap() - 200.0).abs() < 1e-9);
        s.tenancy.open("acme", 1_000);
        s.tenancy.report(1, &report(1, 900, 0)).unwrap();
        s.tenancy.report(2, &report(1, 100, 0)).unwrap();
        let busy = plan(&s, 1, "acme", &limits(), 0, false);
        let idle = plan(&s, 3, "acme", &limits(), 0, false);
        assert!((busy.share - (FLOOR / 3.0 + 0.9 * 0.9)).abs() < 1e-9);
        assert!((idle.share - FLOOR / 3.0).abs() < 1e-9, "never zero");
        // A node not yet announced still takes part, as this node.
        let newcomer = plan(&s, 4, "acme", &limits(), 0, false);
        assert!((newcomer.share - FLOOR / 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_cut_off_node_keeps_its_floor() {
        let mut s = state(&[1, 2]);
        s.tenancy.report(1, &report(1, 1000, 0)).unwrap();
        let cut = plan(&s, 1, "acme", &limits(), 0, true);
        assert!((cut.share - FLOOR / 2.0).abs() < 1e-9);
        assert!((cut.rpm.unwrap() - 30.0).abs() < 1e-9);
        let tiny = KeyLimits {
            rpm: Some(1),
            ..KeyLimits::default()
        };
        assert_eq!(plan(&s, 1, "acme", &tiny, 0, true).rpm, Some(1.0));
        // A key without limits plans nothing.
        assert_eq!(
            plan(&s, 1, "acme", &KeyLimits::default(), 0, false),
            Plan::default()
        );
    }

    #[test]
    fn credits_allow_spending_not_yet_committed_up_to_a_share() {
        let mut s = state(&[1]);
        s.tenancy.open("acme", 1_000);
        s.tenancy.report(1, &report(1, 10, 400)).unwrap();
        let held = held_by_key(&s, 1, 7);
        assert_eq!(held.get("acme"), Some(&400));
        assert!(held_by_key(&s, 1, 8).is_empty(), "another boot's readings");
        let p = plan(&s, 1, "acme", &limits(), 400, false);
        let a = p.credits.unwrap();
        assert!((a.allowance_nanos - 600.0).abs() < 1e-9);
        assert!(a.admits(400 + 599));
        assert!(!a.admits(400 + 600));
        // Spent out: nothing more, whatever the share.
        s.tenancy.report(1, &report(2, 10, 1_200)).unwrap();
        let p = plan(&s, 1, "acme", &limits(), 1_200, false);
        assert!(!p.credits.unwrap().admits(1_200));
    }
}
