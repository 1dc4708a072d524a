//! What the routing tests share: a fake environment and a two-upstream
//! configuration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap as Map;

use proto::config::Config;

use super::{BuildError, RoutingSnapshot, Secrets};

pub(crate) struct FakeEnv(pub(crate) Map<&'static str, &'static str>);
impl Secrets for FakeEnv {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| v.to_string())
    }
}

pub(crate) const CONFIG: &str = r#"
[node]
id = 1
region = "us-east"

[[keys]]
name = "app"
key_env = "CLIENT_KEY"

[[upstreams]]
id = "a"
base_url = "http://127.0.0.1:1/v1/"
api_key_env = "A_KEY"

[[upstreams]]
id = "b"
base_url = "https://b.example/openai/v1"
api_key_env = "B_KEY"
auth = "api-key"

[[routes]]
model = "fast"
tiers = [[{ upstream = "a", model = "a-small" }], [{ upstream = "b", model = "b-small", input_per_mtok = 1.5 }]]

[[routes]]
model = "b-only"
tiers = [[{ upstream = "b", model = "b-large" }]]
"#;

pub(crate) fn build(env: &[(&'static str, &'static str)]) -> Result<RoutingSnapshot, BuildError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_toml(CONFIG).unwrap();
    RoutingSnapshot::build(&config, &FakeEnv(env.iter().copied().collect()), None)
}
