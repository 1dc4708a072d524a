//! What the fake provider does to each data request: the faults a test, a
//! benchmark or a demo programs at run time through the control plane.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

/// z-score of the 99th percentile of the standard normal distribution: a
/// log-normal with median p50 has `sigma = (ln p99 - ln p50) / Z99`.
const Z99: f64 = 2.326_347_874_040_841;

/// The longest delay a sample may take, so a wild p99 cannot park a request
/// (and its task) for hours.
const MAX_DELAY: Duration = Duration::from_secs(600);

/// Spreads consecutive request numbers over the seed space (the golden ratio
/// constant of Fibonacci hashing), so request `n` and `n + 1` get unrelated draws.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// Why a behaviour (from the control plane or `--behavior`) was refused; the
/// message is sent back to the caller as is, so it names the field.
#[derive(Debug, thiserror::Error)]
pub enum BehaviorError {
    /// The JSON did not parse or named an unknown field.
    #[error("invalid behaviour: {0}")]
    Json(#[from] serde_json::Error),
    /// A PATCH body that is not a JSON object.
    #[error("invalid behaviour: a patch must be a JSON object")]
    NotAnObject,
    /// A field parsed but its value makes no sense.
    #[error("invalid behaviour: {0}")]
    Invalid(String),
}

/// A latency distribution, written `{"fixed_ms": 5}` or
/// `{"p50_ms": 100, "p99_ms": 1000}`; the second is a log-normal fitted to the
/// two percentiles, the usual shape of real provider latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LatencySpec", into = "LatencySpec")]
pub enum Latency {
    /// Always the same delay, in milliseconds.
    Fixed {
        /// The delay in milliseconds.
        ms: f64,
    },
    /// A log-normal with the given median and 99th percentile.
    LogNormal {
        /// Median in milliseconds.
        p50_ms: f64,
        /// 99th percentile in milliseconds.
        p99_ms: f64,
        /// The fitted distribution, in milliseconds.
        dist: LogNormal<f64>,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 0.0 }
    }
}

impl Latency {
    /// Fits a log-normal to a median and a 99th percentile (both in ms):
    /// `mu = ln p50`, `sigma = (ln p99 - ln p50) / 2.3263`.
    pub fn log_normal(p50_ms: f64, p99_ms: f64) -> Result<Self, BehaviorError> {
        if !(p50_ms.is_finite() && p50_ms > 0.0) {
            return Err(invalid(format!("p50_ms must be > 0, got {p50_ms}")));
        }
        if !(p99_ms.is_finite() && p99_ms >= p50_ms) {
            return Err(invalid(format!("p99_ms must be >= p50_ms, got {p99_ms}")));
        }
        let (mu, sigma) = (p50_ms.ln(), (p99_ms.ln() - p50_ms.ln()) / Z99);
        let dist = LogNormal::new(mu, sigma).map_err(|e| invalid(e.to_string()))?;
        Ok(Latency::LogNormal {
            p50_ms,
            p99_ms,
            dist,
        })
    }

    /// Draws one delay (capped at ten minutes).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = match self {
            Latency::Fixed { ms } => *ms,
            Latency::LogNormal { dist, .. } => dist.sample(rng),
        };
        Duration::try_from_secs_f64(ms / 1000.0).map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
    }
}

/// The wire form of [`Latency`]: exactly `fixed_ms`, or `p50_ms` with `p99_ms`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fixed_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
}

impl TryFrom<LatencySpec> for Latency {
    type Error = BehaviorError;

    fn try_from(spec: LatencySpec) -> Result<Self, Self::Error> {
        match (spec.fixed_ms, spec.p50_ms, spec.p99_ms) {
            (Some(ms), None, None) if ms.is_finite() && ms >= 0.0 => Ok(Latency::Fixed { ms }),
            (Some(ms), None, None) => Err(invalid(format!("fixed_ms must be >= 0, got {ms}"))),
            (None, Some(p50), Some(p99)) => Latency::log_normal(p50, p99),
            _ => Err(invalid(
                "a latency is {\"fixed_ms\": N} or {\"p50_ms\": N, \"p99_ms\": M}".into(),
            )),
        }
    }
}

impl From<Latency> for LatencySpec {
    fn from(latency: Latency) -> Self {
        match latency {
            Latency::Fixed { ms } => LatencySpec {
                fixed_ms: Some(ms),
                p50_ms: None,
                p99_ms: None,
            },
            Latency::LogNormal { p50_ms, p99_ms, .. } => LatencySpec {
                fixed_ms: None,
                p50_ms: Some(p50_ms),
                p99_ms: Some(p99_ms),
            },
        }
    }
}

/// Everything programmable about the fake provider. Every field has a default
/// (a fast, healthy provider), so `{}` is valid and a PATCH names only what it
/// changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Delay before the response headers (and, for a stream, its first chunk).
    pub first_byte: Latency,
    /// Share of requests (0..1) whose first byte comes after `tail_first_byte`
    /// instead: a heavy tail on top of the usual latency, as providers have.
    pub tail_rate: f64,
    /// The first-byte delay of the tail.
    pub tail_first_byte: Latency,
    /// Delay between two chunks of a stream.
    pub chunk_delay: Latency,
    /// Number of content chunks in a stream (and of completion tokens); at
    /// least one is sent, fewer when the request's `max_tokens` is lower.
    pub chunks: u32,
    /// Share of requests (0..1) answered with `error_status`.
    pub error_rate: f64,
    /// The status of injected errors.
    pub error_status: u16,
    /// Share of requests (0..1) answered 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    /// The `Retry-After` of injected 429s, in seconds.
    pub retry_after_s: u64,
    /// Read each request, then never answer (until the client goes away).
    pub stall: bool,
    /// Abort the connection after this many chunks of a stream (after part of
    /// the body for a non-stream answer).
    pub cut_after_chunks: Option<u32>,
    /// Close the data listener, so connections are refused.
    pub refuse: bool,
    /// The request id every answer carries (in `x-request-id`, Anthropic's
    /// `request-id` or Azure's `apim-request-id`) instead of `req_mock_<n>`,
    /// so a test can offer a proxy a hostile one; one that is no header
    /// value is not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            first_byte: Latency::default(),
            tail_rate: 0.0,
            tail_first_byte: Latency::default(),
            chunk_delay: Latency::default(),
            chunks: 8,
            error_rate: 0.0,
            error_status: 500,
            rate_limit_rate: 0.0,
            retry_after_s: 1,
            stall: false,
            cut_after_chunks: None,
            refuse: false,
            request_id: None,
        }
    }
}

/// What one data request gets, decided up front from the behaviour and the
/// request's own random stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A normal answer.
    Answer,
    /// 429 with `Retry-After`.
    RateLimit,
    /// `error_status` with an error JSON.
    Error,
    /// Never answer.
    Stall,
    /// Answer, then abort the connection after this many chunks.
    Cut(u32),
}

/// One request's plan: the first-byte delay, the action, and the random stream
/// that later draws (chunk delays) continue from.
#[derive(Debug)]
pub struct Plan {
    /// Delay before the headers.
    pub first_byte: Duration,
    /// What to answer.
    pub action: Action,
    /// The request's random stream, for the chunk delays.
    pub rng: SmallRng,
}

impl Behavior {
    /// Parses and checks a full behaviour (PUT, `--behavior`).
    pub fn from_json(json: &[u8]) -> Result<Self, BehaviorError> {
        let behavior: Behavior = serde_json::from_slice(json)?;
        behavior.validate()
    }

    /// Returns this behaviour with the top-level fields of `patch` (a JSON
    /// object) replacing its own: the PATCH of the control plane.
    pub fn patched(&self, patch: &[u8]) -> Result<Self, BehaviorError> {
        let serde_json::Value::Object(patch) = serde_json::from_slice(patch)? else {
            return Err(BehaviorError::NotAnObject);
        };
        let mut merged = match serde_json::to_value(self)? {
            serde_json::Value::Object(map) => map,
            _ => return Err(BehaviorError::NotAnObject),
        };
        merged.extend(patch);
        let behavior: Behavior = serde_json::from_value(serde_json::Value::Object(merged))?;
        behavior.validate()
    }

    fn validate(self) -> Result<Self, BehaviorError> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("tail_rate", self.tail_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(format!("{name} must be within 0..1, got {rate}")));
            }
        }
        if !(400..=599).contains(&self.error_status) {
            let status = self.error_status;
            return Err(invalid(format!(
                "error_status must be 4xx or 5xx, got {status}"
            )));
        }
        Ok(self)
    }

    /// Decides what request number `n` gets. The draws come from
    /// `seed ^ n * SPREAD` alone, so the same seed repeats a run, and both
    /// rates are always drawn so one rate's value never shifts the other's draws.
    pub fn plan(&self, seed: u64, n: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ n.wrapping_mul(SPREAD));
        let rate_limited = rng.random::<f64>() < self.rate_limit_rate;
        let errored = rng.random::<f64>() < self.error_rate;
        let mut first_byte = self.first_byte.sample(&mut rng);
        if rng.random::<f64>() < self.tail_rate {
            first_byte = self.tail_first_byte.sample(&mut rng);
        }
        let action = if rate_limited {
            Action::RateLimit
        } else if errored {
            Action::Error
        } else if self.stall {
            Action::Stall
        } else if let Some(n) = self.cut_after_chunks {
            Action::Cut(n)
        } else {
            Action::Answer
        };
        Plan {
            first_byte,
            action,
            rng,
        }
    }
}

fn invalid(message: String) -> BehaviorError {
    BehaviorError::Invalid(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn empty_object_is_the_default() {
        assert_eq!(Behavior::from_json(b"{}").unwrap(), Behavior::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = Behavior::from_json(br#"{"eror_rate": 1}"#).unwrap_err();
        assert!(err.to_string().contains("eror_rate"), "{err}");
        let err = Behavior::from_json(br#"{"first_byte": {"fixed": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("fixed"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Behavior::from_json(br#"{"error_rate": 1.5}"#).is_err());
        assert!(Behavior::from_json(br#"{"rate_limit_rate": -0.1}"#).is_err());
        assert!(Behavior::from_json(br#"{"error_status": 200}"#).is_err());
        assert!(Behavior::from_json(br#"{"first_byte": {"p50_ms": 10}}"#).is_err());
        assert!(Behavior::from_json(br#"{"first_byte": {"p50_ms": 10, "p99_ms": 5}}"#).is_err());
        assert!(Behavior::from_json(br#"{"first_byte": {"fixed_ms": 1, "p50_ms": 1}}"#).is_err());
        assert!(Behavior::from_json(br#"{"chunk_delay": {"fixed_ms": -1}}"#).is_err());
    }

    #[test]
    fn a_tail_share_gets_the_tail_latency() {
        let b = Behavior::from_json(
            br#"{"first_byte": {"fixed_ms": 10}, "tail_rate": 0.1, "tail_first_byte": {"fixed_ms": 500}}"#,
        )
        .unwrap();
        let slow = (0..10_000)
            .filter(|n| b.plan(7, *n).first_byte == Duration::from_millis(500))
            .count();
        assert!((800..1_200).contains(&slow), "{slow}");
        assert!(Behavior::from_json(br#"{"tail_rate": 2}"#).is_err());
    }

    #[test]
    fn patch_merges_top_level_fields() {
        let base = Behavior::from_json(br#"{"chunks": 3, "error_rate": 0.5}"#).unwrap();
        let patched = base
            .patched(br#"{"error_rate": 0, "first_byte": {"fixed_ms": 7}}"#)
            .unwrap();
        assert_eq!(patched.chunks, 3);
        assert_eq!(patched.error_rate, 0.0);
        assert_eq!(patched.first_byte, Latency::Fixed { ms: 7.0 });

        let cut = patched.patched(br#"{"cut_after_chunks": 2}"#).unwrap();
        assert_eq!(cut.cut_after_chunks, Some(2));
        let uncut = cut.patched(br#"{"cut_after_chunks": null}"#).unwrap();
        assert_eq!(uncut.cut_after_chunks, None);
    }

    #[test]
    fn patch_is_checked_like_a_full_behavior() {
        let base = Behavior::default();
        assert!(base.patched(br#"{"nope": 1}"#).is_err());
        assert!(base.patched(br#"{"error_rate": 2}"#).is_err());
        assert!(matches!(
            base.patched(b"[1]"),
            Err(BehaviorError::NotAnObject)
        ));
    }

    #[test]
    fn behavior_round_trips_through_json() {
        let json =
            br#"{"first_byte": {"p50_ms": 100, "p99_ms": 1000}, "chunk_delay": {"fixed_ms": 2}}"#;
        let behavior = Behavior::from_json(json).unwrap();
        let again = Behavior::from_json(&serde_json::to_vec(&behavior).unwrap()).unwrap();
        assert_eq!(behavior, again);
    }

    #[test]
    fn log_normal_fits_the_percentiles() {
        let latency = Latency::log_normal(100.0, 1000.0).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut samples: Vec<f64> = (0..20_000)
            .map(|_| latency.sample(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        samples.sort_by(f64::total_cmp);
        let p50 = samples[samples.len() / 2];
        let p99 = samples[samples.len() * 99 / 100];
        assert!((90.0..110.0).contains(&p50), "p50 {p50}");
        assert!((850.0..1150.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn equal_percentiles_give_a_fixed_delay() {
        let latency = Latency::log_normal(50.0, 50.0).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let ms = latency.sample(&mut rng).as_secs_f64() * 1000.0;
        assert!((ms - 50.0).abs() < 1e-6, "{ms}");
    }

    #[test]
    fn plans_repeat_for_a_seed_and_follow_the_rates() {
        let behavior = Behavior {
            error_rate: 0.3,
            rate_limit_rate: 0.2,
            ..Behavior::default()
        };
        let run =
            |seed| -> Vec<Action> { (0..2000).map(|n| behavior.plan(seed, n).action).collect() };
        let (a, b, c) = (run(42), run(42), run(43));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let limited = a.iter().filter(|x| **x == Action::RateLimit).count();
        let errors = a.iter().filter(|x| **x == Action::Error).count();
        assert!((300..500).contains(&limited), "{limited}");
        // 0.3 of the 0.8 that were not rate limited.
        assert!((380..580).contains(&errors), "{errors}");
    }

    #[test]
    fn faults_take_precedence_in_order() {
        let all = Behavior {
            stall: true,
            cut_after_chunks: Some(1),
            ..Behavior::default()
        };
        assert_eq!(all.plan(1, 1).action, Action::Stall);
        let cut = Behavior {
            cut_after_chunks: Some(1),
            ..Behavior::default()
        };
        assert_eq!(cut.plan(1, 1).action, Action::Cut(1));
        let error = Behavior {
            error_rate: 1.0,
            stall: true,
            ..Behavior::default()
        };
        assert_eq!(error.plan(1, 1).action, Action::Error);
        let limited = Behavior {
            rate_limit_rate: 1.0,
            ..error
        };
        assert_eq!(limited.plan(1, 1).action, Action::RateLimit);
    }
}
