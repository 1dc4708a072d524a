//! `[tenants]` of a case: client keys with limits (rpm, tpm, credits) that
//! the load calls with, each region offering each key its own open-loop
//! rate, and optional credit top-ups beside the load. A case with this
//! section is judged on the keys' cluster-wide admissions and ledgers (see
//! [`crate::tenants`]) as well as on the usual SLA.
//!
//! ```toml
//! [tenants]
//! slack = 0.10                       # admitted <= limit * (1 + slack) per minute
//! prices = [100.0, 400.0]            # route price, USD per million input/output tokens
//!
//! [[tenants.keys]]
//! name = "rpm"
//! rate = 30                          # requests per second from EACH region
//! rpm = 600
//!
//! [tenants.topups]
//! key = "credits"
//! rate = 1.0                         # top-ups per second
//! usd = 0.05
//! ```

use serde::{Deserialize, Serialize};

use super::{CaseError, field_error};

/// The raw `[tenants]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantsSpec {
    /// The keys the load calls with (at least one).
    pub keys: Vec<KeySpec>,
    /// How far over a limit a minute may go before the case fails (0.10:
    /// 10 %).
    #[serde(default = "default_slack")]
    pub slack: f64,
    /// The route's price, USD per million input and output tokens, so that
    /// credits run out within a run.
    #[serde(default = "default_prices")]
    pub prices: [f64; 2],
    /// Credit top-ups made beside the load.
    #[serde(default)]
    pub topups: Option<TopupSpec>,
    /// How long to wait after the load for every node's ledger to agree
    /// and stop moving, in seconds.
    #[serde(default = "default_settle")]
    pub settle_s: f64,
}

fn default_slack() -> f64 {
    0.10
}

fn default_prices() -> [f64; 2] {
    [0.1, 0.4]
}

fn default_settle() -> f64 {
    60.0
}

/// One client key of the case.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Its name (letters, digits, `-`, `_`).
    pub name: String,
    /// Requests per second each region sends with it.
    pub rate: f64,
    /// `rpm` of the key.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// `tpm` of the key.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// `credits_usd` of the key (its opening balance).
    #[serde(default)]
    pub credits_usd: Option<f64>,
}

/// Top-ups of one key's credits, each with its own id, retried with the
/// same id when the answer is ambiguous.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopupSpec {
    /// The key topped up (one of `keys`, with `credits_usd`).
    pub key: String,
    /// Top-ups per second.
    pub rate: f64,
    /// USD added by each.
    pub usd: f64,
    /// Tries of one id before it is given up (ambiguous answers only).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// Timeout of one call, in milliseconds.
    #[serde(default = "default_topup_timeout")]
    pub timeout_ms: u64,
}

fn default_tries() -> u32 {
    5
}

fn default_topup_timeout() -> u64 {
    10_000
}

impl TenantsSpec {
    /// Checks every field; errors name it (`tenants.keys[1].rate`).
    pub fn check(&self) -> Result<(), CaseError> {
        if self.keys.is_empty() {
            return Err(field_error("tenants.keys", "at least one key"));
        }
        for (i, k) in self.keys.iter().enumerate() {
            let f = |name: &str| format!("tenants.keys[{i}].{name}");
            if k.name.is_empty()
                || !k
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(field_error(
                    f("name"),
                    "non-empty letters, digits, '-' or '_'",
                ));
            }
            if self.keys[..i].iter().any(|o| o.name == k.name) {
                return Err(field_error(f("name"), format!("{:?} twice", k.name)));
            }
            if !(k.rate.is_finite() && k.rate > 0.0 && k.rate <= 2_000.0) {
                return Err(field_error(
                    f("rate"),
                    format!("must be within (0, 2000] per second, got {}", k.rate),
                ));
            }
            if k.rpm == Some(0) || k.tpm == Some(0) {
                return Err(field_error(f("rpm"), "rpm and tpm must be >= 1"));
            }
            if let Some(c) = k.credits_usd
                && !(c.is_finite() && c >= 0.0)
            {
                return Err(field_error(f("credits_usd"), "must be >= 0"));
            }
        }
        if !(self.slack.is_finite() && self.slack >= 0.0) {
            return Err(field_error("tenants.slack", "must be >= 0"));
        }
        if !self.prices.iter().all(|p| p.is_finite() && *p >= 0.0) {
            return Err(field_error("tenants.prices", "must be >= 0"));
        }
        if !(self.settle_s.is_finite() && self.settle_s >= 0.0) {
            return Err(field_error("tenants.settle_s", "must be >= 0"));
        }
        if let Some(t) = &self.topups {
            let key = self.keys.iter().find(|k| k.name == t.key);
            if key.is_none_or(|k| k.credits_usd.is_none()) {
                return Err(field_error(
                    "tenants.topups.key",
                    format!("{:?} must be one of tenants.keys with credits_usd", t.key),
                ));
            }
            if !(t.rate.is_finite() && t.rate > 0.0 && t.rate <= 100.0) {
                return Err(field_error(
                    "tenants.topups.rate",
                    "must be within (0, 100]",
                ));
            }
            if !(t.usd.is_finite() && t.usd > 0.0) {
                return Err(field_error("tenants.topups.usd", "must be > 0"));
            }
            if t.tries == 0 || t.timeout_ms == 0 {
                return Err(field_error(
                    "tenants.topups.tries",
                    "tries and timeout_ms must be >= 1",
                ));
            }
        }
        Ok(())
    }

    /// The secret of key `name` (the load sends it as a bearer token).
    pub fn secret(name: &str) -> String {
        format!("chaos-tenant-key-{name}")
    }

    /// The environment variable a node reads key `index`'s secret from.
    pub fn env_var(index: usize) -> String {
        format!("CHAOS_TENANT_KEY_{index}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn spec(text: &str) -> Result<(), String> {
        let spec: TenantsSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.check().map_err(|e| e.to_string())
    }

    #[test]
    fn a_key_and_its_topups_parse() {
        spec(
            "[[keys]]\nname = \"c\"\nrate = 5\ncredits_usd = 1.0\n\
             [topups]\nkey = \"c\"\nrate = 1\nusd = 0.5\n",
        )
        .unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let e = spec("keys = []").unwrap_err();
        assert!(e.contains("tenants.keys"), "{e}");
        let e = spec("[[keys]]\nname = \"a\"\nrate = 0\n").unwrap_err();
        assert!(e.contains("tenants.keys[0].rate"), "{e}");
        let e = spec("[[keys]]\nname = \"a\"\nrate = 1\n[[keys]]\nname = \"a\"\nrate = 1\n")
            .unwrap_err();
        assert!(e.contains("tenants.keys[1].name"), "{e}");
        let e =
            spec("[[keys]]\nname = \"a\"\nrate = 1\n[topups]\nkey = \"a\"\nrate = 1\nusd = 1\n")
                .unwrap_err();
        assert!(e.contains("tenants.topups.key"), "{e}");
        let e = spec("[[keys]]\nname = \"a\"\nrate = 1\nburst = 3\n").unwrap_err();
        assert!(e.contains("burst"), "{e}");
    }
}
