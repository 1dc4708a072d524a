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

use super::attempt::{self, race};
use super::failover::{Failover, Leg, Step, Targets, Timing};
use super::ready::Ready;
use super::{Admission, Answered, Call, Failed, Proxy, finish};
use crate::capacity::{At, Capacity, gate};
use crate::error::{AttemptError, Attempts, ProxyError, Tried};
use crate::health::breaker::Circuit;
use crate::health::cooldown;
use crate::metrics::ShedReason;
use crate::routing::{InFlight, Route, RoutingSnapshot, Target, Upstream};
use crate::select::{self, Pick, Policy};
use crate::telemetry::AttemptTrace;

impl Proxy {
    pub(super) async fn route(
        &self,
        call: &Call<'_>,
        route: &Arc<Route>,
        snapshot: &RoutingSnapshot,
        admission: Admission,
        rank: usize,
    ) -> Result<Answered, Failed> {
        let started = Instant::now();
        call.trace.routed(&route.name, &call.key);
        let class = self.capacity.class(rank);
        let request_deadline = started + route.request_timeout;
        let queue_until = gate::wait_until(started, class.queue, request_deadline);
        let at = || At {
            now_ms: crate::tenants::now_ms(),
            members: self
                .tenants
                .as_ref()
                .map_or(1, |t| t.applied().state.nodes.len().max(1)),
        };
        // Back here when another request took the last slot between the
        // plan and its turn: the request joins its class's queue again.
        'admit: loop {
            // The plan, and the time it was made at, which the targets
            // it holds are counted at too.
            let (plan, now) = loop {
                let serves = |upstream: &Upstream| {
                    call.forms.for_upstream(&upstream.config).is_some()
                        && call.pinned.as_deref().is_none_or(|p| *upstream.id == *p)
                };
                let now = at();
                // Cooled targets (a provider's `Retry-After`) are skipped.
                let now_ms = cooldown::now_ms();
                let look = || {
                    route.plan_among(
                        &self.policy,
                        call.stream,
                        |upstream| {
                            serves(upstream)
                                && !upstream.live.cooled(now_ms)
                                && self.capacity.has_room(upstream.gated(), rank, now)
                        },
                        &mut rand::rng(),
                    )
                };
                let plan = look();
                if !plan.is_empty() {
                    break (plan, now);
                }
                // Nothing to try now. Registered before a second look, so a
                // slot freed since the first still wakes this request if it
                // waits; a request planned at the first look (nearly all)
                // takes no lock on this node-wide signal.
                let freed = self.capacity.freed().notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                let plan = look();
                if !plan.is_empty() {
                    break (plan, now);
                }
                // Empty for want of capacity only: wait in the class's queue,
                // else shed; every target cooled: 429 with the longest wait;
                // empty whatever the capacity: no usable upstream.
                let full = !route
                    .plan_among(
                        &self.policy,
                        call.stream,
                        |upstream| serves(upstream) && !upstream.live.cooled(now_ms),
                        &mut rand::rng(),
                    )
                    .is_empty();
                let error = if full {
                    match queue_until {
                        Some(until) if Instant::now() < until => {
                            let _ = tokio::time::timeout_at(until, freed).await;
                            continue;
                        }
                        _ => self.shed(snapshot, rank),
                    }
                } else {
                    match cooled_for(route, serves, now_ms) {
                        Some((attempts, retry_after)) => ProxyError::RateLimited {
                            attempts,
                            retry_after,
                        },
                        None => ProxyError::NoUsableUpstream(route.name.to_string()),
                    }
                };
                finish::gave_up(route, &error, started);
                finish::class_done(snapshot, call.class, None);
                return Err(Failed {
                    error,
                    attempts: 0,
                    routed: true,
                });
            };
            if let Some(hedge) = &route.hedge {
                hedge.earn();
            }

            let mut failover = Failover::new(plan, started, route.request_timeout);
            let deadline = failover.deadline();
            let mut targets = RouteTargets {
                route,
                snapshot,
                policy: &self.policy,
                capacity: &self.capacity,
                rank,
                at: now,
                permits: Vec::new(),
                full: false,
            };
            loop {
                let next = match failover.next(Instant::now(), &mut targets) {
                    Step::Try(next) => next,
                    Step::GiveUp { error, attempts } => {
                        // Every target of the plan filled up before its turn
                        // (another request took the last slot): wait in the
                        // queue while it has time, else shed.
                        let error = if attempts == 0 && targets.full {
                            if queue_until.is_some_and(|until| Instant::now() < until) {
                                continue 'admit;
                            }
                            self.shed(snapshot, rank)
                        } else {
                            error
                        };
                        finish::gave_up(route, &error, started);
                        finish::class_done(snapshot, call.class, None);
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
                let slot = targets.slot(next.pick);
                // Each attempt boxed: the request's future (which a stream's
                // task keeps until the stream ends) holds pointers to its
                // attempts, not two attempts' worth of space.
                let primary = traced(call, target, next.pick, |target| {
                    Box::pin(self.attempt(call, route, target, slot, next.timeout, deadline))
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
                                        let slot = targets.slot(hedge.pick);
                                        let hedged = traced(call, other, hedge.pick, |other| {
                                            Box::pin(self.attempt(call, route, other, slot, hedge.timeout, deadline))
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
                        let took = started.elapsed();
                        finish::answered(route, winner, response.status(), took, answer.hedge_won);
                        finish::class_done(snapshot, call.class, Some(took));
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
}

impl Proxy {
    /// The error of a request of the class at `rank` that no target had a
    /// slot for, counted.
    fn shed(&self, snapshot: &RoutingSnapshot, rank: usize) -> ProxyError {
        snapshot
            .metrics
            .shed
            .shed(rank, ShedReason::UpstreamCapacity);
        let class = self.capacity.class(rank);
        ProxyError::Shed {
            class: class.name.to_string(),
            retry_after: gate::retry_after(class.queue),
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

/// When every target the request could use is cooled (and none is usable
/// otherwise), the longest wait left among them: the request is answered
/// 429 with it rather than sent to an upstream that asked to be left alone.
fn cooled_for(
    route: &Route,
    serves: impl Fn(&Upstream) -> bool,
    now_ms: u64,
) -> Option<(Attempts, Duration)> {
    let mut tried = Vec::new();
    let mut longest = None;
    for t in route.tiers.iter().flatten() {
        let upstream = &t.upstream;
        if !upstream.usable() || !serves(upstream) {
            continue;
        }
        if let Some(left) = upstream.live.cooldown.left(now_ms) {
            longest = longest.max(Some(left));
            tried.push(Tried::Cooled {
                upstream: upstream.id.clone(),
                left,
            });
        }
    }
    Some((Attempts::from(tried), longest?))
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
    /// The upstreams' capacity, and the request's class in it.
    capacity: &'a Capacity,
    rank: usize,
    /// When the request was planned, for the upstreams' `rpm`.
    at: At,
    /// The slots taken by `admit`, each until its attempt starts.
    permits: Vec<(Pick, InFlight)>,
    /// A target was passed over for want of a slot.
    full: bool,
}

impl RouteTargets<'_> {
    /// The slot `admit` took for `pick`'s attempt.
    fn slot(&mut self, pick: Pick) -> InFlight {
        match self.permits.iter().position(|(p, _)| *p == pick) {
            Some(i) => self.permits.swap_remove(i).1,
            // Not reached: an attempt starts only on an admitted target.
            None => InFlight::new(pick_target(self.route, pick).upstream.clone()),
        }
    }

    /// Takes a slot of `pick`'s upstream for the request's class.
    fn take_slot(&mut self, pick: Pick) -> bool {
        let upstream = &pick_target(self.route, pick).upstream;
        match self.capacity.permit(upstream.gated(), self.rank, self.at) {
            Some(slot) => {
                self.permits
                    .push((pick, InFlight::counted(upstream.clone(), slot)));
                true
            }
            None => {
                self.full = true;
                false
            }
        }
    }
}

impl Targets for RouteTargets<'_> {
    /// A target is tried only with a slot its upstream's capacity leaves
    /// the request's class. A half-open circuit lets one probe through,
    /// and the request that takes it is that probe.
    fn admit(&mut self, pick: Pick) -> bool {
        let route = self.route;
        let live = &pick_target(route, pick).upstream.live;
        // Cooled since the plan was made (another request's 429).
        if live.cooled(cooldown::now_ms()) || !self.take_slot(pick) {
            return false;
        }
        if live.circuit() != Circuit::HalfOpen || live.take_probe() {
            return true;
        }
        // No probe left: the slot goes back.
        self.permits.pop();
        false
    }

    /// A hedge to the target already tried takes a slot of its own.
    fn admit_again(&mut self, pick: Pick) -> bool {
        self.take_slot(pick)
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
