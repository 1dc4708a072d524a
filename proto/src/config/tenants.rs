//! `[tenants]`: how long the usage ledger keeps its days.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::tenancy::ledger::DEFAULT_USAGE_DAYS;

/// How the replicated usage ledger is kept. Set it the same on every node:
/// each node's reports carry its value, and the ledger keeps what the
/// latest report asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    /// Days of usage (per key, model and upstream) kept in the replicated
    /// state and its snapshots.
    pub usage_days: u32,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            usage_days: DEFAULT_USAGE_DAYS,
        }
    }
}

impl TenantsConfig {
    /// The most days kept: about three years.
    pub const MAX_USAGE_DAYS: u32 = 1100;

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=Self::MAX_USAGE_DAYS).contains(&self.usage_days) {
            return Err(ConfigError::new(
                "tenants.usage_days",
                format!("must be between 1 and {}", Self::MAX_USAGE_DAYS),
            ));
        }
        Ok(())
    }
}
