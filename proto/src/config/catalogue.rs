//! `[catalogue]`: how often the leader asks each upstream with
//! `discover_models = true` for its model list, and how long it waits.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How the replicated catalogue is refreshed. Only the Raft leader fetches;
/// every node lists what it committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogueConfig {
    /// How often each discovering upstream's list is fetched again (an
    /// upstream new to the leader, or whose configuration changed, is
    /// fetched at once). Providers change their lists rarely: ten minutes.
    pub refresh_ms: u64,
    /// How long one fetch (all its pages) may take before it counts as failed.
    pub timeout_ms: u64,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        Self {
            refresh_ms: 600_000,
            timeout_ms: 10_000,
        }
    }
}

impl CatalogueConfig {
    /// The shortest refresh: a provider's list endpoint is not a health
    /// probe, and a cluster must not hammer it.
    pub const MIN_REFRESH_MS: u64 = 10_000;
    /// The longest refresh: a day (catches seconds written as milliseconds).
    pub const MAX_REFRESH_MS: u64 = 86_400_000;

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(Self::MIN_REFRESH_MS..=Self::MAX_REFRESH_MS).contains(&self.refresh_ms) {
            return Err(ConfigError::new(
                "catalogue.refresh_ms",
                format!(
                    "must be between {} (10 s) and {} (a day)",
                    Self::MIN_REFRESH_MS,
                    Self::MAX_REFRESH_MS
                ),
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.refresh_ms {
            return Err(ConfigError::new(
                "catalogue.timeout_ms",
                "must be greater than 0 and at most catalogue.refresh_ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn refresh_and_timeout_are_bounded() {
        assert!(CatalogueConfig::default().validate().is_ok());
        let short = CatalogueConfig {
            refresh_ms: 9_999,
            ..CatalogueConfig::default()
        };
        assert_eq!(short.validate().unwrap_err().field, "catalogue.refresh_ms");
        let long = CatalogueConfig {
            refresh_ms: CatalogueConfig::MAX_REFRESH_MS + 1,
            ..CatalogueConfig::default()
        };
        assert_eq!(long.validate().unwrap_err().field, "catalogue.refresh_ms");
        for timeout_ms in [0, 600_001] {
            let bad = CatalogueConfig {
                timeout_ms,
                ..CatalogueConfig::default()
            };
            assert_eq!(bad.validate().unwrap_err().field, "catalogue.timeout_ms");
        }
    }

    #[test]
    fn the_section_parses_with_defaults_for_what_it_omits() {
        let c: CatalogueConfig = toml::from_str("refresh_ms = 60000\n").unwrap();
        assert_eq!(c.refresh_ms, 60_000);
        assert_eq!(c.timeout_ms, 10_000);
        assert!(toml::from_str::<CatalogueConfig>("refresh = 1\n").is_err());
    }
}
