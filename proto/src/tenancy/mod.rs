//! Tenants: what each client key may use (its model allowlist, its request
//! and token rates, its prepaid credits and its priority class), and the
//! replicated ledger that makes those limits hold across every region.
//!
//! The limits are cluster-wide with no external store. Each node admits
//! requests locally against its *share* of a key's limit ([`share`]); the
//! shares of all nodes sum to one and are computed from the replicated
//! state alone (every node's recent demand, in its [`TenantReport`]), so
//! every node at the same applied index computes the same shares. Spending
//! and usage travel the same way: each node reports cumulative counters per
//! process lifetime (its `boot`), which the ledger applies idempotently
//! ([`ledger`]): a report committed twice, or overtaken by a newer one,
//! counts once, and nothing is counted twice across restarts and leader
//! changes.
//!
//! Nothing here reads a clock or does I/O: days and boots come in reports,
//! and `apply` is deterministic like the rest of the state machine.

mod glob;
pub mod ledger;
pub mod query;
pub mod share;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

pub use glob::glob_match;
pub use ledger::{Credits, NodeLedger, Tenancy};

/// Nanodollars in one US dollar: costs, credits and balances are integers
/// of nanodollars, so sums are exact and the same on every node.
pub const NANOS_PER_USD: u64 = 1_000_000_000;

/// The most entries a key's model allowlist may hold.
pub const MAX_ALLOWED_MODELS: usize = 256;

/// The largest opening balance or top-up, in US dollars: far above any
/// real account, far below what a `u64` of nanodollars holds.
pub const MAX_CREDITS_USD: f64 = 1e9;

/// What a key may do, beyond being a valid key. Replicated with the key
/// (in [`crate::state::KeyRecord`]); every field absent means "no limit",
/// so a key without limits behaves as keys always did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Route names and addressed models (`upstream/model`) the key may
    /// call; `*` matches any run of characters. Absent: every model.
    pub models: Option<Vec<String>>,
    /// Requests per minute, across the whole cluster.
    pub rpm: Option<u64>,
    /// Tokens per minute (input + output, from each answer's usage),
    /// across the whole cluster.
    pub tpm: Option<u64>,
    /// The opening prepaid balance, in nanodollars: set, the key is
    /// refused once its balance is spent; absent, no balance is checked.
    /// Only a key's first record with a balance opens its ledger; later
    /// changes go through top-ups, so re-putting a key never refills it.
    pub credits_nanos: Option<u64>,
    /// Its priority class; absent: the last (default) class.
    pub class: Option<String>,
}

impl KeyLimits {
    /// The limits as a config file or an admin body gives them (credits
    /// in dollars), checked; the field at fault is named as written there
    /// (`rpm`, `credits_usd`, `models[2]`).
    pub fn from_dollars(
        models: Option<Vec<String>>,
        rpm: Option<u64>,
        tpm: Option<u64>,
        credits_usd: Option<f64>,
        class: Option<String>,
    ) -> Result<Self, FieldError> {
        let credits_nanos = credits_usd
            .map(usd_to_nanos)
            .transpose()
            .map_err(|m| FieldError::new("credits_usd", m))?;
        let limits = Self {
            models,
            rpm,
            tpm,
            credits_nanos,
            class,
        };
        limits
            .validate("")
            .map_err(|e| FieldError::new(e.field.trim_start_matches('.'), e.message))?;
        Ok(limits)
    }

    /// Whether the key may call `model` (a route name or an addressed
    /// `upstream/model`).
    pub fn allows(&self, model: &str) -> bool {
        match &self.models {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob_match(p, model)),
        }
    }

    /// Whether any per-minute limit needs the cluster-wide shares.
    pub fn is_rate_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }

    /// Checks every field, naming the first at fault under `field`.
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        if let Some(models) = &self.models {
            if models.len() > MAX_ALLOWED_MODELS {
                return Err(FieldError::new(
                    format!("{field}.models"),
                    format!("at most {MAX_ALLOWED_MODELS} entries"),
                ));
            }
            for (i, m) in models.iter().enumerate() {
                let ok = !m.is_empty()
                    && m.len() <= 256
                    && m.chars().all(|c| !c.is_control() && !c.is_whitespace());
                if !ok {
                    return Err(FieldError::new(
                        format!("{field}.models[{i}]"),
                        format!(
                            "`{}` must be 1 to 256 characters without spaces or control \
                             characters (`*` matches any run of characters)",
                            m.escape_debug()
                        ),
                    ));
                }
            }
        }
        for (name, value) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if value == Some(0) {
                return Err(FieldError::new(
                    format!("{field}.{name}"),
                    "must be at least 1 (leave it out for no limit)",
                ));
            }
        }
        if self.credits_nanos.is_some_and(|n| n > usd_to_nanos_max()) {
            return Err(FieldError::new(
                format!("{field}.credits_usd"),
                format!("must be at most {MAX_CREDITS_USD}"),
            ));
        }
        if let Some(class) = &self.class {
            check_token(&format!("{field}.class"), class, 64)?;
        }
        Ok(())
    }
}

fn usd_to_nanos_max() -> u64 {
    (MAX_CREDITS_USD as u64).saturating_mul(NANOS_PER_USD)
}

/// Dollars as nanodollars, refusing what is not a finite amount in
/// `0..=MAX_CREDITS_USD` (the caller names the field).
pub fn usd_to_nanos(usd: f64) -> Result<u64, String> {
    if !usd.is_finite() || usd < 0.0 {
        return Err("must be a finite amount of US dollars, 0 or more".into());
    }
    if usd > MAX_CREDITS_USD {
        return Err(format!("must be at most {MAX_CREDITS_USD}"));
    }
    Ok((usd * NANOS_PER_USD as f64).round() as u64)
}

/// Nanodollars as dollars, for display and JSON.
pub fn nanos_to_usd(nanos: i128) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

/// A short identifier (a class name, a top-up id): 1 to `max` of
/// `A-Z a-z 0-9 - _ . :`.
pub fn check_token(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "`{}` must be 1 to {max} of A-Z a-z 0-9 - _ . :",
                value.escape_debug()
            ),
        ))
    }
}

/// One cell of the usage ledger: a key's use of one model through one
/// upstream on one day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageBucket {
    /// The key holder's name.
    pub key: String,
    /// Days since 1970-01-01 (UTC) on the reporting node's clock.
    pub day: u32,
    /// The model as the client named it (a route or an addressed model).
    pub model: String,
    /// The upstream that answered.
    pub upstream: String,
}

/// What a cell of the usage ledger counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Answered requests.
    pub requests: u64,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Cost at the catalogue's prices, in nanodollars (0 where unpriced).
    pub cost_nanos: u64,
}

impl Counters {
    /// Field-wise sum, saturating.
    pub fn add(&mut self, other: &Counters) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
    }

    /// How far `self` (a newer cumulative reading) is past `older`, field
    /// by field; a field that went down counts as no growth.
    pub fn growth_since(&self, older: &Counters) -> Counters {
        Counters {
            requests: self.requests.saturating_sub(older.requests),
            input_tokens: self.input_tokens.saturating_sub(older.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(older.output_tokens),
            cost_nanos: self.cost_nanos.saturating_sub(older.cost_nanos),
        }
    }

    /// Field-wise maximum: the later of two cumulative readings.
    pub fn max(&self, other: &Counters) -> Counters {
        Counters {
            requests: self.requests.max(other.requests),
            input_tokens: self.input_tokens.max(other.input_tokens),
            output_tokens: self.output_tokens.max(other.output_tokens),
            cost_nanos: self.cost_nanos.max(other.cost_nanos),
        }
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// What one node tells the cluster about its keys, every report interval
/// while any key is in use there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReport {
    /// Identifies the sending process's lifetime and orders lifetimes (its
    /// start time in Unix milliseconds): counters are cumulative per boot,
    /// and a report of an older boot than the ledger holds is ignored.
    pub boot: u64,
    /// Grows with each report of one boot; a report replaces the demand of
    /// an earlier one only if its number is higher.
    pub seq: u64,
    /// How many days of usage the sender keeps (its `[tenants]
    /// usage_days`); the ledger drops days older than that before the
    /// newest day it has seen.
    pub usage_days: u32,
    /// Per key: requests asked of this node per minute, recently
    /// (admitted or not). The shares of every limited key follow it.
    pub demand: BTreeMap<String, u64>,
    /// Cumulative counters of this boot, for the cells that changed since
    /// the last report the sender knows was committed (sending a cell
    /// again is harmless: the ledger takes the growth past what it holds).
    pub usage: Vec<(UsageBucket, Counters)>,
}

/// The most usage cells one report may carry.
pub const MAX_REPORT_CELLS: usize = 10_000;
