//! `meridian serve --mock`: one node in front of the built-in fake provider
//! (`meridian-mock`, in this process), so the README's SDK snippet works with
//! no provider account. Every upstream of the embedded default points at the
//! fake provider, so every route (`fast`, `smart`, `gpt-4o-mini`,
//! `claude-sonnet-4-0`…) answers, through the same code as with real
//! providers (the Anthropic upstream speaks the Messages API to it).
//!
//! Its cluster state lives in a temporary directory removed at exit, never in
//! `./data`: trying the mock must not leave a state that a later
//! `meridian serve` with real keys would find.

use std::path::Path;

use meridian::defaults::DEFAULT_TOML;
use proto::Config;

/// What runs while the node serves: the fake provider and the data dir.
/// Dropping it stops the provider and deletes the directory.
pub(crate) struct MockServe {
    /// The node's configuration.
    pub(crate) config: Config,
    _provider: mock::MockHandle,
    _data: tempfile::TempDir,
}

/// Starts the fake provider and a temporary data dir, and says so.
pub(crate) fn start() -> Result<MockServe, String> {
    let provider = mock::spawn(mock::MockConfig::default(), 2)
        .map_err(|e| format!("cannot start the fake provider: {e}"))?;
    let data = tempfile::Builder::new()
        .prefix("meridian-mock-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary data directory: {e}"))?;
    let config = mock_config(&provider.base_url(), data.path())
        .map_err(|e| format!("invalid embedded default: {e}"))?;
    let ids: Vec<&str> = config.upstreams.iter().map(|u| u.id.as_str()).collect();
    tracing::info!(
        "--mock: every upstream of the embedded default ({}) is the built-in fake provider at {}; \
         nothing goes to any provider, no key is needed; the cluster state is kept in {} and \
         removed at exit",
        ids.join(", "),
        provider.base_url(),
        data.path().display()
    );
    Ok(MockServe {
        config,
        _provider: provider,
        _data: data,
    })
}

/// The embedded default with every upstream at `base_url` (no key) and its
/// data in `data_dir`.
pub(crate) fn mock_config(base_url: &str, data_dir: &Path) -> Result<Config, proto::ConfigError> {
    let mut config = Config::from_toml(DEFAULT_TOML)?;
    for upstream in &mut config.upstreams {
        upstream.base_url = base_url.to_owned();
        upstream.api_key_env = None;
    }
    config.node.data_dir = data_dir.to_path_buf();
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn every_route_of_the_default_goes_to_the_fake_provider() {
        let config = mock_config("http://127.0.0.1:9/v1", Path::new("/tmp/x")).unwrap();
        let all = Config::from_toml(DEFAULT_TOML).unwrap();
        assert_eq!(config.routes, all.routes);
        assert!(
            config
                .upstreams
                .iter()
                .all(|u| u.base_url == "http://127.0.0.1:9/v1" && u.api_key_env.is_none())
        );
        assert_eq!(config.node.data_dir, Path::new("/tmp/x"));
    }
}
