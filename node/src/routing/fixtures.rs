//! What the routing tests share: a fake environment and a two-upstream
//! configuration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap as Map;
use std::sync::Arc;

use openraft::{CommittedLeaderId, LogId, StoredMembership};
use proto::config::Config;
use proto::state::{ClusterState, KeyRecord};
use proto::tenancy::KeyLimits;
use raft::store::Applied;

use super::{BuildError, RoutingSnapshot, Secrets};
use crate::auth::hash_key;
use crate::cluster::hex;

/// The client key of [`CONFIG`]'s key `app` (its `CLIENT_KEY`).
pub(crate) const CLIENT_KEY: &str = "client-key-0123456789";

/// The environment [`CONFIG`] reads: its client key and both provider keys.
pub(crate) const ENV: [(&str, &str); 3] =
    [("CLIENT_KEY", CLIENT_KEY), ("A_KEY", "ka"), ("B_KEY", "kb")];

/// Key `app` as the cluster's state records it, with `limits`.
pub(crate) fn app_key(limits: KeyLimits) -> KeyRecord {
    KeyRecord {
        name: "app".into(),
        sha256: hex(&hash_key(CLIENT_KEY)),
        limits,
    }
}

/// `state` as applied up to log `index` (`None`: nothing applied yet).
pub(crate) fn applied(state: ClusterState, index: Option<u64>) -> Arc<Applied> {
    Arc::new(Applied {
        state,
        last_applied: index.map(|i| LogId::new(CommittedLeaderId::new(1, 1), i)),
        membership: StoredMembership::default(),
    })
}

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
