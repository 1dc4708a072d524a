//! Per-link fault rules and their evaluation, kept pure (a rule set and a
//! random source in, a verdict out) so the proxies stay dumb and the logic
//! is unit tested.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rand::Rng;

/// A directed link, `(from, to)` node ids (1-based; 0 is "not a node").
pub type Link = (u64, u64);

/// What a rule does to the packets of its links.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEffect {
    /// Drop every packet.
    Drop,
    /// Drop each packet with this probability.
    Loss(f64),
    /// Delay each packet by `ms` ± `jitter_ms` (uniform), never below zero.
    Delay {
        /// Base one-way delay.
        ms: f64,
        /// Half-width of the uniform jitter.
        jitter_ms: f64,
    },
}

/// A fault on a set of directed links; `id` groups the rules of one fault
/// so they are removed together.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRule {
    /// The fault this rule belongs to.
    pub id: u64,
    /// The directed links it applies to.
    pub links: BTreeSet<Link>,
    /// What it does.
    pub effect: LinkEffect,
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered after this delay (zero: at once).
    Deliver(Duration),
    /// Dropped.
    Drop,
}

/// The rules in force; evaluation is a pure function of them and `rng`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    rules: Vec<LinkRule>,
}

impl Rules {
    /// The rules, in the order they were added.
    pub fn rules(&self) -> &[LinkRule] {
        &self.rules
    }

    /// Decides one packet from `from` to `to`: dropped if any matching rule
    /// drops it (partitions first, then one loss draw per loss rule), else
    /// delayed by the sum of the matching delays. Packets of unknown
    /// senders (id 0) and between a node and itself pass untouched.
    pub fn evaluate<R: Rng + ?Sized>(&self, from: u64, to: u64, rng: &mut R) -> Verdict {
        if from == 0 || to == 0 || from == to {
            return Verdict::Deliver(Duration::ZERO);
        }
        let link = (from, to);
        let matching = || self.rules.iter().filter(move |r| r.links.contains(&link));
        if matching().any(|r| r.effect == LinkEffect::Drop) {
            return Verdict::Drop;
        }
        let mut delay_ms = 0.0;
        for rule in matching() {
            match rule.effect {
                LinkEffect::Drop => return Verdict::Drop,
                LinkEffect::Loss(p) => {
                    if rng.random::<f64>() < p {
                        return Verdict::Drop;
                    }
                }
                LinkEffect::Delay { ms, jitter_ms } => {
                    let jitter = if jitter_ms > 0.0 {
                        rng.random_range(-jitter_ms..=jitter_ms)
                    } else {
                        0.0
                    };
                    delay_ms += (ms + jitter).max(0.0);
                }
            }
        }
        Verdict::Deliver(Duration::from_secs_f64(delay_ms / 1_000.0))
    }
}

/// Expands a fault's node sets into directed links: every `from` → `to`
/// pair of distinct nodes, plus the replies (`to` → `from`) unless `oneway`.
pub fn links(from: &BTreeSet<u64>, to: &BTreeSet<u64>, oneway: bool) -> BTreeSet<Link> {
    let mut out = BTreeSet::new();
    for &f in from {
        for &t in to {
            if f != t {
                out.insert((f, t));
                if !oneway {
                    out.insert((t, f));
                }
            }
        }
    }
    out
}

/// Rules for an inter-region WAN: each unordered pair of distinct nodes in
/// `links` gets one round trip drawn uniformly from `[rtt_min, rtt_max]` ms
/// (so a pair keeps its distance for the whole fault), half of it each way,
/// plus ± `jitter` ms per packet.
pub fn wan_rules<R: Rng + ?Sized>(
    id: u64,
    links: &BTreeSet<Link>,
    rtt_min: f64,
    rtt_max: f64,
    jitter: f64,
    rng: &mut R,
) -> Vec<LinkRule> {
    let pairs: BTreeSet<Link> = links.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
    let mut rules = Vec::new();
    for (a, b) in pairs {
        let rtt = if rtt_max > rtt_min {
            rng.random_range(rtt_min..=rtt_max)
        } else {
            rtt_min
        };
        let directed: BTreeSet<Link> = [(a, b), (b, a)]
            .into_iter()
            .filter(|l| links.contains(l))
            .collect();
        rules.push(LinkRule {
            id,
            links: directed,
            effect: LinkEffect::Delay {
                ms: rtt / 2.0,
                jitter_ms: jitter,
            },
        });
    }
    rules
}

/// The rules shared by every proxy of a cluster: the runner adds and
/// removes faults, the proxies read a snapshot per packet.
#[derive(Debug, Clone, Default)]
pub struct LinkTable {
    current: Arc<RwLock<Arc<Rules>>>,
}

impl LinkTable {
    /// The rules in force now.
    pub fn snapshot(&self) -> Arc<Rules> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds rules.
    pub fn add(&self, rules: Vec<LinkRule>) {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = (**guard).clone();
        next.rules.extend(rules);
        *guard = Arc::new(next);
    }

    /// Removes every rule of fault `id`.
    pub fn remove(&self, id: u64) {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = (**guard).clone();
        next.rules.retain(|r| r.id != id);
        *guard = Arc::new(next);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Rules::default());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn rule(id: u64, links: BTreeSet<Link>, effect: LinkEffect) -> LinkRule {
        LinkRule { id, links, effect }
    }

    #[test]
    fn no_rules_deliver_at_once() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            Rules::default().evaluate(1, 2, &mut rng),
            Verdict::Deliver(Duration::ZERO)
        );
    }

    #[test]
    fn links_expand_both_ways_unless_oneway() {
        let both = links(&set(&[1]), &set(&[2, 3]), false);
        assert_eq!(both, [(1, 2), (1, 3), (2, 1), (3, 1)].into_iter().collect());
        let one = links(&set(&[1]), &set(&[2, 3]), true);
        assert_eq!(one, [(1, 2), (1, 3)].into_iter().collect());
        // A node is never linked to itself.
        let all = links(&set(&[1, 2]), &set(&[1, 2]), false);
        assert_eq!(all, [(1, 2), (2, 1)].into_iter().collect());
    }

    #[test]
    fn partition_drops_matching_links_only() {
        let table = LinkTable::default();
        table.add(vec![rule(
            7,
            links(&set(&[1]), &set(&[2, 3]), false),
            LinkEffect::Drop,
        )]);
        let rules = table.snapshot();
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(rules.evaluate(1, 2, &mut rng), Verdict::Drop);
        assert_eq!(rules.evaluate(3, 1, &mut rng), Verdict::Drop);
        assert_eq!(
            rules.evaluate(2, 3, &mut rng),
            Verdict::Deliver(Duration::ZERO)
        );
        // Unknown senders are never touched.
        assert_eq!(
            rules.evaluate(0, 1, &mut rng),
            Verdict::Deliver(Duration::ZERO)
        );
        table.remove(7);
        assert_eq!(
            table.snapshot().evaluate(1, 2, &mut rng),
            Verdict::Deliver(Duration::ZERO)
        );
    }

    #[test]
    fn oneway_partition_keeps_the_other_direction() {
        let rules = Rules {
            rules: vec![rule(
                1,
                links(&set(&[1]), &set(&[2]), true),
                LinkEffect::Drop,
            )],
        };
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(rules.evaluate(1, 2, &mut rng), Verdict::Drop);
        assert_eq!(
            rules.evaluate(2, 1, &mut rng),
            Verdict::Deliver(Duration::ZERO)
        );
    }

    #[test]
    fn loss_drops_about_its_share() {
        let rules = Rules {
            rules: vec![rule(
                1,
                links(&set(&[1]), &set(&[2]), false),
                LinkEffect::Loss(0.2),
            )],
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let dropped = (0..10_000)
            .filter(|_| rules.evaluate(1, 2, &mut rng) == Verdict::Drop)
            .count();
        assert!((1_800..2_200).contains(&dropped), "{dropped}");
    }

    #[test]
    fn delays_add_up_with_bounded_jitter() {
        let l = links(&set(&[1]), &set(&[2]), false);
        let rules = Rules {
            rules: vec![
                rule(
                    1,
                    l.clone(),
                    LinkEffect::Delay {
                        ms: 40.0,
                        jitter_ms: 5.0,
                    },
                ),
                rule(
                    2,
                    l,
                    LinkEffect::Delay {
                        ms: 10.0,
                        jitter_ms: 0.0,
                    },
                ),
            ],
        };
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..1_000 {
            let Verdict::Deliver(d) = rules.evaluate(2, 1, &mut rng) else {
                panic!("dropped");
            };
            let ms = d.as_secs_f64() * 1_000.0;
            assert!((45.0..=55.0).contains(&ms), "{ms}");
        }
    }

    #[test]
    fn drop_wins_over_delay() {
        let l = links(&set(&[1]), &set(&[2]), false);
        let rules = Rules {
            rules: vec![
                rule(
                    1,
                    l.clone(),
                    LinkEffect::Delay {
                        ms: 40.0,
                        jitter_ms: 0.0,
                    },
                ),
                rule(2, l, LinkEffect::Drop),
            ],
        };
        let mut rng = SmallRng::seed_from_u64(5);
        assert_eq!(rules.evaluate(1, 2, &mut rng), Verdict::Drop);
    }

    #[test]
    fn wan_gives_each_pair_one_rtt_in_range_split_each_way() {
        let all = links(&set(&[1, 2, 3]), &set(&[1, 2, 3]), false);
        let mut rng = SmallRng::seed_from_u64(9);
        let rules = wan_rules(4, &all, 80.0, 200.0, 0.0, &mut rng);
        assert_eq!(rules.len(), 3);
        for r in &rules {
            assert_eq!(r.links.len(), 2);
            let LinkEffect::Delay { ms, .. } = r.effect else {
                panic!("not a delay");
            };
            assert!((40.0..=100.0).contains(&ms), "{ms}");
        }
        let rules = Rules { rules };
        let mut rng = SmallRng::seed_from_u64(1);
        // Symmetric: the round trip 1 -> 2 -> 1 is twice the one-way delay.
        assert_eq!(
            rules.evaluate(1, 2, &mut rng),
            rules.evaluate(2, 1, &mut rng)
        );
    }
}
