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
