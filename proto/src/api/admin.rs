//! The admin API's answers and request bodies (`/readyz` and
//! `/admin/v1/…`). Errors use the OpenAI envelope
//! ([`super::openai::ErrorEnvelope`]), with a stable `code`.
//!
//! Figures that are plain numbers default to 0 when a field is missing, so
//! a client reads a node one version older or newer; names, roles and
//! states are required.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /readyz`: whether this node can serve, and why not (needs no token,
/// so it names fields, never reasons).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `config_applied` and at least one usable route.
    pub ready: bool,
    /// The cluster's configuration is applied here: the replicated state
    /// has been seeded, and the routing table is current at an applied log
    /// index (not built from nothing, as at a new node's start).
    pub config_applied: bool,
    /// The log index the routing table is known to be current at.
    pub applied_index: Option<u64>,
    /// Routes in the table.
    pub routes: usize,
    /// Routes with at least one upstream this node can send to.
    pub usable_routes: usize,
    /// Upstreams this node does not use, with the field at fault (the
    /// reasons are in `/admin/v1/health` and the log: this answer needs no
    /// token).
    pub disabled_upstreams: Vec<DisabledUpstream>,
    /// The cluster removed this node: it serves nothing (never ready).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// How long this node has heard no quorum, once past one election
    /// timeout: it still serves the configuration it applied last
    /// (fail-static), and `/readyz?strict=true` answers 503 so GeoDNS can
    /// prefer other regions. Absent while the cluster is heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_off_ms: Option<u64>,
}

/// An upstream disabled on this node, as `/readyz` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledUpstream {
    /// Its id.
    pub id: String,
    /// The field to fix.
    pub field: String,
}

/// `GET /admin/v1/cluster`: who leads, in which term, how far each member
/// has replicated, as the node asked sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node asked.
    pub id: u64,
    /// Its region.
    pub region: String,
    /// Its Raft role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The commit index as its Raft knows it (a quorum holds everything up
    /// to it); `applied_index` may trail it.
    pub commit_index: Option<u64>,
    /// The last index it applied.
    pub applied_index: Option<u64>,
    /// The last index in its snapshot.
    pub snapshot_index: Option<u64>,
    /// The last index purged from its log.
    pub purged_index: Option<u64>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    /// Every member of the membership in force.
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// Whether the node says it leads.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Whether member `id` has announced `admin` as its admin address (a
    /// launcher waits for this before it sends writes to any node).
    pub fn announced(&self, id: u64, admin: std::net::SocketAddr) -> bool {
        let admin = admin.to_string();
        self.members
            .iter()
            .any(|m| m.id == id && m.admin_addr.as_deref() == Some(admin.as_str()))
    }
}

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It leads.
    Leader,
    /// It follows a leader (or waits for one).
    Follower,
    /// It is running for leader.
    Candidate,
    /// It receives the log but does not vote.
    Learner,
    /// Its Raft core stopped.
    Shutdown,
    /// It was elected leader but has heard no quorum for longer than its
    /// bound (partitioned from the majority): it can commit nothing, and
    /// the majority may have elected another leader. Not counted as leading.
    Isolated,
}

impl Role {
    /// As the wire writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Follower => "follower",
            Self::Candidate => "candidate",
            Self::Learner => "learner",
            Self::Shutdown => "shutdown",
            Self::Isolated => "isolated",
        }
    }
}

/// A member of the cluster in a [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Its id.
    pub id: u64,
    /// Whether it votes.
    pub role: MemberRole,
    /// Its Raft address.
    pub raft_addr: String,
    /// Its admin API, once it announced one.
    pub admin_addr: Option<String>,
    /// Its region, once it announced one.
    pub region: Option<String>,
    /// On the leader: the last log index this member is known to hold.
    pub matched_index: Option<u64>,
    /// On the leader: how many entries this member is behind.
    pub lag: Option<u64>,
    /// Milliseconds since this member last answered this node (the leader
    /// hears from every member each heartbeat); `null` for this node itself
    /// and for members it has not talked to.
    pub last_contact_ms: Option<u64>,
    /// The round trip to this member as QUIC measures it on this node's
    /// connection (smoothed), in milliseconds; `null` without one. Raft's
    /// heartbeat must stay well above it (see `cluster.heartbeat_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<u64>,
}

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// It votes and counts toward the quorum.
    Voter,
    /// It receives the log and serves, but does not vote.
    Learner,
}

impl MemberRole {
    /// As the wire writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voter => "voter",
            Self::Learner => "learner",
        }
    }
}

/// `POST /admin/v1/members`: a node to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Its id (never reused).
    pub id: u64,
    /// Its Raft address, host:port.
    pub raft_addr: String,
    /// Promote to voter once it has caught up (default); false keeps a learner.
    #[serde(default = "yes")]
    pub voter: bool,
}

fn yes() -> bool {
    true
}

/// The answer to `POST /admin/v1/members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAdded {
    /// The node added.
    pub added: u64,
    /// Whether it was promoted to voter.
    pub voter: bool,
}

/// The answer to `DELETE /admin/v1/members/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    /// The node removed.
    pub removed: u64,
}

/// The answer to a change of the replicated configuration (a put or a
/// delete of an upstream, route or key): acknowledged once committed and
/// applied on the node asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    /// Whether the state changed (false: it already was so).
    pub changed: bool,
    /// The log index this node applied it at.
    pub applied_index: Option<u64>,
}

/// A client key as the admin API shows it: its name only (not even the
/// hash leaves the node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyName {
    /// Its name.
    pub name: String,
}

/// `GET /admin/v1/health`: every upstream as this node sees it, and what
/// every member reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthAnswer {
    /// The node asked.
    pub node: u64,
    /// Its region.
    pub region: String,
    /// Every upstream of its routing table.
    pub upstreams: Vec<UpstreamHealth>,
    /// Every member's latest report, with its age as this node judges it.
    pub reports: BTreeMap<u64, ReportView>,
    /// Each priority class's service over this node's window against its
    /// objective, in priority order; empty (and left out) when no classes
    /// are configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassSla>,
}

/// One priority class's service level in a [`HealthAnswer`]: its requests
/// on this node over the window and how they measure against its `slo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSla {
    /// The class's name.
    pub name: String,
    /// Requests of the class in the window (answered or failed).
    pub requests: u64,
    /// Share of them answered (1 when there were none).
    pub success_ratio: f64,
    /// p99 time to the answer (a stream's first chunk) of those answered,
    /// in milliseconds; `null` when none were.
    pub p99_ms: Option<f64>,
    /// The class's objective; `null` when it has none.
    pub slo: Option<SloView>,
    /// Share of the window's error budget not yet spent: 1 untouched, 0
    /// spent, below 0 overspent; `null` without an objective.
    pub error_budget_left: Option<f64>,
}

/// A class's objective, as [`ClassSla`] quotes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SloView {
    /// Share of requests to answer, e.g. 0.999.
    pub success: f64,
    /// p99 to stay under, in milliseconds, if any.
    pub p99_ms: Option<u64>,
}

/// One upstream in a [`HealthAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamHealth {
    /// Its id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// Where it is.
    pub base_url: String,
    /// Whether this node holds its key.
    pub key: KeyStatus,
    /// Why this node does not use it, naming the field; `null` when it does.
    pub disabled: Option<DisabledView>,
    /// Requests this node has in flight to it.
    pub in_flight: usize,
    /// This node's circuit breaker.
    pub circuit: CircuitState,
    /// How long the upstream stays cooled on this node after asking (here
    /// or on another node) to be left alone with `Retry-After`, in
    /// milliseconds; 0 (and left out) when it is not cooled.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cooldown_ms: u64,
    /// This node's own window.
    pub window: WindowView,
    /// What every member reported, per region and merged.
    #[serde(flatten)]
    pub shared: BoardView,
}

/// Whether a node holds the provider key an upstream needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// The upstream needs no key.
    NotNeeded,
    /// The key was read.
    Present,
    /// The key is not available on this node (why, never the key); the
    /// upstream is skipped.
    Missing(String),
}

/// Why a node does not use an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledView {
    /// The upstream's field at fault: `api_key_env`, `ca_file`, …
    pub field: String,
    /// What is wrong, in words an operator can act on (never the key).
    pub reason: String,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Traffic flows.
    Closed,
    /// Ejected: tried only when every other target has failed.
    Open,
    /// One probe may go.
    HalfOpen,
}

impl CircuitState {
    /// As the wire writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quantiles {
    /// Samples behind the figures.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile (the hedging delay).
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// One node's recent window of one upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowView {
    /// Span of the window in seconds.
    pub window_s: u64,
    /// Attempts in the window.
    pub attempts: u64,
    /// 2xx answers.
    pub successes: u64,
    /// Client-caused 4xx answers passed through.
    pub client_errors: u64,
    /// Upstream failures.
    pub errors: u64,
    /// First-byte timeouts.
    pub timeouts: u64,
    /// (errors + timeouts) / attempts, 0 when there were none.
    pub error_rate: f64,
    /// Time to first byte.
    pub ttfb_ms: Quantiles,
    /// Total time.
    pub total_ms: Quantiles,
}

/// What the members' reports say of one upstream, per region and merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BoardView {
    /// Per region.
    pub regions: BTreeMap<String, ReportedView>,
    /// Every region merged.
    pub merged: ReportedView,
}

/// What a set of reports says about one upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportedView {
    /// Nodes whose reports are merged here.
    pub nodes: usize,
    /// Attempts in their windows.
    pub attempts: u64,
    /// 2xx answers.
    pub successes: u64,
    /// Upstream failures.
    pub errors: u64,
    /// First-byte timeouts.
    pub timeouts: u64,
    /// (errors + timeouts) / attempts.
    pub error_rate: f64,
    /// Time to first byte.
    pub ttfb_ms: Quantiles,
    /// Total time.
    pub total_ms: Quantiles,
    /// Age of the oldest report merged, in milliseconds.
    pub report_age_ms: u64,
}

/// What the board says of one member's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportView {
    /// The member's region.
    pub region: String,
    /// Its sequence number.
    pub seq: u64,
    /// How long ago this node first saw it.
    pub age_ms: u64,
    /// Whether it is too old to count.
    pub stale: bool,
    /// Histograms in it that could not be decoded (a corrupt report);
    /// absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub undecodable: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `GET /admin/v1/events`: this node's recent failovers, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// The node asked.
    pub node: u64,
    /// Its region.
    pub region: String,
    /// Its recent failovers, newest first.
    pub failovers: Vec<FailoverEvent>,
}

/// One failover, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverEvent {
    /// Increasing number of the event on this node.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The request's id, as in its log lines.
    pub request_id: String,
    /// The route.
    pub route: String,
    /// The upstream whose attempt failed.
    pub from: String,
    /// The upstream tried next.
    pub to: String,
    /// Why the attempt failed, as the request's log line says.
    pub reason: String,
}

/// `GET /admin/v1/catalogue`: the models of every upstream as this node
/// holds them (declared in the configuration, discovered by the leader and
/// replicated), so an operator sees that every region lists the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueAnswer {
    /// The node asked.
    pub node: u64,
    /// Its region.
    pub region: String,
    /// Every upstream of the applied configuration, by id.
    pub upstreams: Vec<UpstreamCatalogue>,
}

/// One upstream in a [`CatalogueAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamCatalogue {
    /// Its id, the prefix of its models' addressed names.
    pub id: String,
    /// Whether the leader fetches its model list (`discover_models`).
    #[serde(default)]
    pub discover: bool,
    /// The models its configuration declares (`models`).
    #[serde(default)]
    pub declared: Vec<String>,
    /// The models the leader last committed for it, sorted.
    #[serde(default)]
    pub discovered: Vec<String>,
    /// When this node applied the discovered list it holds, in
    /// milliseconds since the Unix epoch (since this process started, at
    /// the earliest); absent when it holds none.
    #[serde(default)]
    pub applied_unix_ms: Option<u64>,
    /// The last fetch of its list this node made; only the leader fetches,
    /// so the other nodes show none (or one from when they led).
    #[serde(default)]
    pub last_fetch: Option<CatalogueFetch>,
}

/// One fetch of an upstream's model list, as the node that made it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueFetch {
    /// When it ended, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub at_unix_ms: u64,
    /// Whether it returned a usable list (a failed one commits nothing).
    pub ok: bool,
    /// Models the list held.
    #[serde(default)]
    pub models: usize,
    /// Why it failed, with any secret scrubbed.
    #[serde(default)]
    pub error: Option<String>,
}
