#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use proptest::prelude::*;

use super::*;

/// Shared state as a script: admissions and hedge budgets answered in
/// turn, timings by target.
struct Script {
    admits: VecDeque<bool>,
    budget: VecDeque<bool>,
    first_byte: Duration,
    hedge_after: Option<Duration>,
}

impl Targets for Script {
    fn admit(&mut self, _: Pick) -> bool {
        self.admits.pop_front().unwrap_or(true)
    }

    fn timing(&mut self, _: Pick) -> Timing {
        Timing {
            first_byte: self.first_byte,
            hedge_after: self.hedge_after,
        }
    }

    fn spend_hedge(&mut self) -> bool {
        self.budget.pop_front().unwrap_or(false)
    }
}

fn open(admits: &[bool]) -> Script {
    Script {
        admits: admits.iter().copied().collect(),
        budget: VecDeque::new(),
        first_byte: Duration::from_millis(500),
        hedge_after: None,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn status(code: u16) -> AttemptError {
    AttemptError::status(StatusCode::from_u16(code).unwrap(), &HeaderMap::new(), None)
}

fn name(pick: Pick) -> Arc<str> {
    format!("u{}-{}", pick.0, pick.1).into()
}

fn model() -> Arc<str> {
    "m".into()
}

fn expect_try(step: Step) -> Try {
    match step {
        Step::Try(t) => t,
        other => panic!("expected an attempt, got {other:?}"),
    }
}

#[test]
fn fails_over_in_plan_order_and_reports_each_handover() {
    let start = Instant::now();
    let plan = vec![(0, 0), (0, 1), (1, 0)];
    let mut f = Failover::new(plan, start, ms(10_000));
    let mut targets = open(&[true, false, true]);
    let first = expect_try(f.next(start, &mut targets));
    assert_eq!((first.pick, first.timeout), ((0, 0), ms(500)));
    assert!(first.failovers.is_empty());
    f.failed(Leg::Primary, &name((0, 0)), &model(), status(503));
    // (0, 1) is not admitted: (1, 0) is next, and (0, 0) hands over to it.
    let second = expect_try(f.next(start + ms(9_800), &mut targets));
    assert_eq!(second.pick, (1, 0));
    assert_eq!(second.timeout, ms(200), "bounded by the deadline");
    assert_eq!(second.failovers.len(), 1);
    assert_eq!(second.failovers[0].from, (0, 0));
    let answer = f.answered(Leg::Primary).unwrap();
    assert_eq!(answer.attempts, 2);
    assert!(answer.fallback && !answer.hedge_won);
    assert!(matches!(f.next(start, &mut targets), Step::Finished));
}

#[test]
fn give_up_names_the_kind_of_failure() {
    let start = Instant::now();
    let run = |errors: Vec<AttemptError>| {
        let plan: Vec<Pick> = (0..errors.len()).map(|i| (0, i)).collect();
        let mut f = Failover::new(plan, start, ms(1_000));
        let mut targets = open(&[]);
        for (i, e) in errors.into_iter().enumerate() {
            expect_try(f.next(start, &mut targets));
            f.failed(Leg::Primary, &name((0, i)), &model(), e);
        }
        match f.next(start, &mut targets) {
            Step::GiveUp { error, .. } => error,
            other => panic!("{other:?}"),
        }
    };
    let limited = |secs: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(secs),
        );
        AttemptError::status(StatusCode::TOO_MANY_REQUESTS, &h, None)
    };
    match run(vec![limited("5"), limited("2")]) {
        ProxyError::RateLimited { retry_after, .. } => assert_eq!(retry_after, ms(2_000)),
        other => panic!("{other:?}"),
    }
    let timeout = AttemptError::Timeout { after: ms(5) };
    assert!(matches!(
        run(vec![timeout.clone(), timeout.clone()]),
        ProxyError::UpstreamsTimedOut { .. }
    ));
    // Anthropic's 529 from every target: overloaded, which an Anthropic
    // client sees as its own 529; one other failure among them: a 502.
    assert!(matches!(
        run(vec![status(529), status(529)]),
        ProxyError::UpstreamsOverloaded { .. }
    ));
    assert!(matches!(
        run(vec![status(529), status(500)]),
        ProxyError::UpstreamsFailed { .. }
    ));
    let mixed = run(vec![timeout, status(502)]);
    assert_eq!(
        mixed.to_string(),
        "No upstream could answer: u0-0/m: no answer within 5 ms; u0-1/m: HTTP 502"
    );
    // Nothing admitted: as before, the empty account of a 504.
    assert!(matches!(run(vec![]), ProxyError::UpstreamsTimedOut { .. }));
}

#[test]
fn the_deadline_ends_the_failover() {
    let start = Instant::now();
    let mut f = Failover::new(vec![(0, 0), (0, 1)], start, ms(1_000));
    let mut targets = open(&[]);
    expect_try(f.next(start, &mut targets));
    f.failed(Leg::Primary, &name((0, 0)), &model(), status(429));
    match f.next(start + ms(1_000), &mut targets) {
        Step::GiveUp { error, attempts } => {
            assert_eq!(attempts, 1);
            assert_eq!(
                error.to_string(),
                "No upstream answered in time: u0-0/m: HTTP 429; request deadline of 1000 ms passed"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_route_with_one_target_hedges_it_again() {
    let start = Instant::now();
    let mut f = Failover::new(vec![(0, 0)], start, ms(1_000));
    let mut targets = open(&[]);
    targets.hedge_after = Some(ms(50));
    targets.budget = [true, true].into();
    let first = expect_try(f.next(start, &mut targets));
    assert_eq!(first.hedge_after, Some(ms(50)));
    let hedge = f.hedge(start + ms(900), &mut targets).unwrap();
    assert_eq!((hedge.pick, hedge.timeout), ((0, 0), ms(100)));
    assert!(
        f.hedge(start + ms(900), &mut targets).is_none(),
        "one hedge"
    );
    let answer = f.answered(Leg::Hedge).unwrap();
    assert_eq!(answer.attempts, 2);
    assert!(answer.hedge_won);
}

/// A lone target whose upstream has no slot left for a second attempt.
struct Full(Script);

impl Targets for Full {
    fn admit(&mut self, pick: Pick) -> bool {
        self.0.admit(pick)
    }

    fn admit_again(&mut self, _: Pick) -> bool {
        false
    }

    fn timing(&mut self, pick: Pick) -> Timing {
        self.0.timing(pick)
    }

    fn spend_hedge(&mut self) -> bool {
        self.0.spend_hedge()
    }
}

#[test]
fn no_hedge_to_the_same_target_without_a_slot_for_it() {
    let start = Instant::now();
    let mut f = Failover::new(vec![(0, 0)], start, ms(1_000));
    let mut targets = Full(open(&[]));
    targets.0.hedge_after = Some(ms(50));
    targets.0.budget = [true].into();
    expect_try(f.next(start, &mut targets));
    assert!(f.hedge(start + ms(100), &mut targets).is_none());
    // The primary's answer still finishes the request, as one attempt.
    let answer = f.answered(Leg::Primary).unwrap();
    assert_eq!(answer.attempts, 1);
}

#[test]
fn no_hedge_without_budget_or_after_the_deadline() {
    let start = Instant::now();
    let mut targets = open(&[]);
    targets.hedge_after = Some(ms(50));
    let mut f = Failover::new(vec![(0, 0), (0, 1)], start, ms(1_000));
    expect_try(f.next(start, &mut targets));
    assert!(
        f.hedge(start, &mut targets).is_none(),
        "the budget is spent"
    );
    targets.budget = [true].into();
    let mut f = Failover::new(vec![(0, 0), (0, 1)], start, ms(1_000));
    expect_try(f.next(start, &mut targets));
    assert!(f.hedge(start + ms(1_000), &mut targets).is_none());
    assert_eq!(targets.budget.len(), 1, "nothing spent on a hedge not sent");
}

#[test]
fn the_clients_own_mistake_is_not_retried() {
    let start = Instant::now();
    let mut f = Failover::new(vec![(0, 0), (0, 1)], start, ms(1_000));
    let mut targets = open(&[]);
    expect_try(f.next(start, &mut targets));
    f.failed(Leg::Primary, &name((0, 0)), &model(), status(400));
    assert!(matches!(
        f.next(start, &mut targets),
        Step::GiveUp { attempts: 1, .. }
    ));
}

/// How one attempt ends in a generated run.
#[derive(Debug, Clone)]
enum End {
    Answer,
    Fail(AttemptError),
}

fn any_error() -> impl Strategy<Value = AttemptError> {
    prop_oneof![
        (0u64..3_000).prop_map(|n| AttemptError::Timeout { after: ms(n) }),
        (0u64..10).prop_map(|s| AttemptError::Status {
            code: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(s)),
            message: None,
        }),
        prop_oneof![Just(500u16), Just(503), Just(404), Just(400), Just(422)].prop_map(status),
        Just(AttemptError::Connect {
            connected: false,
            causes: vec!["refused".into()],
        }),
        Just(AttemptError::EndedEarly { cause: None }),
    ]
}

fn any_end() -> impl Strategy<Value = End> {
    prop_oneof![
        1 => Just(End::Answer),
        4 => any_error().prop_map(End::Fail),
    ]
}

proptest::proptest! {
    /// Whatever the plan, the admissions, the budget, the clock and the
    /// outcomes: no target is tried twice (but for a lone target's hedge),
    /// nothing starts at or after the deadline or once the answer is
    /// committed, a failure the client caused is not retried, there is at
    /// most one hedge and only of the first attempt, every failure hands
    /// over to the attempt that follows it, and the give-up error lists
    /// every failed attempt in order.
    #[test]
    fn failovers_are_well_behaved(
        targets in 0usize..6,
        admits in proptest::collection::vec(proptest::bool::weighted(0.8), 0..12),
        budget in proptest::collection::vec(any::<bool>(), 0..3),
        hedge_after in proptest::option::of(0u64..400),
        first_byte in 1u64..1_000,
        timeout in 1u64..3_000,
        ends in proptest::collection::vec((0u64..700, any_end(), any::<bool>()), 0..16),
    ) {
        let start = Instant::now();
        let plan: Vec<Pick> = (0..targets).map(|i| (i / 2, i % 2)).collect();
        let mut script = Script {
            admits: admits.into(),
            budget: budget.into(),
            first_byte: ms(first_byte),
            hedge_after: hedge_after.map(ms),
        };
        let mut f = Failover::new(plan.clone(), start, ms(timeout));
        let deadline = f.deadline();
        let mut ends = ends.into_iter();
        let mut clock = start;
        let mut tried_primaries: Vec<Pick> = Vec::new();
        let mut hedges = 0;
        let mut starts = 0;
        let mut failures: Vec<(Pick, AttemptError)> = Vec::new();
        let mut unreported: Vec<Pick> = Vec::new();
        let mut client_mistake = false;
        loop {
            match f.next(clock, &mut script) {
                Step::Try(t) => {
                    prop_assert!(!client_mistake, "retried a failure the client caused");
                    prop_assert!(clock < deadline);
                    prop_assert!(t.timeout <= deadline - clock && t.timeout <= ms(first_byte));
                    let at = plan.iter().position(|p| *p == t.pick).unwrap();
                    prop_assert!(tried_primaries.iter().all(|p| plan.iter().position(|q| q == p).unwrap() < at));
                    tried_primaries.push(t.pick);
                    let handed: Vec<Pick> = t.failovers.iter().map(|h| h.from).collect();
                    prop_assert_eq!(&handed, &unreported);
                    unreported.clear();
                    prop_assert!(t.hedge_after.is_none() || starts == 0);
                    starts += 1;
                    let mut legs = vec![(Leg::Primary, t.pick)];
                    let (advance, _, hedge_now) = ends.next().unwrap_or((1, End::Answer, false));
                    if let (Some(after), true) = (t.hedge_after, hedge_now) {
                        clock += after;
                        if let Some(h) = f.hedge(clock, &mut script) {
                            prop_assert!(clock < deadline);
                            prop_assert!(h.timeout <= deadline - clock);
                            prop_assert!(h.pick == t.pick || !tried_primaries.contains(&h.pick));
                            hedges += 1;
                            starts += 1;
                            legs.push((Leg::Hedge, h.pick));
                        }
                    }
                    if legs.len() == 2 || t.hedge_after.is_none() {
                        prop_assert!(f.hedge(clock, &mut script).is_none(), "a second hedge");
                    }
                    let mut answered = false;
                    for (leg, pick) in legs {
                        let (more, end, _) = ends.next().unwrap_or((1, End::Answer, false));
                        clock += ms(advance + more);
                        match end {
                            End::Answer => {
                                let answer = f.answered(leg).unwrap();
                                prop_assert_eq!(answer.pick, pick);
                                prop_assert_eq!(answer.attempts, starts);
                                prop_assert_eq!(answer.hedge_won, leg == Leg::Hedge);
                                answered = true;
                                break;
                            }
                            End::Fail(e) => {
                                client_mistake |= !e.retryable();
                                failures.push((pick, e.clone()));
                                unreported.push(pick);
                                f.failed(leg, &name(pick), &model(), e);
                            }
                        }
                    }
                    if answered {
                        prop_assert!(matches!(f.next(clock, &mut script), Step::Finished));
                        prop_assert!(f.hedge(clock, &mut script).is_none());
                        prop_assert!(f.answered(Leg::Primary).is_none());
                        break;
                    }
                }
                Step::GiveUp { error, attempts } => {
                    prop_assert_eq!(attempts, starts);
                    let lines = match &error {
                        ProxyError::RateLimited { attempts, .. }
                        | ProxyError::UpstreamsFailed { attempts }
                        | ProxyError::UpstreamsOverloaded { attempts }
                        | ProxyError::UpstreamsTimedOut { attempts } => attempts.lines().to_vec(),
                        other => panic!("{other:?}"),
                    };
                    let failed: Vec<Tried> = lines
                        .iter()
                        .filter(|l| matches!(l, Tried::Failed { .. }))
                        .cloned()
                        .collect();
                    let expected: Vec<Tried> = failures
                        .iter()
                        .map(|(p, e)| Tried::Failed { upstream: name(*p), model: model(), error: e.clone() })
                        .collect();
                    prop_assert_eq!(failed, expected);
                    let passed = lines.len() > failures.len();
                    let all_limited = !failures.is_empty()
                        && failures.iter().all(|(_, e)| e.retry_after().is_some());
                    prop_assert_eq!(
                        matches!(error, ProxyError::RateLimited { .. }),
                        all_limited && !passed
                    );
                    prop_assert!(matches!(f.next(clock, &mut script), Step::Finished));
                    break;
                }
                Step::Finished => prop_assert!(false, "finished before an answer or a give-up"),
            }
        }
        prop_assert!(hedges <= 1);
        prop_assert!(starts <= plan.len() + 1);
        prop_assert!(tried_primaries.len() <= plan.len());
    }
}
