//! A request's way through its route: the failover's decisions
//! ([`super::failover`]) carried out. Each attempt it asks for is made
//! ([`super::attempt`]), hedged when it says so, and what came of it told
//! back, until it answers or gives up; the ends are told by
//! [`super::finish`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::Either;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;
use tracing::info;

use super::attempt::{self, Ready, race};
use super::failover::{Failover, Leg, Step, Targets, Timing};
use super::{Admission, Answered, Call, Failed, Proxy, finish};
use crate::error::{AttemptError, Attempts, ProxyError};
use crate::health::breaker::Circuit;
use crate::routing::{Route, RoutingSnapshot, Target};
use crate::select::{self, Pick, Policy};
use crate::telemetry::AttemptTrace;

impl Proxy {
    pub(super) async fn route(
        &self,
        call: &Call<'_>,
        route: &Arc<Route>,
        snapshot: &RoutingSnapshot,
        admission: Admission,
    ) -> Result<Answered, Failed> {
        let started = Instant::now();
        call.trace.routed(&route.name, &call.key);
        let plan = route.plan_among(
            &self.policy,
            call.stream,
            |upstream| {
                call.forms.for_upstream(&upstream.config).is_some()
                    && call.pinned.as_deref().is_none_or(|p| *upstream.id == *p)
            },
            &mut rand::rng(),
        );
        if plan.is_empty() {
            let error = ProxyError::NoUsableUpstream(route.name.to_string());
            finish::gave_up(route, &error, started);
            return Err(Failed {
                error,
                attempts: 0,
                routed: true,
            });
        }
        if let Some(hedge) = &route.hedge {
            hedge.earn();
        }

        let mut failover = Failover::new(plan, started, route.request_timeout);
        let deadline = failover.deadline();
        let mut targets = RouteTargets {
            route,
            snapshot,
            policy: &self.policy,
        };
        loop {
            let next = match failover.next(Instant::now(), &mut targets) {
                Step::Try(next) => next,
                Step::GiveUp { error, attempts } => {
                    finish::gave_up(route, &error, started);
                    return Err(Failed {
                        error,
                        attempts,
                        routed: true,
                    });
                }
                // Not reached: the loop returns with the answer or the
                // give-up that finishes a failover.
                Step::Finished => {
                    let error = ProxyError::UpstreamsFailed {
                        attempts: Attempts::default(),
                    };
                    finish::gave_up(route, &error, started);
                    return Err(Failed {
                        error,
                        attempts: 0,
                        routed: true,
                    });
                }
            };
            let target = pick_target(route, next.pick);
            for handover in &next.failovers {
                let from = pick_target(route, handover.from);
                finish::handed_over(
                    snapshot,
                    call.request_id,
                    route,
                    from,
                    target,
                    &handover.reason,
                );
            }
            let primary = traced(call, target, next.pick, |target| {
                self.attempt(call, route, target, next.timeout, deadline)
            });
            let mut hedged_to = None;
            let won = match next.hedge_after {
                None => alone(primary.await),
                Some(delay) => {
                    tokio::pin!(primary);
                    tokio::select! {
                        outcome = &mut primary => alone(outcome),
                        () = tokio::time::sleep(delay) => {
                            match failover.hedge(Instant::now(), &mut targets) {
                                Some(hedge) => {
                                    route.metrics.hedges_sent.fetch_add(1, Ordering::Relaxed);
                                    let other = pick_target(route, hedge.pick);
                                    hedged_to = Some(other);
                                    info!(upstream = %target.upstream.id, hedge = %other.upstream.id, delay_ms = delay.as_millis() as u64, "hedging a slow attempt");
                                    let hedged = traced(call, other, hedge.pick, |other| {
                                        self.attempt(call, route, other, hedge.timeout, deadline)
                                    });
                                    race(primary, hedged).await
                                }
                                None => alone(primary.await),
                            }
                        }
                    }
                }
            };
            match won {
                Ok((ready, leg)) => {
                    // Always an answer: `leg` is an attempt in flight.
                    let Some(answer) = failover.answered(leg) else {
                        continue;
                    };
                    let winner = pick_target(route, answer.pick);
                    let response = ready.into_response(admission);
                    finish::answered(route, winner, response.status(), started, answer.hedge_won);
                    return Ok(Answered {
                        response,
                        upstream: winner.upstream.id_header.clone(),
                        attempts: answer.attempts,
                        fallback: answer.fallback,
                    });
                }
                Err(failures) => {
                    for (leg, error) in failures {
                        let tried = match leg {
                            Leg::Primary => target,
                            Leg::Hedge => hedged_to.unwrap_or(target),
                        };
                        let error = attempt::scrubbed(error, call.scrub);
                        finish::attempt_failed(tried, &error);
                        failover.failed(leg, &tried.upstream.id, &tried.model, error);
                    }
                }
            }
        }
    }
}

/// `attempt` at `target`, in its own span when the request is traced;
/// the attempt itself, unwrapped, when it is not.
fn traced<'t, F: Future>(
    call: &Call<'_>,
    target: &'t Target,
    (tier, _): Pick,
    attempt: impl FnOnce(&'t Target) -> F,
) -> Either<TaskLocalFuture<Option<AttemptTrace>, F>, F> {
    if call.trace.is_on() {
        let upstream = &target.upstream.id;
        Either::Left(
            call.trace
                .scope(upstream, &target.model, tier, attempt(target)),
        )
    } else {
        Either::Right(attempt(target))
    }
}

/// The target a pick names.
fn pick_target(route: &Route, (tier, index): Pick) -> &Target {
    &route.tiers[tier][index]
}

/// The outcome of an attempt that ran alone, shaped as a race's.
fn alone(outcome: Result<Ready, AttemptError>) -> Result<(Ready, Leg), Vec<(Leg, AttemptError)>> {
    outcome
        .map(|ready| (ready, Leg::Primary))
        .map_err(|error| vec![(Leg::Primary, error)])
}

/// What the failover asks of a route's shared state.
struct RouteTargets<'a> {
    route: &'a Route,
    snapshot: &'a RoutingSnapshot,
    policy: &'a Policy,
}

impl Targets for RouteTargets<'_> {
    /// A half-open circuit lets one probe through, and the request that
    /// takes it is that probe.
    fn admit(&mut self, pick: Pick) -> bool {
        let live = &pick_target(self.route, pick).upstream.live;
        live.circuit() != Circuit::HalfOpen || live.take_probe()
    }

    fn timing(&mut self, pick: Pick) -> Timing {
        let estimate = pick_target(self.route, pick).ttfb_estimate(self.policy);
        let health = &self.snapshot.health;
        Timing {
            first_byte: select::first_byte_timeout(
                estimate.map(|q| q.p99),
                health.timeout_multiplier,
                Duration::from_millis(health.timeout_floor_ms),
                self.route.first_byte_timeout,
            ),
            hedge_after: match (&self.route.hedge, estimate) {
                (Some(hedge), Some(q)) => Some(hedge.delay(q.p50, q.p90, q.p95, q.p99)),
                _ => None,
            },
        }
    }

    fn spend_hedge(&mut self) -> bool {
        self.route.hedge.as_ref().is_some_and(|hedge| hedge.spend())
    }
}
