//! The embedded default configuration: a node that serves at once, routing to
//! the well-known providers whose key is in its usual environment variable.

use proto::config::Config;

use crate::routing::Secrets;

/// The embedded default, as TOML.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// What the default keeps and skips on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultConfig {
    /// The configuration to run.
    pub config: Config,
    /// Upstreams kept, with the variable their key came from.
    pub serving: Vec<(String, String)>,
    /// Upstreams skipped, with the variable that is not set.
    pub skipped: Vec<(String, String)>,
}

/// The embedded default, trimmed to the providers whose keys are set: their
/// upstreams, the routes' targets on them, and the routes left with a target.
pub fn default_config(secrets: &dyn Secrets) -> Result<DefaultConfig, proto::ConfigError> {
    let mut config = Config::from_toml(DEFAULT_TOML)?;
    let (mut serving, mut skipped) = (Vec::new(), Vec::new());
    config.upstreams.retain(|u| {
        let var = u.api_key_env.clone().unwrap_or_default();
        let present = secrets.env(&var).is_some();
        let entry = (u.id.clone(), var);
        if present {
            serving.push(entry)
        } else {
            skipped.push(entry)
        }
        present
    });
    let kept: Vec<String> = serving.iter().map(|(id, _)| id.clone()).collect();
    for route in &mut config.routes {
        for tier in &mut route.tiers {
            tier.retain(|t| kept.contains(&t.upstream));
        }
        route.tiers.retain(|tier| !tier.is_empty());
    }
    config.routes.retain(|r| !r.tiers.is_empty());
    config.validate()?;
    Ok(DefaultConfig {
        config,
        serving,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    struct Env(&'static [&'static str]);
    impl Secrets for Env {
        fn env(&self, name: &str) -> Option<String> {
            self.0.contains(&name).then(|| "k".to_owned())
        }
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let all = Config::from_toml(DEFAULT_TOML).unwrap();
        assert!(all.upstreams.len() >= 5);
        assert!(all.keys.is_empty() && all.listen.api.ip().is_loopback());
    }

    #[test]
    fn the_admin_api_may_use_every_default_provider_variable() {
        use proto::config::{SecretOrigin, SecretPolicy};
        // Even those whose upstream was trimmed because its key is not set.
        let d = default_config(&Env(&["OPENAI_API_KEY"])).unwrap();
        let policy = SecretPolicy::new(&d.config);
        for u in Config::from_toml(DEFAULT_TOML).unwrap().upstreams {
            let var = u.api_key_env.unwrap();
            assert!(
                policy
                    .check_env("upstream", &var, SecretOrigin::AdminApi)
                    .is_ok(),
                "{var}"
            );
        }
        assert!(
            policy
                .check_env("upstream", "MERIDIAN_ADMIN_TOKEN", SecretOrigin::AdminApi)
                .is_err()
        );
    }

    #[test]
    fn keeps_only_providers_with_keys() {
        let d = default_config(&Env(&["DEEPSEEK_API_KEY", "OPENAI_API_KEY"])).unwrap();
        let ids: Vec<_> = d.config.upstreams.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["openai", "deepseek"]);
        let fast = d.config.routes.iter().find(|r| r.model == "fast").unwrap();
        assert_eq!(fast.tiers.len(), 2);
        assert_eq!(fast.tiers[0][0].upstream, "deepseek");
        assert_eq!(fast.tiers[1][0].upstream, "openai");
        assert!(
            d.config
                .routes
                .iter()
                .all(|r| r.model != "claude-sonnet-4-0")
        );
        assert!(
            d.skipped
                .iter()
                .any(|(id, var)| id == "anthropic" && var == "ANTHROPIC_API_KEY")
        );
    }

    #[test]
    fn no_keys_leaves_no_routes() {
        let d = default_config(&Env(&[])).unwrap();
        assert!(d.config.routes.is_empty() && d.serving.is_empty());
    }
}
