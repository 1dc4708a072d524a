//! Routes: the model names clients send, the tiers of targets behind each,
//! and a route's hedging.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Hedging for one route: when an attempt has not answered by its target's
/// `quantile` time to first byte, a second attempt goes to the next target
/// (or the same one, for a route with one target); the first answer wins and
/// the other is cancelled. The budget caps the extra load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// Which quantile of the target's time to first byte to wait for.
    pub quantile: f64,
    /// Extra attempts allowed, as a share of the route's requests.
    pub budget: f64,
    /// Never hedge sooner than this.
    pub min_delay_ms: u64,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            quantile: 0.95,
            budget: 0.1,
            min_delay_ms: 0,
        }
    }
}

/// A model name clients may send, and the tiers of targets behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// What clients send as `model`.
    pub model: String,
    /// Tried in order; within a tier the healthiest target wins.
    pub tiers: Vec<Vec<TargetConfig>>,
    /// Overrides `proxy.max_attempts` for this route.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Overrides `proxy.first_byte_timeout_ms` for this route.
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    /// Overrides `proxy.request_timeout_ms` for this route.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Overrides `health.error_threshold` for this route's targets.
    #[serde(default)]
    pub error_threshold: Option<f64>,
    /// Hedge slow attempts; off when absent.
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
}

/// A provider model behind a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Id of an `[[upstreams]]` entry.
    pub upstream: String,
    /// The model name the provider expects.
    pub model: String,
    /// Price per million input tokens, for the cost in the request log.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Price per million output tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
    /// Price per million input tokens read from the provider's prompt
    /// cache, where it bills them apart (absent: billed as input).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

impl RouteConfig {
    /// Validates one route; `known` says whether an upstream id exists.
    pub fn validate(&self, at: &str, known: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        if self.model.is_empty()
            || self.model.len() > 256
            || self.model.chars().any(char::is_control)
        {
            return Err(ConfigError::new(
                format!("{at}.model"),
                "must be 1 to 256 printable characters",
            ));
        }
        if self.tiers.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.tiers"),
                "needs at least one tier",
            ));
        }
        for (t, tier) in self.tiers.iter().enumerate() {
            if tier.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.tiers[{t}]"),
                    "needs at least one target",
                ));
            }
            let mut seen = HashSet::new();
            for (j, target) in tier.iter().enumerate() {
                let here = format!("{at}.tiers[{t}][{j}]");
                if !known(&target.upstream) {
                    return Err(ConfigError::new(
                        format!("{here}.upstream"),
                        format!("no upstream with id `{}`", target.upstream),
                    ));
                }
                if target.model.is_empty() || target.model.chars().any(char::is_control) {
                    return Err(ConfigError::new(
                        format!("{here}.model"),
                        "must be a provider model name",
                    ));
                }
                if !seen.insert((&target.upstream, &target.model)) {
                    return Err(ConfigError::new(
                        format!("{here}.upstream"),
                        "the same upstream and model appear twice in this tier",
                    ));
                }
                for (name, price) in [
                    ("input_per_mtok", target.input_per_mtok),
                    ("output_per_mtok", target.output_per_mtok),
                    (
                        "cached_input_per_mtok",
                        target.cached_input_per_mtok.unwrap_or(0.0),
                    ),
                ] {
                    if !price.is_finite() || price < 0.0 {
                        return Err(ConfigError::new(
                            format!("{here}.{name}"),
                            "must be a price of 0 or more",
                        ));
                    }
                }
            }
        }
        for (field, value) in [
            ("max_attempts", self.max_attempts.map(u64::from)),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == Some(0) {
                return Err(ConfigError::new(
                    format!("{at}.{field}"),
                    "must be greater than 0",
                ));
            }
        }
        if let Some(threshold) = self.error_threshold
            && !(0.0..=1.0).contains(&threshold)
        {
            return Err(ConfigError::new(
                format!("{at}.error_threshold"),
                "must be between 0 and 1",
            ));
        }
        if let Some(hedge) = &self.hedge {
            if !(hedge.quantile > 0.0 && hedge.quantile < 1.0) {
                return Err(ConfigError::new(
                    format!("{at}.hedge.quantile"),
                    "must be between 0 and 1, e.g. 0.95",
                ));
            }
            if !(hedge.budget > 0.0 && hedge.budget <= 1.0) {
                return Err(ConfigError::new(
                    format!("{at}.hedge.budget"),
                    "must be above 0 and at most 1 (a share of the route's requests)",
                ));
            }
        }
        Ok(())
    }
}
