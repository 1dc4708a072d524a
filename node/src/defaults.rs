//! The embedded default configuration: a node that serves at once, routing to
//! the well-known providers whose key is in its usual environment variable.
//!
//! The default seeds the cluster state in its data dir once, like any file.
//! So that "set a key and restart" works, a node on the embedded default
//! brings that state in line with the keys set now ([`follow_keys`]) as long
//! as the state is still exactly what the embedded default seeds for some
//! set of keys: nobody changed it through the admin API. Once someone did,
//! the state is theirs and is left alone (and the node says so).

use std::collections::BTreeSet;

use proto::config::{Config, UpstreamConfig};
use proto::state::{ClusterState, Command};

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
    let (mut serving, mut skipped) = (Vec::new(), Vec::new());
    let config = trimmed(|u| {
        let var = u.api_key_env.clone().unwrap_or_default();
        let present = secrets.env(&var).is_some();
        let entry = (u.id.clone(), var);
        if present {
            serving.push(entry)
        } else {
            skipped.push(entry)
        }
        present
    })?;
    Ok(DefaultConfig {
        config,
        serving,
        skipped,
    })
}

/// The embedded default with the upstreams `keep` keeps, the routes'
/// targets on them, and the routes left with a target.
fn trimmed(mut keep: impl FnMut(&UpstreamConfig) -> bool) -> Result<Config, proto::ConfigError> {
    let mut config = Config::from_toml(DEFAULT_TOML)?;
    config.upstreams.retain(|u| keep(u));
    let kept: Vec<String> = config.upstreams.iter().map(|u| u.id.clone()).collect();
    for route in &mut config.routes {
        for tier in &mut route.tiers {
            tier.retain(|t| kept.contains(&t.upstream));
        }
        route.tiers.retain(|tier| !tier.is_empty());
    }
    config.routes.retain(|r| !r.tiers.is_empty());
    config.validate()?;
    Ok(config)
}

/// What a node on the embedded default does with the cluster state it found.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowKeys {
    /// The state already is the default for the keys set now.
    UpToDate,
    /// The state is the default for another set of keys (a key was set or
    /// unset since): these commands, in order, make it the default for the
    /// keys set now.
    Change(Vec<Command>),
    /// The state is not what the default seeds for any set of keys: it was
    /// changed through the admin API (or seeded by a file), so it is left
    /// alone even though the keys set now would give other routes.
    Changed,
}

/// Whether the applied `state` is still what the embedded default seeds
/// for some set of provider keys, and if so, what makes it `wanted` (the
/// default for the keys set now, [`default_config`]). Pure: the caller
/// writes the commands.
pub fn follow_keys(
    state: &ClusterState,
    wanted: &Config,
) -> Result<FollowKeys, proto::ConfigError> {
    let ids: BTreeSet<&str> = state.upstreams.keys().map(String::as_str).collect();
    let seeded = trimmed(|u| ids.contains(u.id.as_str()))?;
    let same = |config: &Config| {
        config.upstreams.len() == state.upstreams.len()
            && config
                .upstreams
                .iter()
                .all(|u| state.upstreams.get(&u.id) == Some(u))
            && config.routes.len() == state.routes.len()
            && config
                .routes
                .iter()
                .all(|r| state.routes.get(&r.model) == Some(r))
    };
    if !state.keys.is_empty() || !same(&seeded) {
        return Ok(if same(wanted) {
            FollowKeys::UpToDate
        } else {
            FollowKeys::Changed
        });
    }
    if same(wanted) {
        return Ok(FollowKeys::UpToDate);
    }
    let mut commands = Vec::new();
    // Upstreams first (a route may only name an existing one), then the
    // routes, then the upstreams no route uses any more.
    for u in &wanted.upstreams {
        if state.upstreams.get(&u.id) != Some(u) {
            commands.push(Command::PutUpstream(u.clone()));
        }
    }
    for r in &wanted.routes {
        if state.routes.get(&r.model) != Some(r) {
            commands.push(Command::PutRoute(r.clone()));
        }
    }
    for model in state.routes.keys() {
        if !wanted.routes.iter().any(|r| &r.model == model) {
            commands.push(Command::DeleteRoute {
                model: model.clone(),
            });
        }
    }
    for id in state.upstreams.keys() {
        if !wanted.upstreams.iter().any(|u| &u.id == id) {
            commands.push(Command::DeleteUpstream { id: id.clone() });
        }
    }
    Ok(FollowKeys::Change(commands))
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

    /// The state a seed of `config` leaves.
    fn seeded(config: &Config) -> ClusterState {
        let mut state = ClusterState::default();
        let seed = Command::Seed {
            upstreams: config.upstreams.clone(),
            routes: config.routes.clone(),
            keys: Vec::new(),
        };
        assert!(matches!(
            state.apply(&seed),
            proto::state::CommandResponse::Applied { changed: true }
        ));
        state
    }

    fn apply(state: &mut ClusterState, commands: &[Command]) {
        for c in commands {
            let answer = state.apply(c);
            assert!(
                matches!(answer, proto::state::CommandResponse::Applied { .. }),
                "{c:?}: {answer:?}"
            );
        }
    }

    #[test]
    fn a_key_set_after_the_first_run_adds_its_routes() {
        // First run: no key, an empty state.
        let mut state = seeded(&default_config(&Env(&[])).unwrap().config);
        assert!(state.routes.is_empty());
        // Restarted with a key: the default's routes for it arrive.
        let wanted = default_config(&Env(&["OPENAI_API_KEY"])).unwrap().config;
        let FollowKeys::Change(commands) = follow_keys(&state, &wanted).unwrap() else {
            panic!("no change");
        };
        apply(&mut state, &commands);
        assert_eq!(seeded(&wanted).routes, state.routes);
        assert_eq!(seeded(&wanted).upstreams, state.upstreams);
        assert_eq!(follow_keys(&state, &wanted).unwrap(), FollowKeys::UpToDate);
        // Another key, then one unset: the state follows each time.
        let both = default_config(&Env(&["OPENAI_API_KEY", "DEEPSEEK_API_KEY"]))
            .unwrap()
            .config;
        let FollowKeys::Change(commands) = follow_keys(&state, &both).unwrap() else {
            panic!("no change");
        };
        apply(&mut state, &commands);
        assert_eq!(seeded(&both).routes, state.routes);
        let deepseek = default_config(&Env(&["DEEPSEEK_API_KEY"])).unwrap().config;
        let FollowKeys::Change(commands) = follow_keys(&state, &deepseek).unwrap() else {
            panic!("no change");
        };
        apply(&mut state, &commands);
        assert_eq!(seeded(&deepseek).routes, state.routes);
        assert_eq!(seeded(&deepseek).upstreams, state.upstreams);
    }

    #[test]
    fn a_state_changed_through_the_admin_api_is_left_alone() {
        let mut state = seeded(&default_config(&Env(&["OPENAI_API_KEY"])).unwrap().config);
        let mut fast = state.routes["fast"].clone();
        fast.max_attempts = Some(1);
        apply(&mut state, &[Command::PutRoute(fast)]);
        let wanted = default_config(&Env(&["OPENAI_API_KEY", "GROQ_API_KEY"]))
            .unwrap()
            .config;
        assert_eq!(follow_keys(&state, &wanted).unwrap(), FollowKeys::Changed);
        // A client key added through the admin API also makes it the operator's.
        let mut keyed = seeded(&default_config(&Env(&[])).unwrap().config);
        keyed.keys.insert(
            "app".into(),
            proto::state::KeyRecord {
                name: "app".into(),
                sha256: "0".repeat(64),
                limits: Default::default(),
            },
        );
        assert_eq!(follow_keys(&keyed, &wanted).unwrap(), FollowKeys::Changed);
    }

    #[test]
    fn no_keys_leaves_no_routes() {
        let d = default_config(&Env(&[])).unwrap();
        assert!(d.config.routes.is_empty() && d.serving.is_empty());
    }
}
