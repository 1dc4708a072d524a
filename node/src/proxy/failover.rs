//! The failover of one request, as a state machine. Pure, the way
//! [`crate::health::breaker`] is: the plan, the attempts' outcomes and the time (an
//! instant the caller read) go in; decisions come out (try this target
//! with this timeout, hedge it, give up with this error). The caller does
//! the I/O, and asks [`Targets`] for what lives in shared state: whether a
//! half-open circuit admits its probe, a target's first-byte figures, the
//! route's hedge budget.
//!
//! The targets are tried in the plan's order, one at a time; only the
//! first attempt may be hedged (a second attempt in parallel, once its
//! target's usual time to first byte has passed), and failover covers the
//! rest. Nothing is tried once the request's deadline has passed, once an
//! answer is committed, or after a failure no other target would undo
//! (the client's own mistake).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{AttemptError, Attempts, ProxyError, Tried};
use crate::select::Pick;

/// What the failover asks of the world around it.
pub trait Targets {
    /// Whether `pick` may be tried now. A half-open circuit lets one probe
    /// through, and the request that is admitted is that probe, so this is
    /// asked once per target reached, in the plan's order.
    fn admit(&mut self, pick: Pick) -> bool;

    /// Whether `pick`, in flight already, may be tried a second time at
    /// once (a hedge to the route's only target): its upstream may have
    /// no slot left for it.
    fn admit_again(&mut self, _pick: Pick) -> bool {
        true
    }

    /// The time `pick` earns from its figures.
    fn timing(&mut self, pick: Pick) -> Timing;

    /// Takes one hedge from the route's budget; false when it is spent.
    fn spend_hedge(&mut self) -> bool;
}

/// A target's time allowances, from its recent figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for its first byte.
    pub first_byte: Duration,
    /// How long to wait before hedging it; `None` when the route does not
    /// hedge or nobody has figures for the target.
    pub hedge_after: Option<Duration>,
}

/// Which of the (at most two) attempts in flight an outcome is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The attempt [`Step::Try`] started.
    Primary,
    /// The attempt [`Failover::hedge`] started.
    Hedge,
}

/// An attempt to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Try {
    /// The target.
    pub pick: Pick,
    /// How long the attempt may take to its first byte.
    pub timeout: Duration,
    /// When set, call [`Failover::hedge`] if the attempt has not answered
    /// after this long.
    pub hedge_after: Option<Duration>,
    /// Earlier attempts that failed, each handing over to this one (a
    /// failover event each).
    pub failovers: Vec<Handover>,
}

/// A failed attempt that another one follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The target that failed.
    pub from: Pick,
    /// Why.
    pub reason: AttemptError,
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Start an attempt.
    Try(Try),
    /// Nothing more will be tried: answer the client with `error`.
    GiveUp {
        /// The error for the client.
        error: ProxyError,
        /// Attempts made (the hedge included).
        attempts: usize,
    },
    /// The request has its answer, or has given up, already.
    Finished,
}

/// How the request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The target that answered.
    pub pick: Pick,
    /// Attempts made (the hedge included).
    pub attempts: usize,
    /// A lower tier answered.
    pub fallback: bool,
    /// The hedge answered first.
    pub hedge_won: bool,
}

/// The failover of one request.
#[derive(Debug)]
pub struct Failover {
    plan: Vec<Pick>,
    /// The next entry of the plan to consider.
    next: usize,
    deadline: Instant,
    request_timeout: Duration,
    /// Attempts started, the hedge included.
    attempts: usize,
    /// The attempts in flight.
    primary: Option<Pick>,
    hedge: Option<Pick>,
    /// The first attempt's first-byte allowance, while it may be hedged.
    hedge_timeout: Option<Duration>,
    /// What was tried, for the client's error.
    tried: Attempts,
    /// Failed attempts waiting to learn whether another follows.
    unreported: Vec<Handover>,
    /// The shortest wait a rate-limited upstream asked for.
    retry_after: Option<Duration>,
    all_rate_limited: bool,
    all_timed_out: bool,
    /// Every attempt answered Anthropic's 529 "overloaded".
    all_overloaded: bool,
    /// A failure no other target would undo.
    stop: bool,
    finished: bool,
}

impl Failover {
    /// The failover of a request that started at `started`, given `plan`
    /// (from [`crate::select::plan`]) and its route's `request_timeout`.
    pub fn new(plan: Vec<Pick>, started: Instant, request_timeout: Duration) -> Self {
        Self {
            plan,
            next: 0,
            deadline: started + request_timeout,
            request_timeout,
            attempts: 0,
            primary: None,
            hedge: None,
            hedge_timeout: None,
            tried: Attempts::default(),
            unreported: Vec::new(),
            retry_after: None,
            all_rate_limited: true,
            all_timed_out: true,
            all_overloaded: true,
            stop: false,
            finished: false,
        }
    }

    /// When the request must be answered by.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The next step, once the attempts in flight have all reported.
    pub fn next(&mut self, now: Instant, targets: &mut impl Targets) -> Step {
        if self.finished || self.primary.is_some() || self.hedge.is_some() {
            return Step::Finished;
        }
        self.hedge_timeout = None;
        while !self.stop && self.next < self.plan.len() {
            let pick = self.plan[self.next];
            self.next += 1;
            if !targets.admit(pick) {
                continue;
            }
            if now >= self.deadline {
                self.tried.push(Tried::DeadlinePassed {
                    timeout: self.request_timeout,
                });
                self.all_rate_limited = false;
                self.all_overloaded = false;
                break;
            }
            self.attempts += 1;
            let timing = targets.timing(pick);
            let timeout = self.left(now).min(timing.first_byte);
            // Only the first attempt is hedged; failover covers the rest.
            let hedge_after = timing.hedge_after.filter(|_| self.attempts == 1);
            if hedge_after.is_some() {
                self.hedge_timeout = Some(timing.first_byte);
            }
            self.primary = Some(pick);
            return Step::Try(Try {
                pick,
                timeout,
                hedge_after,
                failovers: std::mem::take(&mut self.unreported),
            });
        }
        self.finished = true;
        Step::GiveUp {
            error: self.give_up(now),
            attempts: self.attempts,
        }
    }

    /// The first attempt has not answered in its hedge delay: the hedge to
    /// start, if the budget has one and the deadline has not passed. It
    /// goes to the next target in the plan, or to the same one again for a
    /// route with one target, and has the first attempt's allowance.
    pub fn hedge(&mut self, now: Instant, targets: &mut impl Targets) -> Option<Try> {
        let primary = self.primary?;
        let allowance = self.hedge_timeout?;
        if self.finished || self.hedge.is_some() || now >= self.deadline {
            return None;
        }
        if !targets.spend_hedge() {
            return None;
        }
        self.hedge_timeout = None;
        let second = match self.plan.get(self.next) {
            Some(&p) if targets.admit(p) => {
                self.next += 1;
                p
            }
            _ if targets.admit_again(primary) => primary,
            _ => return None,
        };
        self.attempts += 1;
        self.hedge = Some(second);
        Some(Try {
            pick: second,
            timeout: self.left(now).min(allowance),
            hedge_after: None,
            failovers: Vec::new(),
        })
    }

    /// An attempt in flight failed with `error`; `upstream` and `model`
    /// name its target in the client's error.
    pub fn failed(&mut self, leg: Leg, upstream: &Arc<str>, model: &Arc<str>, error: AttemptError) {
        let Some(pick) = self.take(leg) else {
            return;
        };
        self.all_timed_out &= error.is_timeout();
        self.all_overloaded &= error.is_overloaded();
        match error.retry_after() {
            Some(wait) => self.retry_after = Some(self.retry_after.map_or(wait, |r| r.min(wait))),
            None => self.all_rate_limited = false,
        }
        self.stop |= !error.retryable();
        self.unreported.push(Handover {
            from: pick,
            reason: error.clone(),
        });
        self.tried.push(Tried::Failed {
            upstream: upstream.clone(),
            model: model.clone(),
            error,
        });
    }

    /// An attempt in flight answered; the request is committed to it, and
    /// the other attempt, if any, is to be dropped. `None` when `leg` is
    /// not in flight.
    pub fn answered(&mut self, leg: Leg) -> Option<Answer> {
        let pick = self.take(leg)?;
        self.primary = None;
        self.hedge = None;
        self.finished = true;
        Some(Answer {
            pick,
            attempts: self.attempts,
            fallback: pick.0 > 0,
            hedge_won: leg == Leg::Hedge,
        })
    }

    fn take(&mut self, leg: Leg) -> Option<Pick> {
        if self.finished {
            return None;
        }
        match leg {
            Leg::Primary => self.primary.take(),
            Leg::Hedge => self.hedge.take(),
        }
    }

    fn left(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// The error for a request that got no answer: 429 when every attempt
    /// was rate limited (with the shortest wait asked for), 503 (529 to an
    /// Anthropic client) when every attempt was overloaded, 504 when every
    /// attempt timed out or the deadline passed, else 502.
    fn give_up(&mut self, now: Instant) -> ProxyError {
        let attempts = std::mem::take(&mut self.tried);
        if self.all_rate_limited && self.attempts > 0 {
            ProxyError::RateLimited {
                attempts,
                retry_after: self.retry_after.unwrap_or(Duration::from_secs(1)),
            }
        } else if self.all_overloaded && self.attempts > 0 {
            ProxyError::UpstreamsOverloaded { attempts }
        } else if self.all_timed_out || now >= self.deadline {
            ProxyError::UpstreamsTimedOut { attempts }
        } else {
            ProxyError::UpstreamsFailed { attempts }
        }
    }
}

#[cfg(test)]
mod tests;
