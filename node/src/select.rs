//! Which targets a request tries, in which order. Pure: the caller passes
//! each target's figures and a random source; nothing here reads a clock,
//! a socket or shared state.
//!
//! Tiers are tried in order. Within a tier the first pick is the power of two
//! choices on `p99 × (in_flight + 1)`, with a small share of requests
//! exploring a random target so every target's figures stay fresh; the rest of
//! the tier follows by score. A target whose p99 is [`Policy::avoid_ratio`]
//! times another's of its tier or more is *avoided*: it is neither a
//! candidate of the two choices nor of exploration, and follows the rest
//! of its tier, so a browned-out upstream keeps no steady share (with
//! `p99 × (in_flight + 1)` alone, the fast target's own queue handed the
//! slow one about 8% of the traffic at 243 ms against 66 ms). To learn
//! when it is fast again, an avoided target gets a latency probe now and
//! then ([`probe_due`]: at most one per [`Policy::probe_every_ms`] and per
//! [`Policy::probe_gap`] plans that passed it over, so at most 1/gap of the
//! traffic): the request goes to it first, the rest of the tier backs it
//! up. A target whose circuit is half-open goes first
//! in its tier: it is the probe that may close the circuit (the rest of the
//! plan backs it up). Targets whose recent error rate is over the threshold,
//! then targets whose circuit is open, go last, after every tier, as a last
//! resort rather than never: a request is better tried on an ejected
//! upstream than failed untried.

use std::time::Duration;

use rand::Rng;

use crate::health::Circuit;

/// What the selector knows about one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetStats {
    /// Whether this node can send to it at all (e.g. it has the provider key).
    pub usable: bool,
    /// Estimated p99 time to first byte in ms (own and shared figures blended), when anyone measured it.
    pub p99_ms: Option<f64>,
    /// Attempts running against its upstream now.
    pub in_flight: usize,
    /// Recent share of attempts that failed or timed out.
    pub error_rate: f64,
    /// Attempts behind `error_rate`.
    pub attempts: u64,
    /// Its upstream's circuit; half-open only while a probe may go.
    pub circuit: Circuit,
    /// This request is its latency probe: avoided, it goes first in its
    /// tier all the same ([`probe_due`]; the caller takes the probe).
    pub probe: bool,
}

/// How the selector weighs targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// p99 assumed for a target without enough samples.
    pub prior_p99_ms: f64,
    /// Samples a region's shared p99 needs before it is preferred to the
    /// cluster's (`crate::health::sharing::Estimates`); this node's own
    /// count from the first ([`crate::health::blend`]).
    pub min_samples: u64,
    /// Error rate above which a target is tried only as a last resort.
    pub error_threshold: f64,
    /// Attempts needed before the error rate is trusted.
    pub min_error_samples: u64,
    /// Share of requests whose first pick in a tier is uniformly random.
    pub explore: f64,
    /// A target whose p99 is this many times the fastest of its tier's or
    /// more is avoided; 0 (or anything up to 1) avoids none.
    pub avoid_ratio: f64,
    /// At most one latency probe per avoided target this often.
    pub probe_every_ms: u64,
    /// And only after this many plans passed it over: the probes' share of
    /// traffic stays under 1/gap however quiet the node.
    pub probe_gap: u64,
    /// How this node's own samples weigh against the cluster's figures.
    pub blend: crate::health::blend::Blend,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            prior_p99_ms: 1_000.0,
            min_samples: 20,
            error_threshold: 0.5,
            min_error_samples: 10,
            explore: 0.02,
            avoid_ratio: 3.0,
            probe_every_ms: 1_000,
            probe_gap: 100,
            blend: crate::health::blend::Blend::default(),
        }
    }
}

impl Policy {
    fn score(&self, t: &TargetStats) -> f64 {
        self.p99(t) * (t.in_flight as f64 + 1.0)
    }

    fn degraded(&self, t: &TargetStats) -> bool {
        t.attempts >= self.min_error_samples && t.error_rate > self.error_threshold
    }

    fn p99(&self, t: &TargetStats) -> f64 {
        t.p99_ms.unwrap_or(self.prior_p99_ms).max(0.001)
    }

    /// Whether a target takes part in the choice of its tier's first pick:
    /// usable, circuit closed, not failing.
    fn candidate(&self, t: &TargetStats) -> bool {
        t.usable && t.circuit == Circuit::Closed && !self.degraded(t)
    }
}

/// Which targets of a tier are avoided: candidates (usable, closed, not
/// failing) whose p99 is at least [`Policy::avoid_ratio`] times the lowest
/// of the tier's candidates. In-flight counts are left out on purpose: they
/// spread load among targets of like speed, but a target three times
/// slower is not worth a request because the fast one is busy.
pub fn avoided(tier: &[TargetStats], policy: &Policy) -> Vec<bool> {
    let best = tier
        .iter()
        .filter(|t| policy.candidate(t))
        .map(|t| policy.p99(t))
        .fold(f64::INFINITY, f64::min);
    tier.iter()
        .map(|t| {
            policy.avoid_ratio > 1.0
                && policy.candidate(t)
                && policy.p99(t) >= policy.avoid_ratio * best
        })
        .collect()
}

/// Whether a request's first pick comes from this tier: it has a candidate
/// (usable, closed, not failing). Probes are only worth taking there.
pub fn starts_here(tier: &[TargetStats], policy: &Policy) -> bool {
    tier.iter().any(|t| policy.candidate(t))
}

/// Whether an avoided target is due a latency probe at `now_ms`: its last
/// one went at `last_ms` (0: never), and `passed` plans passed it over
/// since. Both bounds hold: at most one a [`Policy::probe_every_ms`], so a
/// busy node does not send it more than it needs to learn; and at most one
/// in [`Policy::probe_gap`] plans, so a quiet node does not send it half
/// of its traffic.
pub fn probe_due(last_ms: u64, passed: u64, now_ms: u64, policy: &Policy) -> bool {
    passed >= policy.probe_gap
        && (last_ms == 0 || now_ms.saturating_sub(last_ms) >= policy.probe_every_ms)
}

/// A target by its position: (tier, index in tier).
pub type Pick = (usize, usize);

/// The order in which to try targets, at most `max_attempts` long.
pub fn plan(
    tiers: &[Vec<TargetStats>],
    policy: &Policy,
    max_attempts: usize,
    rng: &mut impl Rng,
) -> Vec<Pick> {
    let mut order = Vec::with_capacity(max_attempts.min(8));
    let mut last_resort = Vec::new();
    for (t, tier) in tiers.iter().enumerate() {
        let avoid = avoided(tier, policy);
        let mut healthy: Vec<(f64, Pick)> = Vec::with_capacity(tier.len());
        let mut slow: Vec<(f64, Pick)> = Vec::new();
        for (i, stats) in tier.iter().enumerate() {
            if !stats.usable {
                continue;
            }
            match stats.circuit {
                // Open circuits after every degraded target.
                Circuit::Open => last_resort.push((2.0 + stats.error_rate, (t, i))),
                Circuit::HalfOpen => order.push((t, i)),
                Circuit::Closed if policy.degraded(stats) => {
                    last_resort.push((stats.error_rate, (t, i)))
                }
                Circuit::Closed if avoid[i] && stats.probe => order.push((t, i)),
                Circuit::Closed if avoid[i] => slow.push((policy.score(stats), (t, i))),
                Circuit::Closed => healthy.push((policy.score(stats), (t, i))),
            }
        }
        if !healthy.is_empty() {
            let first = first_pick(&healthy, policy, rng);
            let first = healthy.swap_remove(first);
            healthy.sort_by(|a, b| a.0.total_cmp(&b.0));
            order.push(first.1);
            order.extend(healthy.into_iter().map(|(_, pick)| pick));
        }
        slow.sort_by(|a, b| a.0.total_cmp(&b.0));
        order.extend(slow.into_iter().map(|(_, pick)| pick));
    }
    last_resort.sort_by(|a, b| a.0.total_cmp(&b.0));
    order.extend(last_resort.into_iter().map(|(_, pick)| pick));
    order.truncate(max_attempts);
    order
}

/// The first-byte timeout of one attempt: the target's p99 times
/// `multiplier`, within `floor` and the route's `ceiling`; the ceiling
/// itself when the p99 is unknown or the multiplier is 0. A target that
/// usually answers in 200 ms is given up on after a second, not after the
/// route's 30 s meant for its slowest targets.
pub fn first_byte_timeout(
    p99_ms: Option<f64>,
    multiplier: f64,
    floor: Duration,
    ceiling: Duration,
) -> Duration {
    match p99_ms {
        Some(p99) if multiplier > 0.0 && p99.is_finite() => {
            let scaled = Duration::from_secs_f64((p99 * multiplier).max(0.0) / 1000.0);
            scaled.max(floor).min(ceiling)
        }
        _ => ceiling,
    }
}

fn first_pick(candidates: &[(f64, Pick)], policy: &Policy, rng: &mut impl Rng) -> usize {
    let n = candidates.len();
    if n == 1 {
        return 0;
    }
    if rng.random::<f64>() < policy.explore {
        return rng.random_range(0..n);
    }
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    if candidates[b].0 < candidates[a].0 {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn t(p99: f64) -> TargetStats {
        TargetStats {
            usable: true,
            p99_ms: Some(p99),
            in_flight: 0,
            error_rate: 0.0,
            attempts: 100,
            circuit: Circuit::Closed,
            probe: false,
        }
    }

    fn no_explore() -> Policy {
        Policy {
            explore: 0.0,
            ..Policy::default()
        }
    }

    #[test]
    fn tiers_are_tried_in_order() {
        let mut rng = SmallRng::seed_from_u64(1);
        let tiers = vec![vec![t(900.0)], vec![t(10.0)]];
        assert_eq!(
            plan(&tiers, &no_explore(), 5, &mut rng),
            vec![(0, 0), (1, 0)]
        );
    }

    #[test]
    fn two_choices_pick_the_faster_of_two() {
        let mut rng = SmallRng::seed_from_u64(7);
        let tiers = vec![vec![t(100.0), t(1000.0)]];
        for _ in 0..100 {
            assert_eq!(
                plan(&tiers, &no_explore(), 3, &mut rng),
                vec![(0, 0), (0, 1)]
            );
        }
    }

    #[test]
    fn in_flight_spreads_load() {
        let mut rng = SmallRng::seed_from_u64(7);
        let busy = TargetStats {
            in_flight: 20,
            ..t(100.0)
        };
        // Slower, but within the avoid ratio: load may spread to it.
        let tiers = vec![vec![busy, t(250.0)]];
        assert_eq!(plan(&tiers, &no_explore(), 1, &mut rng), vec![(0, 1)]);
    }

    #[test]
    fn exploration_visits_the_slow_target_sometimes() {
        let mut rng = SmallRng::seed_from_u64(3);
        // Slower, but within the avoid ratio: exploration still visits it.
        let tiers = vec![vec![t(100.0), t(250.0)]];
        let policy = Policy {
            explore: 0.1,
            ..Policy::default()
        };
        let slow_first = (0..10_000)
            .filter(|_| plan(&tiers, &policy, 1, &mut rng) == vec![(0, 1)])
            .count();
        // explore share × half of the random picks land on the slow one.
        assert!((300..700).contains(&slow_first), "{slow_first}");
    }

    #[test]
    fn a_target_three_times_slower_is_avoided_whatever_the_load() {
        let mut rng = SmallRng::seed_from_u64(5);
        let slow = t(243.0);
        let policy = Policy::default();
        assert_eq!(
            avoided(&[t(66.0), slow], &policy),
            vec![false, true],
            "{policy:?}"
        );
        // Exploration and a busy fast target alike leave it last.
        for in_flight in 0..20 {
            let fast = TargetStats {
                in_flight,
                ..t(66.0)
            };
            for _ in 0..100 {
                assert_eq!(
                    plan(&[vec![fast, slow]], &policy, 2, &mut rng),
                    vec![(0, 0), (0, 1)]
                );
            }
        }
        // Its probe goes first, the fast one backs it up.
        let probe = TargetStats {
            probe: true,
            ..slow
        };
        assert_eq!(
            plan(&[vec![t(66.0), probe]], &policy, 2, &mut rng),
            vec![(0, 1), (0, 0)]
        );
        // Within the ratio, or with avoidance off, it competes as before.
        assert_eq!(avoided(&[t(66.0), t(190.0)], &policy), vec![false, false]);
        let off = Policy {
            avoid_ratio: 0.0,
            ..policy
        };
        assert_eq!(avoided(&[t(66.0), slow], &off), vec![false, false]);
        // Only candidates count: a failing fast target makes none slow.
        let failing = TargetStats {
            error_rate: 0.9,
            ..t(10.0)
        };
        assert_eq!(avoided(&[failing, t(66.0)], &policy), vec![false, false]);
    }

    #[test]
    fn probes_are_bounded_by_time_and_by_share() {
        let policy = Policy::default();
        let gap = policy.probe_gap;
        assert!(probe_due(0, gap, 5, &policy), "never probed");
        assert!(!probe_due(0, gap - 1, 5, &policy), "too few plans");
        assert!(!probe_due(10_000, gap, 10_999, &policy), "too soon");
        assert!(probe_due(10_000, gap, 11_000, &policy));
        assert!(!probe_due(10_000, gap - 1, 60_000, &policy), "a quiet node");
        // Probes are taken in the tier a request starts in.
        let failing = TargetStats {
            error_rate: 0.9,
            ..t(10.0)
        };
        assert!(!starts_here(&[failing], &policy));
        assert!(starts_here(&[failing, t(500.0)], &policy));
    }

    #[test]
    fn unmeasured_targets_use_the_prior() {
        let mut rng = SmallRng::seed_from_u64(1);
        let fresh = TargetStats {
            p99_ms: None,
            ..t(0.0)
        };
        let tiers = vec![vec![fresh, t(2000.0)]];
        assert_eq!(plan(&tiers, &no_explore(), 1, &mut rng), vec![(0, 0)]);
    }

    #[test]
    fn failing_targets_go_last_and_unusable_never() {
        let mut rng = SmallRng::seed_from_u64(1);
        let failing = TargetStats {
            error_rate: 0.9,
            ..t(1.0)
        };
        let unusable = TargetStats {
            usable: false,
            ..t(1.0)
        };
        let tiers = vec![vec![failing, unusable], vec![t(500.0)]];
        assert_eq!(
            plan(&tiers, &no_explore(), 5, &mut rng),
            vec![(1, 0), (0, 0)]
        );
    }

    #[test]
    fn too_few_errors_are_not_trusted() {
        let mut rng = SmallRng::seed_from_u64(1);
        let unlucky = TargetStats {
            error_rate: 1.0,
            attempts: 2,
            ..t(1.0)
        };
        let tiers = vec![vec![unlucky], vec![t(500.0)]];
        assert_eq!(plan(&tiers, &no_explore(), 5, &mut rng)[0], (0, 0));
    }

    #[test]
    fn open_circuits_go_last_and_half_open_ones_probe_first() {
        let mut rng = SmallRng::seed_from_u64(1);
        let open = TargetStats {
            circuit: Circuit::Open,
            ..t(1.0)
        };
        let probe = TargetStats {
            circuit: Circuit::HalfOpen,
            ..t(5_000.0)
        };
        let failing = TargetStats {
            error_rate: 0.9,
            ..t(1.0)
        };
        let tiers = vec![vec![open, t(100.0)], vec![failing, t(10.0), probe]];
        assert_eq!(
            plan(&tiers, &no_explore(), 5, &mut rng),
            vec![(0, 1), (1, 2), (1, 1), (1, 0), (0, 0)]
        );
    }

    #[test]
    fn first_byte_timeout_follows_p99_within_bounds() {
        let ms = Duration::from_millis;
        let t = |p99, k| first_byte_timeout(p99, k, ms(1_000), ms(30_000));
        assert_eq!(t(Some(500.0), 4.0), ms(2_000));
        assert_eq!(t(Some(10.0), 4.0), ms(1_000), "floor");
        assert_eq!(t(Some(20_000.0), 4.0), ms(30_000), "ceiling");
        assert_eq!(t(None, 4.0), ms(30_000), "unknown p99");
        assert_eq!(t(Some(500.0), 0.0), ms(30_000), "off");
        // A route whose own timeout is under the floor keeps it.
        assert_eq!(
            first_byte_timeout(Some(10.0), 4.0, ms(1_000), ms(300)),
            ms(300)
        );
    }

    fn any_target() -> impl proptest::strategy::Strategy<Value = TargetStats> {
        use proptest::prelude::*;
        (
            any::<bool>(),
            proptest::option::of(0.1f64..10_000.0),
            0usize..50,
            0.0f64..=1.0,
            0u64..100,
            prop_oneof![
                Just(Circuit::Closed),
                Just(Circuit::Open),
                Just(Circuit::HalfOpen)
            ],
            any::<bool>(),
        )
            .prop_map(
                |(usable, p99_ms, in_flight, error_rate, attempts, circuit, probe)| TargetStats {
                    usable,
                    p99_ms,
                    in_flight,
                    error_rate,
                    attempts,
                    circuit,
                    probe,
                },
            )
    }

    proptest::proptest! {
        /// Whatever the figures: a plan names each usable target at most
        /// once and never an unusable one; it respects `max_attempts`; and
        /// the healthy, closed targets of a tier come before any target of
        /// a later tier.
        #[test]
        fn plans_are_well_formed(
            tiers in proptest::collection::vec(proptest::collection::vec(any_target(), 1..4), 1..4),
            max in 1usize..10,
            seed: u64,
        ) {
            let mut rng = SmallRng::seed_from_u64(seed);
            let policy = Policy::default();
            let order = plan(&tiers, &policy, max, &mut rng);
            proptest::prop_assert!(order.len() <= max);
            let mut seen = std::collections::HashSet::new();
            for &(t, i) in &order {
                proptest::prop_assert!(tiers[t][i].usable);
                proptest::prop_assert!(seen.insert((t, i)));
            }
            let usable = tiers.iter().flatten().filter(|s| s.usable).count();
            proptest::prop_assert_eq!(order.len(), usable.min(max));
            let preferred = |p: &Pick| {
                let s = &tiers[p.0][p.1];
                // A probe goes first whatever the errors that opened it.
                s.circuit == Circuit::HalfOpen
                    || (s.circuit == Circuit::Closed && !policy.degraded(s))
            };
            // Preferred targets appear in tier order, and before every
            // last-resort target.
            let firsts: Vec<&Pick> = order.iter().take_while(|p| preferred(p)).collect();
            proptest::prop_assert!(firsts.windows(2).all(|w| w[0].0 <= w[1].0));
            proptest::prop_assert!(order.iter().skip(firsts.len()).all(|p| !preferred(p)));
        }
    }

    #[test]
    fn max_attempts_caps_the_plan() {
        let mut rng = SmallRng::seed_from_u64(1);
        let tiers = vec![vec![t(1.0), t(2.0), t(3.0)], vec![t(4.0)]];
        assert_eq!(plan(&tiers, &no_explore(), 2, &mut rng).len(), 2);
        assert!(plan(&[], &no_explore(), 2, &mut rng).is_empty());
    }
}
