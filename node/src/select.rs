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
    let bar = AvoidBar::of(tier, policy);
    tier.iter().map(|t| bar.avoids(t, policy)).collect()
}

/// The p99 above which a tier's targets are avoided ([`avoided`]), worked
/// out once per tier: every request plans with it, where a list of flags
/// would be allocated per tier and request.
#[derive(Debug, Clone, Copy)]
pub struct AvoidBar {
    /// The lowest p99 among the tier's candidates.
    best: f64,
}

impl AvoidBar {
    /// The bar of `tier`.
    pub fn of(tier: &[TargetStats], policy: &Policy) -> Self {
        let best = tier
            .iter()
            .filter(|t| policy.candidate(t))
            .map(|t| policy.p99(t))
            .fold(f64::INFINITY, f64::min);
        Self { best }
    }

    /// Whether `t`, a target of the tier, is avoided.
    pub fn avoids(self, t: &TargetStats, policy: &Policy) -> bool {
        policy.avoid_ratio > 1.0
            && policy.candidate(t)
            && policy.p99(t) >= policy.avoid_ratio * self.best
    }
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
        let bar = AvoidBar::of(tier, policy);
        let mut healthy: Vec<(f64, Pick)> = Vec::with_capacity(tier.len());
        let mut slow: Vec<(f64, Pick)> = Vec::new();
        for (i, stats) in tier.iter().enumerate() {
            if !stats.usable {
                continue;
            }
            let avoided = bar.avoids(stats, policy);
            match stats.circuit {
                // Open circuits after every degraded target.
                Circuit::Open => last_resort.push((2.0 + stats.error_rate, (t, i))),
                Circuit::HalfOpen => order.push((t, i)),
                Circuit::Closed if policy.degraded(stats) => {
                    last_resort.push((stats.error_rate, (t, i)))
                }
                Circuit::Closed if avoided && stats.probe => order.push((t, i)),
                Circuit::Closed if avoided => slow.push((policy.score(stats), (t, i))),
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
mod tests;
