//! The node's TOML configuration (DESIGN.md section 2) and its validation.
//!
//! Parsing rejects unknown fields, so a typo never silently falls back to a
//! default; validation then checks what serde cannot (references between
//! sections, ranges, uniqueness) and names the offending field in the same
//! dotted form an operator reads in the file, e.g. `routes[1].tiers[0][0].upstream`.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used, with the field to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending field, as written in the TOML file.
    pub field: String,
    /// What is wrong with it, in words an operator can act on.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

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
    /// `id@host:port` of every initial voter, this node included.
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
    /// The initial voters as (id, Raft address), in file order.
    pub fn parsed_members(&self) -> Vec<(u64, SocketAddr)> {
        self.members
            .iter()
            .filter_map(|m| {
                let (id, addr) = m.split_once('@')?;
                Some((id.parse().ok()?, addr.parse().ok()?))
            })
            .collect()
    }
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

/// Data plane timeouts and limits. Every route may override the timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Deadline for a whole request, all attempts included.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long one attempt may take to produce its first byte (a stream's
    /// first chunk, a plain answer's status) before the next target is tried.
    #[serde(default = "default_first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    /// TCP (and TLS) connect timeout to an upstream.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Largest request body accepted (413 beyond).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Largest non-streamed upstream answer read (502 beyond).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Requests in flight on this node before new ones get 429.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Attempts per request, across all tiers, unless the route says otherwise.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Idle keep-alive connections kept per upstream host (per worker).
    #[serde(default = "default_pool_idle_per_host")]
    pub pool_idle_per_host: usize,
    /// Data-plane threads, each with its own listener and upstream pools, so
    /// a request never crosses threads; 0 means one per CPU.
    #[serde(default)]
    pub workers: usize,
}

fn default_request_timeout_ms() -> u64 {
    120_000
}
fn default_first_byte_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_max_request_bytes() -> usize {
    32 << 20
}
fn default_max_response_bytes() -> usize {
    64 << 20
}
fn default_max_in_flight() -> usize {
    8_192
}
fn default_max_attempts() -> u32 {
    3
}
fn default_pool_idle_per_host() -> usize {
    256
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: default_request_timeout_ms(),
            first_byte_timeout_ms: default_first_byte_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            max_request_bytes: default_max_request_bytes(),
            max_response_bytes: default_max_response_bytes(),
            max_in_flight: default_max_in_flight(),
            max_attempts: default_max_attempts(),
            pool_idle_per_host: default_pool_idle_per_host(),
            workers: 0,
        }
    }
}

/// How client connections are held on both listeners, the data plane and
/// the admin API: what a client that opens a connection and then stalls,
/// trickles or never speaks can take, so that such clients cannot starve
/// the others of descriptors, in-flight slots or memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// A new connection must have sent a whole request head (HTTP/1.1) or
    /// opened a stream (h2c) within this time, or it is closed.
    pub header_read_timeout_ms: u64,
    /// A request body must be read whole within this time of its head, or
    /// the request is answered 408 and its connection's slot freed.
    pub body_timeout_ms: u64,
    /// A connection with no request in progress is closed after this long
    /// (for HTTP/1.1 this also bounds the head of a later request).
    pub idle_timeout_ms: u64,
    /// Open client connections on the data plane (all workers together);
    /// past it a new connection gets a 503 and is closed.
    pub max_connections: usize,
    /// Open connections on the admin listener; past it, as above.
    pub admin_max_connections: usize,
    /// Concurrent h2c streams one connection may open.
    pub max_h2_streams: u32,
    /// How often an idle h2c connection is pinged to detect a dead peer
    /// (closed when a ping goes unanswered for as long); 0 turns pings off.
    pub h2_keepalive_interval_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 60_000,
            idle_timeout_ms: 60_000,
            max_connections: 8_192,
            admin_max_connections: 256,
            max_h2_streams: 128,
            h2_keepalive_interval_ms: 30_000,
        }
    }
}

impl ConnectionsConfig {
    /// Upper bounds that catch a unit mistake (seconds written as hours).
    const MAX_TIMEOUT_MS: u64 = 3_600_000;

    fn validate(&self) -> Result<(), ConfigError> {
        let timeouts = [
            (
                "connections.header_read_timeout_ms",
                self.header_read_timeout_ms,
            ),
            ("connections.body_timeout_ms", self.body_timeout_ms),
            ("connections.idle_timeout_ms", self.idle_timeout_ms),
        ];
        for (field, value) in timeouts {
            if value == 0 {
                return Err(ConfigError::new(field, "must be greater than 0"));
            }
            if value > Self::MAX_TIMEOUT_MS {
                return Err(ConfigError::new(
                    field,
                    format!("must be at most {} (one hour)", Self::MAX_TIMEOUT_MS),
                ));
            }
        }
        if self.h2_keepalive_interval_ms > Self::MAX_TIMEOUT_MS {
            return Err(ConfigError::new(
                "connections.h2_keepalive_interval_ms",
                format!("must be at most {} (one hour)", Self::MAX_TIMEOUT_MS),
            ));
        }
        let caps = [
            (
                "connections.max_connections",
                self.max_connections as u64,
                1_000_000,
            ),
            (
                "connections.admin_max_connections",
                self.admin_max_connections as u64,
                1_000_000,
            ),
            (
                "connections.max_h2_streams",
                u64::from(self.max_h2_streams),
                65_536,
            ),
        ];
        for (field, value, max) in caps {
            if value == 0 {
                return Err(ConfigError::new(field, "must be greater than 0"));
            }
            if value > max {
                return Err(ConfigError::new(field, format!("must be at most {max}")));
            }
        }
        Ok(())
    }
}

/// How upstream health is measured, shared and acted on: the windows, the
/// reports through Raft, target choice, circuit breakers and the adaptive
/// first-byte timeout. The defaults suit providers that answer in tens of
/// milliseconds to tens of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often this node proposes its window to the cluster.
    pub report_interval_ms: u64,
    /// Slots in a window; the window spans `window_slots × slot_ms`.
    pub window_slots: u32,
    /// Length of one slot; old samples leave the window a slot at a time.
    pub slot_ms: u64,
    /// Samples needed before a p99 (this node's, this region's, or the
    /// cluster's) is trusted over the next source.
    pub min_samples: u64,
    /// p99 time to first byte assumed for a target nobody has measured.
    pub prior_p99_ms: f64,
    /// Share of requests whose first pick in a tier is random, so every
    /// target's figures stay fresh.
    pub explore: f64,
    /// Recent error rate above which a target is not eligible; a route may
    /// set its own.
    pub error_threshold: f64,
    /// Consecutive failures that open an upstream's circuit.
    pub breaker_failures: u32,
    /// How long a circuit stays open the first time; doubles with every
    /// ejection that follows a failed probe.
    pub ejection_ms: u64,
    /// The longest a circuit stays open.
    pub max_ejection_ms: u64,
    /// The first-byte timeout of an attempt is the target's p99 times this,
    /// within `timeout_floor_ms` and the route's `first_byte_timeout_ms`;
    /// 0 keeps the route's timeout.
    pub timeout_multiplier: f64,
    /// The shortest adaptive first-byte timeout.
    pub timeout_floor_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            report_interval_ms: 1_000,
            window_slots: 6,
            slot_ms: 5_000,
            min_samples: 20,
            prior_p99_ms: 1_000.0,
            explore: 0.02,
            error_threshold: 0.5,
            breaker_failures: 3,
            ejection_ms: 1_000,
            max_ejection_ms: 30_000,
            timeout_multiplier: 4.0,
            timeout_floor_ms: 1_000,
        }
    }
}

impl HealthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let at = |f: &str| format!("health.{f}");
        for (field, value) in [
            ("report_interval_ms", self.report_interval_ms),
            ("window_slots", u64::from(self.window_slots)),
            ("slot_ms", self.slot_ms),
            ("breaker_failures", u64::from(self.breaker_failures)),
            ("ejection_ms", self.ejection_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(at(field), "must be greater than 0"));
            }
        }
        if self.window_slots > 3_600 {
            return Err(ConfigError::new(at("window_slots"), "must be at most 3600"));
        }
        if self.max_ejection_ms < self.ejection_ms {
            return Err(ConfigError::new(
                at("max_ejection_ms"),
                "must be at least health.ejection_ms",
            ));
        }
        for (field, value) in [
            ("explore", self.explore),
            ("error_threshold", self.error_threshold),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::new(at(field), "must be between 0 and 1"));
            }
        }
        for (field, value) in [
            ("prior_p99_ms", self.prior_p99_ms),
            ("timeout_multiplier", self.timeout_multiplier),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::new(at(field), "must be a number of 0 or more"));
            }
        }
        Ok(())
    }
}

/// Hedging for one route: when an attempt has not answered by its target's
/// `quantile` time to first byte, a second attempt goes to the next target
/// (or the same one, for a route with one target); the first answer wins and
/// the other is cancelled. The budget caps the extra load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// Which quantile of the target's time to first byte to wait for.
    pub quantile: f64,
    /// Extra attempts allowed, as a share of the route's requests.
    pub budget: f64,
    /// Never hedge sooner than this.
    pub min_delay_ms: u64,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            quantile: 0.95,
            budget: 0.1,
            min_delay_ms: 0,
        }
    }
}

/// A client key, read from the environment so it never sits in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds the key; appears in logs instead of the key.
    pub name: String,
    /// Environment variable that holds the key.
    pub key_env: String,
}

/// How the provider key is presented to the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamAuth {
    /// `Authorization: Bearer KEY` (OpenAI and most compatible servers).
    #[default]
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
}

/// One provider deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name routes refer to; appears in `x-meridian-upstream`.
    pub id: String,
    /// Base URL up to and including the API version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Where the deployment runs; informs health sharing across regions.
    #[serde(default)]
    pub region: String,
    /// Environment variable holding the provider key on each node.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the provider key on each node (instead of `api_key_env`).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// How the key is sent.
    #[serde(default)]
    pub auth: UpstreamAuth,
    /// Speak HTTP/2 without TLS negotiation (h2c prior knowledge) to a
    /// plain `http://` upstream; `https://` upstreams negotiate it by ALPN.
    #[serde(default)]
    pub http2: bool,
    /// Extra CA (PEM) trusted for this upstream's TLS, for private deployments.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A model name clients may send, and the tiers of targets behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// What clients send as `model`.
    pub model: String,
    /// Tried in order; within a tier the healthiest target wins.
    pub tiers: Vec<Vec<TargetConfig>>,
    /// Overrides `proxy.max_attempts` for this route.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Overrides `proxy.first_byte_timeout_ms` for this route.
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    /// Overrides `proxy.request_timeout_ms` for this route.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Overrides `health.error_threshold` for this route's targets.
    #[serde(default)]
    pub error_threshold: Option<f64>,
    /// Hedge slow attempts; off when absent.
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
}

/// A provider model behind a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Id of an `[[upstreams]]` entry.
    pub upstream: String,
    /// The model name the provider expects.
    pub model: String,
    /// Price per million input tokens, for the cost in the request log.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Price per million output tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let field = e
                .message()
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| "config".to_owned());
            let location = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError::new(field, format!("{}{location}", e.message().trim()))
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
        self.secrets.validate()?;
        validate_members(&self.cluster.members)?;
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
        let members = cluster.parsed_members();
        if !members.is_empty() && !members.iter().any(|(id, _)| *id == self.node.id) {
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

impl ProxyConfig {
    /// The number of data-plane threads: `workers`, or one per CPU.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > 1024 {
            return Err(ConfigError::new("proxy.workers", "must be at most 1024"));
        }
        let positive = [
            ("proxy.request_timeout_ms", self.request_timeout_ms),
            ("proxy.first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("proxy.connect_timeout_ms", self.connect_timeout_ms),
            ("proxy.max_request_bytes", self.max_request_bytes as u64),
            ("proxy.max_response_bytes", self.max_response_bytes as u64),
            ("proxy.max_in_flight", self.max_in_flight as u64),
            ("proxy.max_attempts", u64::from(self.max_attempts)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(field, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

impl UpstreamConfig {
    /// Validates one upstream; `at` is its path in the file (or API body).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_name(&format!("{at}.id"), &self.id)?;
        let uri: http::Uri = self
            .base_url
            .parse()
            .map_err(|e| ConfigError::new(format!("{at}.base_url"), format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(ConfigError::new(
                    format!("{at}.base_url"),
                    "must start with http:// or https://",
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                format!("{at}.base_url"),
                "must name a host",
            ));
        }
        if uri.query().is_some() {
            return Err(ConfigError::new(
                format!("{at}.base_url"),
                "must not carry a query string",
            ));
        }
        // Credentials in the URL would be stored in the Raft log and shown
        // in admin answers: the key belongs in api_key_env or api_key_file.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ConfigError::new(
                format!("{at}.base_url"),
                "must not carry credentials (user:password@); put the provider key in \
                 api_key_env or api_key_file",
            ));
        }
        if self.api_key_env.is_some() && self.api_key_file.is_some() {
            return Err(ConfigError::new(
                format!("{at}.api_key_file"),
                "set either api_key_env or api_key_file, not both",
            ));
        }
        if let Some(var) = &self.api_key_env {
            check_env_name(&format!("{at}.api_key_env"), var)?;
        }
        for (field, path) in [
            ("api_key_file", &self.api_key_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(path) = path {
                check_path(&format!("{at}.{field}"), path)?;
            }
        }
        if self.http2 && uri.scheme_str() == Some("https") {
            return Err(ConfigError::new(
                format!("{at}.http2"),
                "only applies to http:// upstreams; https negotiates HTTP/2 by ALPN",
            ));
        }
        Ok(())
    }
}

impl RouteConfig {
    /// Validates one route; `known` says whether an upstream id exists.
    pub fn validate(&self, at: &str, known: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        if self.model.is_empty()
            || self.model.len() > 256
            || self.model.chars().any(char::is_control)
        {
            return Err(ConfigError::new(
                format!("{at}.model"),
                "must be 1 to 256 printable characters",
            ));
        }
        if self.tiers.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.tiers"),
                "needs at least one tier",
            ));
        }
        for (t, tier) in self.tiers.iter().enumerate() {
            if tier.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.tiers[{t}]"),
                    "needs at least one target",
                ));
            }
            let mut seen = HashSet::new();
            for (j, target) in tier.iter().enumerate() {
                let here = format!("{at}.tiers[{t}][{j}]");
                if !known(&target.upstream) {
                    return Err(ConfigError::new(
                        format!("{here}.upstream"),
                        format!("no upstream with id `{}`", target.upstream),
                    ));
                }
                if target.model.is_empty() || target.model.chars().any(char::is_control) {
                    return Err(ConfigError::new(
                        format!("{here}.model"),
                        "must be a provider model name",
                    ));
                }
                if !seen.insert((&target.upstream, &target.model)) {
                    return Err(ConfigError::new(
                        format!("{here}.upstream"),
                        "the same upstream and model appear twice in this tier",
                    ));
                }
                for (name, price) in [
                    ("input_per_mtok", target.input_per_mtok),
                    ("output_per_mtok", target.output_per_mtok),
                ] {
                    if !price.is_finite() || price < 0.0 {
                        return Err(ConfigError::new(
                            format!("{here}.{name}"),
                            "must be a price of 0 or more",
                        ));
                    }
                }
            }
        }
        for (field, value) in [
            ("max_attempts", self.max_attempts.map(u64::from)),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == Some(0) {
                return Err(ConfigError::new(
                    format!("{at}.{field}"),
                    "must be greater than 0",
                ));
            }
        }
        if let Some(threshold) = self.error_threshold
            && !(0.0..=1.0).contains(&threshold)
        {
            return Err(ConfigError::new(
                format!("{at}.error_threshold"),
                "must be between 0 and 1",
            ));
        }
        if let Some(hedge) = &self.hedge {
            if !(hedge.quantile > 0.0 && hedge.quantile < 1.0) {
                return Err(ConfigError::new(
                    format!("{at}.hedge.quantile"),
                    "must be between 0 and 1, e.g. 0.95",
                ));
            }
            if !(hedge.budget > 0.0 && hedge.budget <= 1.0) {
                return Err(ConfigError::new(
                    format!("{at}.hedge.budget"),
                    "must be above 0 and at most 1 (a share of the route's requests)",
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Secrets: what the admin API may point an upstream's key at on this node,
// and how long the node's own secrets must be.
// ---------------------------------------------------------------------------

/// The fewest characters an admin token or a client key may have. Only an
/// unsalted SHA-256 of each is kept (client key hashes travel in the Raft
/// log and its snapshots), so a short one falls to guessing or to a brute
/// force of a leaked hash. A length says nothing of randomness, but 16
/// characters stops `test`, `admin` and one-letter tokens while every usual
/// generator passes (`openssl rand -hex 16` gives 32, provider-style
/// `sk-…` keys 40 and more).
pub const MIN_SECRET_CHARS: usize = 16;

/// Refuses an admin token or client key shorter than [`MIN_SECRET_CHARS`]
/// (surrounding whitespace not counted); `field` names where it comes from
/// and `var` the variable that holds it. The value itself is never quoted.
pub fn check_secret_strength(field: &str, var: &str, value: &str) -> Result<(), ConfigError> {
    let chars = value.trim().chars().count();
    if chars < MIN_SECRET_CHARS {
        return Err(ConfigError::new(
            field,
            format!(
                "{var} holds {chars} characters; it needs at least {MIN_SECRET_CHARS} \
                 (for example `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(())
}

/// This node's `[secrets]`: the provider-key references an upstream written
/// through the admin API may use here. The node's own file may name any
/// variable or file in its `[[upstreams]]` (and those stay allowed); the
/// admin API only what this section allows, and never the variable of the
/// admin token or of a client key, so an admin token is not a way to read
/// a node's environment or files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Environment variables allowed as `api_key_env`, by exact name.
    #[serde(default)]
    pub env: Vec<String>,
    /// Variables whose name starts with this are allowed too, e.g. `MERIDIAN_UPSTREAM_`.
    #[serde(default)]
    pub env_prefix: Option<String>,
    /// An `api_key_file` must be a file below this directory (absolute).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

impl SecretsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, var) in self.env.iter().enumerate() {
            check_env_name(&format!("secrets.env[{i}]"), var)?;
        }
        if let Some(prefix) = &self.env_prefix {
            // A prefix must name a family, not every variable of the node.
            if prefix.len() < 3 {
                return Err(ConfigError::new(
                    "secrets.env_prefix",
                    "must be at least 3 characters, e.g. MERIDIAN_UPSTREAM_",
                ));
            }
            check_env_name("secrets.env_prefix", prefix)?;
        }
        if let Some(dir) = &self.dir
            && (!dir.is_absolute() || has_parent_step(dir) || dir.parent().is_none())
        {
            return Err(ConfigError::new(
                "secrets.dir",
                "must be an absolute directory other than / and without `..`",
            ));
        }
        Ok(())
    }
}

/// Where a provider-key reference comes from, which decides what it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// Written through this node's admin API: only what `[secrets]` (or the
    /// node's own `[[upstreams]]`) allows, never the node's own secrets.
    AdminApi,
    /// Arrived in the replicated state (from any node, or a seed): read only
    /// what this node's file allows or names itself.
    Applied,
}

/// How a node may read an allowed `api_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// The node's own file names this path: read it as it is.
    Named,
    /// Allowed below `[secrets] dir`, provided the file, once symlinks are
    /// resolved, still is below the resolved directory
    /// ([`SecretPolicy::resolved_inside`]).
    BelowDir(PathBuf),
}

/// The provider-key references this node accepts, built once from its own
/// file. Pure: the caller resolves paths (symlinks) on the filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretPolicy {
    secrets: SecretsConfig,
    /// Variables of the node's own secrets: the admin token's and the client keys'.
    forbidden_env: BTreeSet<String>,
    /// Files of the node's own identity: its TLS CA, certificate and key.
    forbidden_files: BTreeSet<PathBuf>,
    /// Variables the file's own `[[upstreams]]` name.
    named_env: BTreeSet<String>,
    /// Files the file's own `[[upstreams]]` name.
    named_files: BTreeSet<PathBuf>,
}

/// The variable that holds the admin token when the file names none
/// (`meridian` CLI's default too), never readable as a provider key.
const DEFAULT_ADMIN_TOKEN_ENV: &str = "MERIDIAN_ADMIN_TOKEN";

impl SecretPolicy {
    /// The policy of a node's own configuration file.
    pub fn new(config: &Config) -> Self {
        let mut forbidden_env: BTreeSet<String> =
            config.keys.iter().map(|k| k.key_env.clone()).collect();
        forbidden_env.insert(config.admin.token_env.clone());
        forbidden_env.insert(DEFAULT_ADMIN_TOKEN_ENV.to_owned());
        let forbidden_files = config
            .tls
            .iter()
            .flat_map(|t| [t.ca.clone(), t.cert.clone(), t.key.clone()])
            .collect();
        Self {
            secrets: config.secrets.clone(),
            forbidden_env,
            forbidden_files,
            named_env: config
                .upstreams
                .iter()
                .filter_map(|u| u.api_key_env.clone())
                .collect(),
            named_files: config
                .upstreams
                .iter()
                .filter_map(|u| u.api_key_file.clone())
                .collect(),
        }
    }

    /// Whether an upstream's `api_key_env` may be read here; the error
    /// names `{at}.api_key_env`.
    pub fn check_env(&self, at: &str, var: &str, origin: SecretOrigin) -> Result<(), ConfigError> {
        let field = format!("{at}.api_key_env");
        let forbidden = self.forbidden_env.contains(var);
        let named = self.named_env.contains(var);
        if named && origin == SecretOrigin::Applied {
            return Ok(());
        }
        if forbidden {
            return Err(ConfigError::new(
                field,
                format!(
                    "{var} holds this node's admin token or a client key, never a provider key"
                ),
            ));
        }
        let listed = self.secrets.env.iter().any(|e| e == var)
            || self
                .secrets
                .env_prefix
                .as_deref()
                .is_some_and(|p| var.starts_with(p));
        if named || listed {
            Ok(())
        } else {
            Err(ConfigError::new(
                field,
                format!(
                    "{var} is not allowed on this node: its [secrets] env or env_prefix must \
                     allow it"
                ),
            ))
        }
    }

    /// Whether an upstream's `api_key_file` may be read here, and how; the
    /// error names `{at}.api_key_file`. Checks the path as written: a
    /// [`FileAccess::BelowDir`] still needs [`SecretPolicy::resolved_inside`]
    /// once the caller has resolved symlinks.
    pub fn check_file(
        &self,
        at: &str,
        path: &Path,
        origin: SecretOrigin,
    ) -> Result<FileAccess, ConfigError> {
        let field = format!("{at}.api_key_file");
        if self.named_files.contains(path) && origin == SecretOrigin::Applied {
            return Ok(FileAccess::Named);
        }
        if self.forbidden_files.contains(path) {
            return Err(ConfigError::new(
                field,
                "is this node's own TLS identity, never a provider key",
            ));
        }
        if self.named_files.contains(path) {
            return Ok(FileAccess::Named);
        }
        let Some(dir) = &self.secrets.dir else {
            return Err(ConfigError::new(
                field,
                "is not allowed on this node: it has no [secrets] dir for key files",
            ));
        };
        if !path.is_absolute() || has_parent_step(path) || !path.starts_with(dir) || path == dir {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be an absolute path below this node's [secrets] dir ({}), without `..`",
                    dir.display()
                ),
            ));
        }
        Ok(FileAccess::BelowDir(dir.clone()))
    }

    /// Whether a file, with every symlink resolved, is still below the
    /// resolved secrets directory and is not one of the node's TLS files
    /// (compared resolved too, so a link to them is refused).
    pub fn resolved_inside(&self, file: &Path, dir: &Path, resolved_tls: &[PathBuf]) -> bool {
        file.starts_with(dir) && file != dir && !resolved_tls.iter().any(|t| t == file)
    }

    /// The node's TLS files, to resolve and pass to [`SecretPolicy::resolved_inside`].
    pub fn tls_files(&self) -> impl Iterator<Item = &Path> {
        self.forbidden_files.iter().map(PathBuf::as_path)
    }
}

/// A file name an operator can read in a log line: not empty, at most 4096
/// bytes, no control character (a line break would forge a log line).
fn check_path(field: &str, path: &Path) -> Result<(), ConfigError> {
    let text = path.to_string_lossy();
    if text.is_empty() || text.len() > 4096 || text.chars().any(char::is_control) {
        return Err(ConfigError::new(
            field,
            "must name a file: 1 to 4096 bytes, no control characters",
        ));
    }
    Ok(())
}

fn has_parent_step(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::ParentDir))
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128.
fn check_env_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            "must be an environment variable name: A-Z a-z 0-9 _, not starting with a digit",
        ))
    }
}

fn check_name(field: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("`{value}` must be 1 to 64 of A-Z a-z 0-9 - _ ."),
        ))
    }
}

fn validate_members(members: &[String]) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for (i, member) in members.iter().enumerate() {
        let field = format!("cluster.members[{i}]");
        let (id, addr) = member
            .split_once('@')
            .ok_or_else(|| ConfigError::new(&field, "expected `id@host:port`"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| ConfigError::new(&field, format!("`{id}` is not a node id")))?;
        addr.parse::<SocketAddr>()
            .map_err(|_| ConfigError::new(&field, format!("`{addr}` is not host:port")))?;
        if !ids.insert(id) {
            return Err(ConfigError::new(
                field,
                format!("node {id} is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const DESIGN_EXAMPLE: &str = r#"
[node]
id = 1
region = "us-east"
data_dir = "data/n1"

[listen]
api = "127.0.0.1:8080"
admin = "127.0.0.1:9080"
raft = "127.0.0.1:7080"

[cluster]
members = ["1@127.0.0.1:7080", "2@127.0.0.1:7081", "3@127.0.0.1:7082"]

[tls]
ca = "certs/ca.pem"
cert = "certs/n1.pem"
key = "certs/n1.key"

[admin]
token_env = "MERIDIAN_ADMIN_TOKEN"

[[keys]]
name = "app"
key_env = "MERIDIAN_CLIENT_KEY"

[[upstreams]]
id = "deepseek"
base_url = "https://api.deepseek.com/v1"
region = "ap-east"
api_key_env = "DEEPSEEK_API_KEY"

[[upstreams]]
id = "openai"
base_url = "https://api.openai.com/v1"
region = "us-east"
api_key_env = "OPENAI_API_KEY"

[[routes]]
model = "fast"
tiers = [
  [{ upstream = "deepseek", model = "deepseek-chat", input_per_mtok = 0.07, output_per_mtok = 0.25 }],
  [{ upstream = "openai", model = "gpt-4o-mini", input_per_mtok = 0.15, output_per_mtok = 0.60 }],
]
"#;

    fn err(text: &str) -> ConfigError {
        Config::from_toml(text).expect_err("config should be rejected")
    }

    #[test]
    fn design_example_parses() {
        let config = Config::from_toml(DESIGN_EXAMPLE).unwrap();
        assert_eq!(config.node.region, "us-east");
        assert_eq!(config.routes[0].tiers.len(), 2);
        assert_eq!(config.routes[0].tiers[1][0].output_per_mtok, 0.60);
        assert_eq!(config.cluster.members.len(), 3);
        assert_eq!(config.proxy, ProxyConfig::default());
    }

    #[test]
    fn unknown_field_is_named() {
        let e =
            err(&DESIGN_EXAMPLE
                .replace("region = \"us-east\"\ndata_dir", "regoin = \"x\"\ndata_dir"));
        assert_eq!(e.field, "regoin", "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err(&DESIGN_EXAMPLE.replace("id = 1\n", "id = \"one\"\n"));
        assert!(e.to_string().contains("line"), "{e}");
    }

    #[test]
    fn route_to_unknown_upstream_names_the_target() {
        let e = err(&DESIGN_EXAMPLE.replace("upstream = \"openai\"", "upstream = \"opnai\""));
        assert_eq!(e.field, "routes[0].tiers[1][0].upstream");
        assert!(e.message.contains("opnai"));
    }

    #[test]
    fn empty_tier_is_refused() {
        let e = err(&DESIGN_EXAMPLE.replace(
            "[{ upstream = \"openai\", model = \"gpt-4o-mini\", input_per_mtok = 0.15, output_per_mtok = 0.60 }],",
            "[],",
        ));
        assert_eq!(e.field, "routes[0].tiers[1]");
    }

    #[test]
    fn health_and_hedge_settings_are_checked() {
        let e = err(&format!("{DESIGN_EXAMPLE}\n[health]\nexplore = 1.5\n"));
        assert_eq!(e.field, "health.explore");
        let e = err(&format!(
            "{DESIGN_EXAMPLE}\n[health]\nejection_ms = 5000\nmax_ejection_ms = 1000\n"
        ));
        assert_eq!(e.field, "health.max_ejection_ms");
        let hedged = DESIGN_EXAMPLE.replace(
            "model = \"fast\"\n",
            "model = \"fast\"\nhedge = { quantile = 1.0 }\n",
        );
        assert_eq!(err(&hedged).field, "routes[0].hedge.quantile");
        let ok = DESIGN_EXAMPLE.replace(
            "model = \"fast\"\n",
            "model = \"fast\"\nhedge = { budget = 0.05 }\nerror_threshold = 0.2\n",
        );
        let config = Config::from_toml(&ok).unwrap();
        let hedge = config.routes[0].hedge.clone().unwrap();
        assert_eq!((hedge.quantile, hedge.budget), (0.95, 0.05));
        assert_eq!(config.routes[0].error_threshold, Some(0.2));
        assert_eq!(config.health, HealthConfig::default());
    }

    #[test]
    fn negative_price_is_refused() {
        let e = err(&DESIGN_EXAMPLE.replace("input_per_mtok = 0.07", "input_per_mtok = -1.0"));
        assert_eq!(e.field, "routes[0].tiers[0][0].input_per_mtok");
    }

    #[test]
    fn duplicate_upstream_is_refused() {
        let e = err(&DESIGN_EXAMPLE.replace("id = \"openai\"", "id = \"deepseek\""));
        assert_eq!(e.field, "upstreams[1].id");
    }

    #[test]
    fn bad_base_url_is_refused() {
        let e = err(&DESIGN_EXAMPLE.replace("https://api.deepseek.com/v1", "ftp://x/v1"));
        assert_eq!(e.field, "upstreams[0].base_url");
    }

    #[test]
    fn public_listener_without_keys_is_refused() {
        let text = DESIGN_EXAMPLE
            .replace(
                "[[keys]]\nname = \"app\"\nkey_env = \"MERIDIAN_CLIENT_KEY\"\n",
                "",
            )
            .replace("api = \"127.0.0.1:8080\"", "api = \"0.0.0.0:8080\"");
        assert_eq!(err(&text).field, "listen.api");
    }

    #[test]
    fn bad_member_is_named() {
        let e = err(&DESIGN_EXAMPLE.replace("2@127.0.0.1:7081", "two@127.0.0.1:7081"));
        assert_eq!(e.field, "cluster.members[1]");
    }

    #[test]
    fn zero_timeout_is_refused() {
        let e = err(&format!(
            "{DESIGN_EXAMPLE}\n[proxy]\nfirst_byte_timeout_ms = 0\n"
        ));
        assert_eq!(e.field, "proxy.first_byte_timeout_ms");
    }

    #[test]
    fn credentials_in_base_url_are_refused_without_echoing_them() {
        let e = err(&DESIGN_EXAMPLE.replace(
            "https://api.deepseek.com/v1",
            "https://user:hunter2@api.deepseek.com/v1",
        ));
        assert_eq!(e.field, "upstreams[0].base_url");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = err(&DESIGN_EXAMPLE.replace(
            "https://api.deepseek.com/v1",
            "http://only-user@api.deepseek.com/v1",
        ));
        assert_eq!(e.field, "upstreams[0].base_url");
    }

    #[test]
    fn key_variables_must_be_variable_names() {
        for hostile in ["", " ", "A=B", "A B", "1ABC", "KEY\\n", "../x"] {
            let text = DESIGN_EXAMPLE.replace(
                "api_key_env = \"DEEPSEEK_API_KEY\"",
                &format!("api_key_env = \"{hostile}\""),
            );
            assert_eq!(err(&text).field, "upstreams[0].api_key_env", "{hostile:?}");
        }
    }

    #[test]
    fn key_and_ca_files_must_be_printable_names() {
        for (line, field) in [
            ("api_key_file = \"\"", "upstreams[0].api_key_file"),
            (
                "api_key_file = \"/k\\nFORGED log line\"",
                "upstreams[0].api_key_file",
            ),
            ("ca_file = \"/ca\\u0000.pem\"", "upstreams[0].ca_file"),
            ("ca_file = \"/ca\\u001b[31m.pem\"", "upstreams[0].ca_file"),
        ] {
            let text = DESIGN_EXAMPLE.replace("api_key_env = \"DEEPSEEK_API_KEY\"", line);
            assert_eq!(err(&text).field, field, "{line}");
        }
        let long = format!("ca_file = \"/{}\"", "a".repeat(5000));
        let text = DESIGN_EXAMPLE.replace("api_key_env = \"DEEPSEEK_API_KEY\"", &long);
        assert_eq!(err(&text).field, "upstreams[0].ca_file");
    }

    #[test]
    fn short_secrets_are_refused_naming_the_field() {
        let e = check_secret_strength("admin.token_env", "TOKEN", "x").unwrap_err();
        assert_eq!(e.field, "admin.token_env");
        assert!(
            e.message.contains("TOKEN") && e.message.contains("16"),
            "{e}"
        );
        assert!(check_secret_strength("f", "V", "   fifteen-chars  ").is_err());
        assert!(check_secret_strength("f", "V", "sixteen-chars-ok").is_ok());
        assert!(check_secret_strength("f", "V", "ééééééééééééééé").is_err());
    }

    const SECRETS: &str = "\n[secrets]\nenv = [\"OPENAI_API_KEY\", \"SPARE_KEY\"]\nenv_prefix = \"MERIDIAN_UPSTREAM_\"\ndir = \"/etc/meridian/keys\"\n";

    fn policy(extra: &str) -> SecretPolicy {
        SecretPolicy::new(&Config::from_toml(&format!("{DESIGN_EXAMPLE}{extra}")).unwrap())
    }

    #[test]
    fn secrets_section_is_checked() {
        let config = Config::from_toml(&format!("{DESIGN_EXAMPLE}{SECRETS}")).unwrap();
        assert_eq!(
            config.secrets.env_prefix.as_deref(),
            Some("MERIDIAN_UPSTREAM_")
        );
        for (bad, field) in [
            ("env_prefix = \"M\"", "secrets.env_prefix"),
            ("env_prefix = \"A=B_\"", "secrets.env_prefix"),
            ("env = [\"OK\", \"NOT OK\"]", "secrets.env[1]"),
            ("dir = \"keys\"", "secrets.dir"),
            ("dir = \"/\"", "secrets.dir"),
            ("dir = \"/etc/../keys\"", "secrets.dir"),
            ("surprise = 1", "surprise"),
        ] {
            assert_eq!(
                err(&format!("{DESIGN_EXAMPLE}\n[secrets]\n{bad}\n")).field,
                field,
                "{bad}"
            );
        }
        assert_eq!(
            Config::from_toml(DESIGN_EXAMPLE).unwrap().secrets,
            SecretsConfig::default()
        );
    }

    #[test]
    fn the_admin_api_may_name_only_allowed_variables() {
        let api = SecretOrigin::AdminApi;
        let p = policy(SECRETS);
        assert!(p.check_env("upstream", "SPARE_KEY", api).is_ok());
        assert!(
            p.check_env("upstream", "MERIDIAN_UPSTREAM_ACME", api)
                .is_ok()
        );
        // Named by the file's own upstreams.
        assert!(p.check_env("upstream", "DEEPSEEK_API_KEY", api).is_ok());
        for var in [
            "HOME",
            "PATH",
            "AWS_SECRET_ACCESS_KEY",
            "SPARE_KEY_2",
            "MERIDIAN_UPSTREAM",
        ] {
            let e = p.check_env("upstream", var, api).unwrap_err();
            assert_eq!(e.field, "upstream.api_key_env", "{var}");
        }
        // The node's own secrets, whatever [secrets] says.
        let greedy =
            policy("\n[secrets]\nenv = [\"MERIDIAN_CLIENT_KEY\"]\nenv_prefix = \"MERIDIAN_\"\n");
        for var in ["MERIDIAN_CLIENT_KEY", "MERIDIAN_ADMIN_TOKEN"] {
            let e = greedy.check_env("upstream", var, api).unwrap_err();
            assert!(e.message.contains("client key"), "{var}: {e}");
            assert!(
                greedy.check_env("u", var, SecretOrigin::Applied).is_err(),
                "{var}"
            );
        }
        let text = format!(
            "{}\n[secrets]\nenv_prefix = \"OPS_\"\n",
            DESIGN_EXAMPLE.replace(
                "token_env = \"MERIDIAN_ADMIN_TOKEN\"",
                "token_env = \"OPS_TOKEN\""
            )
        );
        let other_token = SecretPolicy::new(&Config::from_toml(&text).unwrap());
        assert!(other_token.check_env("u", "OPS_TOKEN", api).is_err());
        assert!(other_token.check_env("u", "OPS_OTHER", api).is_ok());
        // Without [secrets], only what the file names.
        let bare = policy("");
        assert!(bare.check_env("u", "OPENAI_API_KEY", api).is_ok());
        assert!(bare.check_env("u", "SPARE_KEY", api).is_err());
    }

    #[test]
    fn a_file_naming_its_own_secret_may_read_it_but_the_api_may_not() {
        let text = DESIGN_EXAMPLE.replace(
            "api_key_env = \"DEEPSEEK_API_KEY\"",
            "api_key_env = \"MERIDIAN_CLIENT_KEY\"",
        );
        let p = SecretPolicy::new(&Config::from_toml(&text).unwrap());
        assert!(
            p.check_env("u", "MERIDIAN_CLIENT_KEY", SecretOrigin::Applied)
                .is_ok()
        );
        assert!(
            p.check_env("u", "MERIDIAN_CLIENT_KEY", SecretOrigin::AdminApi)
                .is_err()
        );
    }

    #[test]
    fn key_files_must_be_below_the_secrets_dir() {
        let api = SecretOrigin::AdminApi;
        let p = policy(SECRETS);
        let dir = PathBuf::from("/etc/meridian/keys");
        assert_eq!(
            p.check_file("upstream", Path::new("/etc/meridian/keys/openai"), api),
            Ok(FileAccess::BelowDir(dir.clone()))
        );
        for hostile in [
            "/etc/passwd",
            "/etc/meridian/keys",
            "/etc/meridian/keys/../../passwd",
            "/etc/meridian/keys/a/../../x",
            "etc/meridian/keys/openai",
            "keys/openai",
            "/etc/meridian/keysmith/x",
            "/etc/meridian/certs/n1.key",
        ] {
            let e = p
                .check_file("upstream", Path::new(hostile), api)
                .unwrap_err();
            assert_eq!(e.field, "upstream.api_key_file", "{hostile}");
        }
        let e = policy("")
            .check_file("u", Path::new("/etc/meridian/keys/openai"), api)
            .unwrap_err();
        assert!(e.message.contains("[secrets] dir"), "{e}");
        // The node's TLS key, even below the dir and even named in a seed.
        let tls_in_dir = DESIGN_EXAMPLE.replace("certs/n1.key", "/etc/meridian/keys/n1.key");
        let p = SecretPolicy::new(&Config::from_toml(&format!("{tls_in_dir}{SECRETS}")).unwrap());
        assert!(
            p.check_file("u", Path::new("/etc/meridian/keys/n1.key"), api)
                .is_err()
        );
        // Resolved paths: a symlink out of the dir, or onto a TLS file.
        let resolved_tls = [PathBuf::from("/srv/tls/n1.key")];
        assert!(p.resolved_inside(Path::new("/etc/meridian/keys/a"), &dir, &resolved_tls));
        assert!(!p.resolved_inside(Path::new("/etc/shadow"), &dir, &resolved_tls));
        assert!(!p.resolved_inside(&dir, &dir, &resolved_tls));
        let tls_dir = [dir.join("n1.key")];
        assert!(!p.resolved_inside(&dir.join("n1.key"), &dir, &tls_dir));
    }

    #[test]
    fn files_the_node_names_itself_are_read_as_named() {
        let text = DESIGN_EXAMPLE.replace(
            "api_key_env = \"DEEPSEEK_API_KEY\"",
            "api_key_file = \"run/deepseek.key\"",
        );
        let p = SecretPolicy::new(&Config::from_toml(&text).unwrap());
        for origin in [SecretOrigin::Applied, SecretOrigin::AdminApi] {
            assert_eq!(
                p.check_file("u", Path::new("run/deepseek.key"), origin),
                Ok(FileAccess::Named)
            );
        }
        assert!(
            p.check_file("u", Path::new("run/other.key"), SecretOrigin::Applied)
                .is_err()
        );
    }

    #[test]
    fn connection_limits_are_checked_and_named() {
        let config = Config::from_toml(DESIGN_EXAMPLE).unwrap();
        assert_eq!(config.connections, ConnectionsConfig::default());
        let cases = [
            (
                "header_read_timeout_ms = 0",
                "connections.header_read_timeout_ms",
            ),
            ("body_timeout_ms = 0", "connections.body_timeout_ms"),
            ("idle_timeout_ms = 0", "connections.idle_timeout_ms"),
            ("idle_timeout_ms = 3600001", "connections.idle_timeout_ms"),
            (
                "h2_keepalive_interval_ms = 99999999999",
                "connections.h2_keepalive_interval_ms",
            ),
            ("max_connections = 0", "connections.max_connections"),
            (
                "admin_max_connections = 0",
                "connections.admin_max_connections",
            ),
            ("max_connections = 1000001", "connections.max_connections"),
            ("max_h2_streams = 0", "connections.max_h2_streams"),
            ("max_h2_streams = 65537", "connections.max_h2_streams"),
        ];
        for (line, field) in cases {
            let e = err(&format!("{DESIGN_EXAMPLE}\n[connections]\n{line}\n"));
            assert_eq!(e.field, field, "{line}: {e}");
        }
        for hostile in [
            "max_connections = -1",
            "max_h2_streams = 4294967296",
            "body_timeout_ms = \"1s\"",
        ] {
            // Refused with the line; the parser's field naming for type
            // errors is shared with every other section.
            let e = err(&format!("{DESIGN_EXAMPLE}\n[connections]\n{hostile}\n"));
            assert!(e.message.contains("line"), "{hostile}: {e}");
        }
        let e = err(&format!(
            "{DESIGN_EXAMPLE}\n[connections]\nmax_conections = 5\n"
        ));
        assert!(e.field.contains("max_conections"), "{e}");
        let ok = Config::from_toml(&format!(
            "{DESIGN_EXAMPLE}\n[connections]\nmax_connections = 5\nh2_keepalive_interval_ms = 0\n"
        ))
        .unwrap();
        assert_eq!(ok.connections.max_connections, 5);
        assert_eq!(ok.connections.idle_timeout_ms, 60_000);
    }

    #[test]
    fn minimal_config_uses_defaults() {
        let config = Config::from_toml("[node]\nid = 7\nregion = \"eu\"\n").unwrap();
        assert_eq!(config.listen, ListenConfig::default());
        assert!(config.tls.is_none());
        assert!(config.routes.is_empty());
    }
}
