//! The node's TOML configuration (DESIGN.md section 2) and its validation.
//!
//! Parsing rejects unknown fields, so a typo never silently falls back to a
//! default; validation then checks what serde cannot (references between
//! sections, ranges, uniqueness) and names the offending field in the same
//! dotted form an operator reads in the file, e.g. `routes[1].tiers[0][0].upstream`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

mod catalogue;
mod classes;
mod peer;
mod proxy;
mod responses;
mod route;
mod secrets;
mod telemetry;
mod tenants;
mod upstream;
mod validate;

pub use catalogue::CatalogueConfig;
pub use classes::{ClassConfig, MAX_CLASSES, MAX_QUEUE_MS, SloConfig, class_rank};
pub use peer::{PeerAddr, PeerAddrError};
pub use proxy::{ConnectionsConfig, HealthConfig, ProxyConfig};
pub use responses::ResponsesConfig;
pub use route::{HedgeConfig, RouteConfig, TargetConfig};
pub use secrets::{
    FileAccess, MIN_SECRET_CHARS, SecretOrigin, SecretPolicy, SecretsConfig, check_secret_strength,
};
pub use telemetry::TelemetryConfig;
pub use tenants::TenantsConfig;
pub use upstream::{
    DEFAULT_ANTHROPIC_VERSION, KeyConfig, ModelPrice, UpstreamAuth, UpstreamConfig, UpstreamKind,
    check_anthropic_version, check_model_name, check_prefixes,
};
pub(crate) use validate::check_name;
use validate::parse_members;

/// A configuration that cannot be used, with the field to fix: the one
/// `{field, message}` shape ([`FieldError`]) under the name config code reads.
pub type ConfigError = FieldError;

/// One node's whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is.
    pub node: NodeConfig,
    /// Where it listens.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The voters that bootstrap the cluster together.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Cluster CA and this node's identity; without it the node runs alone.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Admin plane settings.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Timeouts and limits of the data plane.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// How client connections are held on both listeners (data and admin).
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// How upstream health is measured, shared and acted on.
    #[serde(default)]
    pub health: HealthConfig,
    /// How the leader refreshes the catalogue of upstreams that discover
    /// their models.
    #[serde(default)]
    pub catalogue: CatalogueConfig,
    /// How the tenants' usage ledger is kept.
    #[serde(default)]
    pub tenants: TenantsConfig,
    /// Priority classes, served in this order (`[[classes]]`); none: one
    /// class for every key.
    #[serde(default)]
    pub classes: Vec<ClassConfig>,
    /// Client keys; only a hash of each is kept in memory.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Provider deployments requests can be sent to.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// What clients send as `model`, and where it goes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Which provider-key variables and files the admin API may point
    /// upstreams at on this node (see [`SecretsConfig`]).
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// How stored Responses are bound to the key that made them.
    #[serde(default)]
    pub responses: ResponsesConfig,
    /// OpenTelemetry traces over OTLP/HTTP; off without an endpoint.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// Identity of this node in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id, unique in the cluster and never reused.
    pub id: u64,
    /// The region this node serves; reported on every answer.
    pub region: String,
    /// Where the node keeps its state.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// The node's three listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// OpenAI-compatible data plane.
    #[serde(default = "default_api_addr")]
    pub api: SocketAddr,
    /// Admin API, `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_admin_addr")]
    pub admin: SocketAddr,
    /// Raft over QUIC (UDP).
    #[serde(default = "default_raft_addr")]
    pub raft: SocketAddr,
}

fn default_api_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9080))
}
fn default_raft_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7080))
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            api: default_api_addr(),
            admin: default_admin_addr(),
            raft: default_raft_addr(),
        }
    }
}

/// The voters that form the cluster when it is first created, and Raft's timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `id@host:port` of every initial voter, this node included; the host
    /// is an IP address or a DNS name, resolved at each dial.
    #[serde(default)]
    pub members: Vec<String>,
    /// Leader heartbeat. In openraft 0.9 an AppendEntries call also times out
    /// after this long, so on a WAN it must exceed the p99 round trip.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A lost leader is replaced within about this (a follower that hears
    /// no leader for 0.7 to 0.8 times it starts an election), or twice it
    /// when the first round fails; about ten round trips on a WAN.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Take a snapshot (and purge the log behind it) every this many entries.
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
}

fn default_heartbeat_ms() -> u64 {
    500
}
fn default_election_timeout_ms() -> u64 {
    5_000
}
fn default_snapshot_logs() -> u64 {
    1_000
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            heartbeat_ms: default_heartbeat_ms(),
            election_timeout_ms: default_election_timeout_ms(),
            snapshot_logs: default_snapshot_logs(),
        }
    }
}

impl ClusterConfig {
    /// The initial voters, parsed, in file order; the error names the entry
    /// at fault (`cluster.members[1]`): a missing `@`, an id that is not a
    /// number above 0, an address that is not `host:port`, an id twice.
    pub fn voters(&self) -> Result<Vec<Voter>, ConfigError> {
        parse_members(&self.members)
    }
}

/// One initial voter of `cluster.members`, parsed from `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Its Raft node id (at least 1).
    pub id: u64,
    /// Where its Raft transport listens: an IP address or a DNS name.
    pub raft_addr: PeerAddr,
}

/// Paths of the cluster CA and this node's certificate and key (PEM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA every peer certificate must chain to.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// Admin plane settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Environment variable holding the admin bearer token.
    #[serde(default = "default_admin_token_env")]
    pub token_env: String,
}

fn default_admin_token_env() -> String {
    "MERIDIAN_ADMIN_TOKEN".to_owned()
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token_env: default_admin_token_env(),
        }
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // The path serde was at (`upstreams[0].kind`, `node.regoin` for
            // an unknown field), and for a missing field its name below it.
            let message = e.inner().message().trim().to_owned();
            let mut field = match e.path().to_string() {
                path if path == "." => String::new(),
                path => path,
            };
            if message.starts_with("missing field")
                && let Some(name) = message.split('`').nth(1)
            {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(name);
            }
            if field.is_empty() {
                field = "config".to_owned();
            }
            let location = e
                .inner()
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError::new(field, format!("{message}{location}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything serde cannot: ranges, uniqueness and references.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.id == 0 {
            return Err(ConfigError::new("node.id", "must be at least 1"));
        }
        check_name("node.region", &self.node.region)?;
        self.proxy.validate()?;
        self.connections.validate()?;
        self.health.validate()?;
        self.catalogue.validate()?;
        self.tenants.validate()?;
        classes::validate(&self.classes)?;
        self.secrets.validate()?;
        self.responses.validate()?;
        self.telemetry.validate()?;
        let members = self.cluster.voters()?;
        let cluster = &self.cluster;
        if cluster.heartbeat_ms < 10 {
            return Err(ConfigError::new(
                "cluster.heartbeat_ms",
                "must be at least 10",
            ));
        }
        if cluster.election_timeout_ms < 4 * cluster.heartbeat_ms {
            return Err(ConfigError::new(
                "cluster.election_timeout_ms",
                "must be at least four heartbeats (cluster.heartbeat_ms)",
            ));
        }
        if cluster.snapshot_logs == 0 {
            return Err(ConfigError::new(
                "cluster.snapshot_logs",
                "must be greater than 0",
            ));
        }
        if !members.is_empty() && !members.iter().any(|v| v.id == self.node.id) {
            return Err(ConfigError::new(
                "cluster.members",
                format!("must list this node (id {})", self.node.id),
            ));
        }
        if members.len() > 1 && self.tls.is_none() {
            return Err(ConfigError::new(
                "tls",
                "cluster.members lists peers, and peers need [tls] (ca, cert, key)",
            ));
        }

        let mut names = HashSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            check_name(&format!("keys[{i}].name"), &key.name)?;
            if !names.insert(key.name.as_str()) {
                return Err(ConfigError::new(
                    format!("keys[{i}].name"),
                    format!("`{}` is defined twice", key.name),
                ));
            }
            if key.key_env.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("keys[{i}].key_env"),
                    "must name an environment variable",
                ));
            }
            key.limits()
                .map_err(|e| ConfigError::new(format!("keys[{i}].{}", e.field), e.message))?;
            if let Some(class) = &key.class
                && !self.classes.is_empty()
                && !self.classes.iter().any(|c| &c.name == class)
            {
                return Err(ConfigError::new(
                    format!("keys[{i}].class"),
                    format!("`{class}` is not one of the [[classes]]"),
                ));
            }
        }
        if self.keys.is_empty() && !self.listen.api.ip().is_loopback() {
            return Err(ConfigError::new(
                "listen.api",
                format!(
                    "{} is not a loopback address and no [[keys]] are configured: \
                     add a client key or listen on 127.0.0.1",
                    self.listen.api
                ),
            ));
        }

        let mut upstream_ids = HashSet::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            upstream.validate(&format!("upstreams[{i}]"))?;
            if !upstream_ids.insert(upstream.id.as_str()) {
                return Err(ConfigError::new(
                    format!("upstreams[{i}].id"),
                    format!("`{}` is defined twice", upstream.id),
                ));
            }
        }

        upstream::check_prefixes(self.upstreams.iter(), "upstreams")?;

        let mut models = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(&format!("routes[{i}]"), |id| upstream_ids.contains(id))?;
            if !models.insert(route.model.as_str()) {
                return Err(ConfigError::new(
                    format!("routes[{i}].model"),
                    format!("`{}` is defined twice", route.model),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
