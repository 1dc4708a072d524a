//! How a cluster-wide limit is split between nodes.
//!
//! Each node may admit, per minute, its share of a key's limit (requests,
//! tokens) and spend its share of the key's balance. The shares come from
//! the replicated state only, so every node at the same applied index
//! computes the same ones, and they sum to exactly one: what the cluster
//! admits cannot exceed the limit by more than what nodes applying a new
//! split at slightly different moments hold at once.
//!
//! A share is a floor plus a part by demand: every participating node
//! keeps [`FLOOR`] of an even split (so a node that starts seeing a key is
//! never at zero before its demand is known), and the rest follows the
//! requests each node was asked recently. A node that has gone silent
//! demands nothing, so the others take over its part; the silent node
//! itself, when it cannot reach the cluster, falls back to its floor
//! (`node/src/tenants`), never to zero and never to unlimited.

use std::collections::BTreeSet;

/// The part of every key's limit split evenly between nodes whatever their
/// demand.
pub const FLOOR: f64 = 0.1;

/// Reports, per participating node, after which a node's demand no longer
/// counts: with one report per node per interval, about this many
/// intervals of silence.
pub const SILENT_INTERVALS: u64 = 10;

/// This node's fraction of a key's limit.
///
/// `participants` are the nodes that split the limit (every member, and
/// this node); `demand` is each node's recent requests per minute for the
/// key (silent ones left out). With no demand anywhere the split is even.
pub fn share(node: u64, participants: &BTreeSet<u64>, demand: &[(u64, u64)]) -> f64 {
    let n = participants.len().max(1) as f64;
    let counted = |id: &u64| participants.contains(id);
    // In u128: a member may report any demand, and a wrapped total
    // would hand out shares above the whole limit.
    let total: u128 = demand
        .iter()
        .filter(|(id, _)| counted(id))
        .map(|(_, d)| u128::from(*d))
        .sum();
    if total == 0 {
        return 1.0 / n;
    }
    let own = demand
        .iter()
        .find(|(id, _)| *id == node)
        .map_or(0, |(_, d)| *d);
    FLOOR / n + (1.0 - FLOOR) * own as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// A member reporting the largest demand a `u64` holds neither
    /// overflows the total nor gives anyone more than the whole limit.
    #[test]
    fn the_largest_demand_does_not_overflow_the_split() {
        let all = nodes(&[1, 2]);
        let demand = [(1, u64::MAX), (2, u64::MAX), (3, 5)];
        let split = share(1, &all, &demand) + share(2, &all, &demand);
        assert!((split - 1.0).abs() < 1e-9, "{split}");
        assert!(share(2, &all, &[(1, u64::MAX), (2, 10)]) < 0.5);
    }

    #[test]
    fn shares_sum_to_one_and_follow_demand() {
        let p = nodes(&[1, 2, 3]);
        let cases: [&[(u64, u64)]; 4] = [
            &[],
            &[(1, 100), (2, 100), (3, 100)],
            &[(1, 1000), (2, 10)],
            &[(2, 5), (9, 1000)],
        ];
        for demand in cases {
            let sum: f64 = p.iter().map(|n| share(*n, &p, demand)).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{demand:?}: {sum}");
        }
        assert!((share(1, &p, &[]) - 1.0 / 3.0).abs() < 1e-9);
        let busy = share(1, &p, &[(1, 1000), (2, 10)]);
        assert!(busy > 0.9 && busy < 0.95, "{busy}");
        let idle = share(3, &p, &[(1, 1000), (2, 10)]);
        assert!((idle - FLOOR / 3.0).abs() < 1e-9, "never zero: {idle}");
        // Demand of a node that is not a participant is not counted.
        assert!((share(2, &p, &[(2, 5), (9, 1000)]) - (FLOOR / 3.0 + 0.9)).abs() < 1e-9);
    }
}
