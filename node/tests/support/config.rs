//! Typed pieces of a test node's configuration: a test sets fields of a
//! `proto::config::Config` value (see [`super::Node::start_with`]) and the
//! harness writes it with `toml`, so a renamed or retyped field breaks the
//! build instead of a node's start, and no test writes config text.

pub use harness::config::{route, target};
pub use proto::config::{Config, KeyConfig, RouteConfig, UpstreamConfig};

use super::Mock;

/// An upstream `id` pointing at a mock (no key, bearer auth, HTTP/1.1).
pub fn upstream(id: &str, mock: &Mock) -> UpstreamConfig {
    harness::config::upstream(id, &mock.base_url())
}

/// An upstream `id` at `base_url`, for one no mock answers on.
pub fn upstream_at(id: &str, base_url: &str) -> UpstreamConfig {
    harness::config::upstream(id, base_url)
}

/// A client key `name` read from the environment variable `key_env`.
pub fn key(name: &str, key_env: &str) -> KeyConfig {
    KeyConfig {
        name: name.to_owned(),
        key_env: key_env.to_owned(),
        ..Default::default()
    }
}

/// A route for `model` with one tier per `(upstream, upstream model)` pair,
/// in order: the first is tier 0, each next one its fallback.
pub fn tiers(model: &str, targets: &[(&str, &str)]) -> RouteConfig {
    route(
        model,
        targets
            .iter()
            .map(|(upstream, model)| vec![target(upstream, model)])
            .collect(),
    )
}

/// A route for `model` to one target: `upstream_model` on `upstream`.
pub fn route_to(model: &str, upstream: &str, upstream_model: &str) -> RouteConfig {
    tiers(model, &[(upstream, upstream_model)])
}
