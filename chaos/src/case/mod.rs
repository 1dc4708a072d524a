//! Chaos scenarios as declarative TOML files (`chaos/cases/*.toml`): the
//! cluster to start, the load to offer, the config writes to make, the
//! faults to inject and when, and the SLA the run is judged against.
//!
//! A case is parsed into [`CaseFile`] (the raw TOML shape, unknown fields
//! refused) and then checked into a [`Case`], whose faults are typed. Every
//! error names the offending field (`faults[2].until_s: ...`) so a broken
//! case is fixed without reading the runner's code.

use std::path::Path;
use std::time::Duration;

use proto::FieldError;
use serde::Deserialize;

use mock::Behavior;

pub mod tenants;
#[cfg(test)]
mod tests;

pub use tenants::TenantsSpec;

/// Why a case file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse or has an unknown or mistyped field.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: String,
        /// The parser's message (it names the field and line).
        message: String,
    },
    /// A field parsed but its value cannot be used; the field is a path
    /// into the file (`faults[1].rate`).
    #[error(transparent)]
    Field(FieldError),
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> CaseError {
    CaseError::Field(FieldError::new(field, message))
}

/// The raw shape of a case file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Name of the case (defaults to the file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// One sentence saying what the case proves.
    #[serde(default)]
    pub description: String,
    /// How long load and faults run, in seconds.
    pub duration_s: f64,
    /// The cluster to start.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The fake providers' behaviour at start and after each fault.
    #[serde(default)]
    pub upstreams: UpstreamsSpec,
    /// The route the load uses.
    #[serde(default)]
    pub route: RouteSpec,
    /// The data-plane load.
    #[serde(default)]
    pub load: LoadSpec,
    /// The config writes and their oracle.
    #[serde(default)]
    pub writes: WritesSpec,
    /// What the run must achieve.
    #[serde(default)]
    pub sla: SlaSpec,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Client keys with limits the load calls with (absent: no keys).
    #[serde(default)]
    pub tenants: Option<TenantsSpec>,
}

/// The cluster to start: `nodes` voters, one region each.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Number of nodes (and regions).
    pub nodes: usize,
    /// `cluster.heartbeat_ms` of every node.
    pub heartbeat_ms: u64,
    /// `cluster.election_timeout_ms` of every node.
    pub election_timeout_ms: u64,
    /// `cluster.snapshot_logs` of every node.
    pub snapshot_logs: u64,
    /// `proxy.workers` of every node (data-plane threads).
    pub workers: u32,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 3,
            heartbeat_ms: 200,
            election_timeout_ms: 2_000,
            snapshot_logs: 1_000,
            workers: 1,
        }
    }
}

/// The fake providers: `count` meridian-mock processes named `a`, `b`, …
/// sharing one baseline behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamsSpec {
    /// Number of mocks (1 to 8), upstream ids `a`, `b`, ….
    pub count: usize,
    /// The baseline behaviour (meridian-mock's JSON fields, as TOML).
    pub behavior: toml::Table,
}

impl Default for UpstreamsSpec {
    fn default() -> Self {
        Self {
            count: 2,
            behavior: toml::Table::new(),
        }
    }
}

/// The route `chat` that the load calls: every upstream in one tier (or one
/// tier each with `tiered`), with the given timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSpec {
    /// One tier per upstream (a, then b, …) instead of all in one tier.
    pub tiered: bool,
    /// `max_attempts` of the route.
    pub max_attempts: u32,
    /// `first_byte_timeout_ms` of the route.
    pub first_byte_timeout_ms: u64,
    /// `request_timeout_ms` of the route.
    pub request_timeout_ms: u64,
}

impl Default for RouteSpec {
    fn default() -> Self {
        Self {
            tiered: false,
            max_attempts: 3,
            first_byte_timeout_ms: 2_000,
            request_timeout_ms: 15_000,
        }
    }
}

/// The data-plane load: open loop, split evenly across the regions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSpec {
    /// Requests per second over all regions.
    pub rate: f64,
    /// Share of streamed requests (0..1).
    pub stream_share: f64,
    /// Client timeout of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight per region beyond which a due request is dropped
    /// (and counted as a failure).
    pub max_in_flight: usize,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            rate: 120.0,
            stream_share: 0.3,
            timeout_ms: 20_000,
            max_in_flight: 2_048,
        }
    }
}

/// The config writes: new routes at `rate`, each to a random running node,
/// plus one upstream rewritten over and over (a register).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritesSpec {
    /// Route writes per second (0 disables them).
    pub rate: f64,
    /// Register writes per second (sequential; 0 disables them).
    pub register_rate: f64,
    /// Timeout of one admin call, in milliseconds.
    pub timeout_ms: u64,
    /// How long to wait after the run for every node to hold every
    /// acknowledged write, in seconds.
    pub settle_s: f64,
}

impl Default for WritesSpec {
    fn default() -> Self {
        Self {
            rate: 3.0,
            register_rate: 1.0,
            timeout_ms: 10_000,
            settle_s: 30.0,
        }
    }
}

/// What a run must achieve to pass.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaSpec {
    /// Least share of requests that must succeed (2xx, body complete).
    pub success_ratio: f64,
    /// Highest p99 latency of successful requests, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Least number of restarts that must have happened (each one ready).
    pub min_restarts: Option<u32>,
    /// Leave out of the success ratio the requests that were in flight on
    /// a node at the instant it was SIGKILLed (a client SDK retries those;
    /// no server can finish them). They are always counted and reported.
    pub forgive_killed_in_flight: bool,
    /// Most rises of the cluster's highest term during the run (each is
    /// at least one election); absent: not judged.
    pub max_term_changes: Option<u64>,
    /// Config writes must be acknowledged within this many ms ...
    pub write_commit_ms: Option<f64>,
    /// ... this share of them (of all writes sent).
    pub write_commit_share: f64,
    /// Oldest another member's health report may get on any node, in ms.
    pub max_report_age_ms: Option<u64>,
}

impl Default for SlaSpec {
    fn default() -> Self {
        Self {
            success_ratio: 0.999,
            p99_ms: None,
            min_restarts: None,
            forgive_killed_in_flight: false,
            max_term_changes: None,
            write_commit_ms: None,
            write_commit_share: 0.99,
            max_report_age_ms: None,
        }
    }
}

/// One fault as written: `kind` says which of the other fields apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `kill`, `partition`, `delay`, `loss`, `upstream` or `upstream_net`.
    pub kind: String,
    /// When it starts, seconds from the start of the load.
    pub at_s: f64,
    /// When it ends (defaults to the end of the run); not for `kill`.
    pub until_s: Option<f64>,
    /// `kill`: which node (`leader`, `follower`, `random`, `each`, `nK`).
    pub node: Option<String>,
    /// `kill`: `kill` (SIGKILL, the default) or `term` (SIGTERM).
    pub signal: Option<String>,
    /// `kill`: seconds the node stays down before its restart (default 0).
    pub down_s: Option<f64>,
    /// `kill`: how many times (default 1; with `node = "each"`, the node count).
    pub count: Option<u32>,
    /// `kill`: seconds between two repetitions.
    pub every_s: Option<f64>,
    /// Network faults: the sending side (node selectors; default every node).
    pub from: Option<Vec<String>>,
    /// Network faults: the receiving side (default every node not in `from`).
    pub to: Option<Vec<String>>,
    /// `partition`: drop only `from` → `to`, not the replies.
    pub oneway: Option<bool>,
    /// `delay`: round trip range in ms, one fixed draw per pair of nodes.
    pub rtt_ms: Option<[f64; 2]>,
    /// `delay`: jitter added to each packet, ± this many ms.
    pub jitter_ms: Option<f64>,
    /// `loss`: share of packets dropped (0..1).
    pub rate: Option<f64>,
    /// `upstream`, `upstream_net`: which upstream (`a`, `b`, …).
    pub upstream: Option<String>,
    /// `upstream`: the mock behaviour fields to change, as TOML.
    pub behavior: Option<toml::Table>,
    /// `upstream`: multiply the baseline latencies by this.
    pub latency_factor: Option<f64>,
    /// `upstream`: alternate faulty and healthy every this many seconds.
    pub flap_s: Option<f64>,
    /// `upstream_net`: `blackhole` (accept, never answer) or `reset`.
    pub mode: Option<String>,
}

/// A checked case, ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name (the output directory's name).
    pub name: String,
    /// What it proves.
    pub description: String,
    /// How long load and faults run.
    pub duration: Duration,
    /// The cluster.
    pub cluster: ClusterSpec,
    /// Number of mocks.
    pub upstreams: usize,
    /// The mocks' baseline behaviour, validated.
    pub baseline: Behavior,
    /// The route the load uses.
    pub route: RouteSpec,
    /// The load.
    pub load: LoadSpec,
    /// The writes.
    pub writes: WritesSpec,
    /// The target.
    pub sla: SlaSpec,
    /// The faults, typed.
    pub faults: Vec<Fault>,
    /// Client keys with limits; when set, the load calls with them (each
    /// key at its own rate from each region) instead of `load.rate`.
    pub tenants: Option<TenantsSpec>,
}

/// Which node a kill or a network fault picks, resolved when the fault starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSel {
    /// The current leader.
    Leader,
    /// A follower, at random.
    Follower,
    /// Any running node, at random.
    Random,
    /// Node K (1-based).
    Id(u64),
    /// Every node (network faults only).
    All,
    /// The K-th repetition takes node K (kills only: a rolling restart).
    Each,
}

/// How a node is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// SIGKILL: no chance to flush anything.
    Kill,
    /// SIGTERM: a graceful shutdown.
    Term,
}

/// What a network fault does to the packets it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEffect {
    /// Drop every packet (a partition).
    Drop,
    /// Drop each packet with this probability.
    Loss(f64),
    /// Delay: one-way delay from a round trip drawn once per pair in
    /// `[rtt_min, rtt_max]` ms, plus ± `jitter` ms per packet.
    Wan {
        /// Least round trip, ms.
        rtt_min: f64,
        /// Greatest round trip, ms.
        rtt_max: f64,
        /// Jitter per packet, ± ms.
        jitter: f64,
    },
}

/// What a provider fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamEffect {
    /// The mock's behaviour becomes this (PUT), and is put back after.
    Behave(Behavior),
    /// The TCP proxy in front of the mock accepts and never answers.
    Blackhole,
    /// The TCP proxy resets every connection.
    Reset,
}

/// One typed fault of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Stop a node (`count` times, `every` apart), restart it after `down`.
    Kill {
        /// Start.
        at: Duration,
        /// Which node.
        node: NodeSel,
        /// How.
        signal: Signal,
        /// Time down before the restart.
        down: Duration,
        /// Repetitions.
        count: u32,
        /// Between repetitions.
        every: Duration,
    },
    /// Packets between nodes dropped or delayed.
    Net {
        /// Start.
        at: Duration,
        /// End.
        until: Duration,
        /// Senders.
        from: Vec<NodeSel>,
        /// Receivers (`None`: every node not in `from`).
        to: Option<Vec<NodeSel>>,
        /// Only `from` → `to` (else both ways).
        oneway: bool,
        /// What happens to the packets.
        effect: NetEffect,
        /// The kind as written, for the report.
        label: String,
    },
    /// A provider fault.
    Upstream {
        /// Start.
        at: Duration,
        /// End.
        until: Duration,
        /// Upstream index (0 for `a`).
        upstream: usize,
        /// What it does.
        effect: UpstreamEffect,
        /// Alternate faulty/healthy with this half-period.
        flap: Option<Duration>,
        /// A short description for the report.
        label: String,
    },
}

impl Fault {
    /// When it starts.
    pub fn at(&self) -> Duration {
        match self {
            Fault::Kill { at, .. } | Fault::Net { at, .. } | Fault::Upstream { at, .. } => *at,
        }
    }
}

/// The upstream id of mock `index` (`a`, `b`, …).
pub fn upstream_id(index: usize) -> String {
    let letter = u8::try_from(index)
        .ok()
        .and_then(|i| b'a'.checked_add(i))
        .map_or('?', char::from);
    letter.to_string()
}

fn upstream_index(name: &str, count: usize) -> Option<usize> {
    (0..count).find(|&i| upstream_id(i) == name)
}

/// Converts a TOML table to JSON, for the mock's behaviour parser.
fn table_to_json(table: &toml::Table) -> Result<serde_json::Value, String> {
    serde_json::to_value(table).map_err(|e| e.to_string())
}

/// Secs to a duration, checking it is finite and not negative.
fn secs(field: &str, value: f64) -> Result<Duration, CaseError> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        field_error(
            field,
            format!("must be a number of seconds >= 0, got {value}"),
        )
    })
}

fn parse_node(field: &str, text: &str, nodes: usize) -> Result<NodeSel, CaseError> {
    let sel = match text {
        "leader" => NodeSel::Leader,
        "follower" => NodeSel::Follower,
        "random" => NodeSel::Random,
        "each" => NodeSel::Each,
        "all" | "*" => NodeSel::All,
        other => {
            let id = other
                .strip_prefix('n')
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&id| id >= 1 && id <= nodes as u64)
                .ok_or_else(|| {
                    field_error(
                        field,
                        format!(
                            "unknown node {other:?}: use leader, follower, random, all or n1..n{nodes}"
                        ),
                    )
                })?;
            NodeSel::Id(id)
        }
    };
    Ok(sel)
}

impl Case {
    /// The offered load, requests per second over all regions: the
    /// tenants' keys (each at its rate from every region), else `load.rate`.
    pub fn offered_rate(&self) -> f64 {
        match &self.tenants {
            Some(t) => t.keys.iter().map(|k| k.rate).sum::<f64>() * self.cluster.nodes as f64,
            None => self.load.rate,
        }
    }

    /// Reads, parses and checks a case file.
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "case".to_owned());
        Case::parse(&text, &stem).map_err(|e| match e {
            CaseError::Toml { message, .. } => CaseError::Toml {
                path: path.display().to_string(),
                message,
            },
            CaseError::Field(e) => CaseError::Field(FieldError::new(
                format!("{}: {}", path.display(), e.field),
                e.message,
            )),
            other => other,
        })
    }

    /// Parses and checks a case from its TOML text; `default_name` is used
    /// when the file has no `name`.
    pub fn parse(text: &str, default_name: &str) -> Result<Case, CaseError> {
        let file: CaseFile = toml::from_str(text).map_err(|e| CaseError::Toml {
            path: default_name.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        file.check(default_name)
    }
}

impl CaseFile {
    /// Checks every field and types the faults.
    pub fn check(self, default_name: &str) -> Result<Case, CaseError> {
        let name = self.name.clone().unwrap_or_else(|| default_name.to_owned());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(field_error(
                "name",
                format!("{name:?} must be non-empty letters, digits, '-' or '_'"),
            ));
        }
        let duration = secs("duration_s", self.duration_s)?;
        if duration < Duration::from_secs(5) || duration > Duration::from_secs(3_600) {
            return Err(field_error(
                "duration_s",
                format!("must be within 5..3600 s, got {}", self.duration_s),
            ));
        }
        let c = &self.cluster;
        if !(1..=7).contains(&c.nodes) {
            return Err(field_error(
                "cluster.nodes",
                format!("must be within 1..7, got {}", c.nodes),
            ));
        }
        if c.heartbeat_ms == 0 {
            return Err(field_error("cluster.heartbeat_ms", "must be > 0"));
        }
        if c.election_timeout_ms < c.heartbeat_ms * 2 {
            return Err(field_error(
                "cluster.election_timeout_ms",
                format!(
                    "must be at least twice cluster.heartbeat_ms ({}), got {}",
                    c.heartbeat_ms, c.election_timeout_ms
                ),
            ));
        }
        if c.workers == 0 {
            return Err(field_error("cluster.workers", "must be >= 1"));
        }
        if !(1..=8).contains(&self.upstreams.count) {
            return Err(field_error(
                "upstreams.count",
                format!("must be within 1..8, got {}", self.upstreams.count),
            ));
        }
        let baseline = table_to_json(&self.upstreams.behavior)
            .and_then(|json| {
                Behavior::from_json(json.to_string().as_bytes()).map_err(|e| e.to_string())
            })
            .map_err(|m| field_error("upstreams.behavior", m))?;
        let r = &self.route;
        if r.max_attempts == 0 {
            return Err(field_error("route.max_attempts", "must be >= 1"));
        }
        if r.first_byte_timeout_ms == 0 || r.request_timeout_ms < r.first_byte_timeout_ms {
            return Err(field_error(
                "route.request_timeout_ms",
                "must be >= route.first_byte_timeout_ms, both > 0",
            ));
        }
        let l = &self.load;
        if !(l.rate.is_finite() && l.rate > 0.0 && l.rate <= 5_000.0) {
            return Err(field_error(
                "load.rate",
                format!(
                    "must be within (0, 5000] requests per second, got {}",
                    l.rate
                ),
            ));
        }
        if !(0.0..=1.0).contains(&l.stream_share) {
            return Err(field_error(
                "load.stream_share",
                format!("must be within 0..1, got {}", l.stream_share),
            ));
        }
        if l.timeout_ms == 0 {
            return Err(field_error("load.timeout_ms", "must be > 0"));
        }
        if l.max_in_flight == 0 {
            return Err(field_error("load.max_in_flight", "must be >= 1"));
        }
        let w = &self.writes;
        for (field, rate) in [
            ("writes.rate", w.rate),
            ("writes.register_rate", w.register_rate),
        ] {
            if !(rate.is_finite() && (0.0..=100.0).contains(&rate)) {
                return Err(field_error(
                    field,
                    format!("must be within 0..100 per second, got {rate}"),
                ));
            }
        }
        if w.timeout_ms == 0 {
            return Err(field_error("writes.timeout_ms", "must be > 0"));
        }
        secs("writes.settle_s", w.settle_s)?;
        let s = &self.sla;
        if !(s.success_ratio > 0.0 && s.success_ratio <= 1.0) {
            return Err(field_error(
                "sla.success_ratio",
                format!("must be within (0, 1], got {}", s.success_ratio),
            ));
        }
        if let Some(p99) = s.p99_ms
            && !(p99.is_finite() && p99 > 0.0)
        {
            return Err(field_error("sla.p99_ms", format!("must be > 0, got {p99}")));
        }
        let mut faults = Vec::with_capacity(self.faults.len());
        for (i, spec) in self.faults.iter().enumerate() {
            faults.push(check_fault(
                &format!("faults[{i}]"),
                spec,
                &self,
                &baseline,
                duration,
            )?);
        }
        faults.sort_by_key(Fault::at);
        if let Some(t) = &self.tenants {
            t.check()?;
        }
        Ok(Case {
            name,
            description: self.description.clone(),
            duration,
            cluster: self.cluster.clone(),
            upstreams: self.upstreams.count,
            baseline,
            route: self.route.clone(),
            load: self.load.clone(),
            writes: self.writes.clone(),
            sla: self.sla.clone(),
            faults,
            tenants: self.tenants.clone(),
        })
    }
}

/// Names the fields set on `spec` that `kind` does not use.
fn stray_fields(spec: &FaultSpec, allowed: &[&str]) -> Vec<&'static str> {
    let set: [(&'static str, bool); 16] = [
        ("until_s", spec.until_s.is_some()),
        ("node", spec.node.is_some()),
        ("signal", spec.signal.is_some()),
        ("down_s", spec.down_s.is_some()),
        ("count", spec.count.is_some()),
        ("every_s", spec.every_s.is_some()),
        ("from", spec.from.is_some()),
        ("to", spec.to.is_some()),
        ("oneway", spec.oneway.is_some()),
        ("rtt_ms", spec.rtt_ms.is_some()),
        ("jitter_ms", spec.jitter_ms.is_some()),
        ("rate", spec.rate.is_some()),
        ("upstream", spec.upstream.is_some()),
        ("behavior", spec.behavior.is_some()),
        ("latency_factor", spec.latency_factor.is_some()),
        ("flap_s", spec.flap_s.is_some()),
    ];
    let mut stray: Vec<&'static str> = set
        .iter()
        .filter(|(name, present)| *present && !allowed.contains(name))
        .map(|(name, _)| *name)
        .collect();
    if spec.mode.is_some() && !allowed.contains(&"mode") {
        stray.push("mode");
    }
    stray
}

fn check_fault(
    at_field: &str,
    spec: &FaultSpec,
    file: &CaseFile,
    baseline: &Behavior,
    duration: Duration,
) -> Result<Fault, CaseError> {
    let f = |name: &str| format!("{at_field}.{name}");
    let nodes = file.cluster.nodes;
    let allowed: &[&str] = match spec.kind.as_str() {
        "kill" => &["node", "signal", "down_s", "count", "every_s"],
        "partition" => &["until_s", "from", "to", "oneway"],
        "delay" => &["until_s", "from", "to", "rtt_ms", "jitter_ms"],
        "loss" => &["until_s", "from", "to", "rate"],
        "upstream" => &[
            "until_s",
            "upstream",
            "behavior",
            "latency_factor",
            "flap_s",
        ],
        "upstream_net" => &["until_s", "upstream", "mode"],
        other => {
            return Err(field_error(
                f("kind"),
                format!(
                    "unknown kind {other:?}: use kill, partition, delay, loss, upstream or upstream_net"
                ),
            ));
        }
    };
    if let Some(stray) = stray_fields(spec, allowed).first() {
        return Err(field_error(
            f(stray),
            format!("not used by kind {:?}", spec.kind),
        ));
    }
    let at = secs(&f("at_s"), spec.at_s)?;
    if at >= duration {
        return Err(field_error(
            f("at_s"),
            format!(
                "must be before the end of the run (duration_s = {}), got {}",
                duration.as_secs_f64(),
                spec.at_s
            ),
        ));
    }
    let until = match spec.until_s {
        Some(u) => {
            let until = secs(&f("until_s"), u)?;
            if until <= at {
                return Err(field_error(
                    f("until_s"),
                    format!("must be after at_s ({}), got {u}", spec.at_s),
                ));
            }
            if until > duration {
                return Err(field_error(
                    f("until_s"),
                    format!(
                        "must not be after the end of the run (duration_s = {}), got {u}",
                        duration.as_secs_f64()
                    ),
                ));
            }
            until
        }
        None => duration,
    };
    let selectors =
        |name: &str, list: &Option<Vec<String>>| -> Result<Option<Vec<NodeSel>>, CaseError> {
            let Some(list) = list else {
                return Ok(None);
            };
            if list.is_empty() {
                return Err(field_error(f(name), "must name at least one node"));
            }
            list.iter()
                .enumerate()
                .map(|(i, n)| {
                    let sel = parse_node(&format!("{}[{i}]", f(name)), n, nodes)?;
                    if sel == NodeSel::Each {
                        return Err(field_error(
                            format!("{}[{i}]", f(name)),
                            "\"each\" is only for kill faults",
                        ));
                    }
                    Ok(sel)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
    match spec.kind.as_str() {
        "kill" => {
            let node = parse_node(&f("node"), spec.node.as_deref().unwrap_or("random"), nodes)?;
            if node == NodeSel::All {
                return Err(field_error(f("node"), "a kill takes one node at a time"));
            }
            let signal = match spec.signal.as_deref().unwrap_or("kill") {
                "kill" | "9" | "SIGKILL" => Signal::Kill,
                "term" | "15" | "SIGTERM" => Signal::Term,
                other => {
                    return Err(field_error(
                        f("signal"),
                        format!("unknown signal {other:?}: use kill or term"),
                    ));
                }
            };
            let down = secs(&f("down_s"), spec.down_s.unwrap_or(0.0))?;
            let default_count = if node == NodeSel::Each {
                nodes as u32
            } else {
                1
            };
            let count = spec.count.unwrap_or(default_count);
            if count == 0 {
                return Err(field_error(f("count"), "must be >= 1"));
            }
            let every = match spec.every_s {
                Some(e) => secs(&f("every_s"), e)?,
                None if count > 1 => {
                    return Err(field_error(f("every_s"), "required when count > 1"));
                }
                None => Duration::ZERO,
            };
            if count > 1 && every <= down {
                return Err(field_error(
                    f("every_s"),
                    format!(
                        "must be longer than down_s ({}) so a node is back before the next kill",
                        down.as_secs_f64()
                    ),
                ));
            }
            let last = at + every * (count - 1);
            if last >= duration {
                return Err(field_error(
                    f("count"),
                    format!(
                        "the last kill would come at {:.1} s, after the end of the run ({} s)",
                        last.as_secs_f64(),
                        duration.as_secs_f64()
                    ),
                ));
            }
            Ok(Fault::Kill {
                at,
                node,
                signal,
                down,
                count,
                every,
            })
        }
        "partition" | "delay" | "loss" => {
            let from = selectors("from", &spec.from)?.unwrap_or_else(|| vec![NodeSel::All]);
            let to = selectors("to", &spec.to)?;
            let effect = match spec.kind.as_str() {
                "partition" => NetEffect::Drop,
                "loss" => {
                    let rate = spec
                        .rate
                        .ok_or_else(|| field_error(f("rate"), "required for kind \"loss\""))?;
                    if !(rate > 0.0 && rate <= 1.0) {
                        return Err(field_error(
                            f("rate"),
                            format!("must be within (0, 1], got {rate}"),
                        ));
                    }
                    NetEffect::Loss(rate)
                }
                _ => {
                    let [lo, hi] = spec
                        .rtt_ms
                        .ok_or_else(|| field_error(f("rtt_ms"), "required for kind \"delay\""))?;
                    if !(lo.is_finite()
                        && hi.is_finite()
                        && lo >= 0.0
                        && hi >= lo
                        && hi <= 10_000.0)
                    {
                        return Err(field_error(
                            f("rtt_ms"),
                            format!(
                                "must be [min, max] with 0 <= min <= max <= 10000, got [{lo}, {hi}]"
                            ),
                        ));
                    }
                    let jitter = spec.jitter_ms.unwrap_or(0.0);
                    if !(jitter.is_finite() && jitter >= 0.0 && jitter <= lo / 2.0 + 1.0) {
                        return Err(field_error(
                            f("jitter_ms"),
                            format!(
                                "must be within 0..(rtt_ms[0] / 2 + 1) = {}, got {jitter}",
                                lo / 2.0 + 1.0
                            ),
                        ));
                    }
                    NetEffect::Wan {
                        rtt_min: lo,
                        rtt_max: hi,
                        jitter,
                    }
                }
            };
            let oneway = spec.oneway.unwrap_or(false);
            if oneway && to.is_none() && from.contains(&NodeSel::All) {
                return Err(field_error(
                    f("to"),
                    "a one-way partition from every node needs `to`",
                ));
            }
            Ok(Fault::Net {
                at,
                until,
                from,
                to,
                oneway,
                effect,
                label: if oneway {
                    format!("{} (one-way)", spec.kind)
                } else {
                    spec.kind.clone()
                },
            })
        }
        "upstream" | "upstream_net" => {
            let name = spec
                .upstream
                .as_deref()
                .ok_or_else(|| field_error(f("upstream"), "required"))?;
            let count = file.upstreams.count;
            let upstream = upstream_index(name, count).ok_or_else(|| {
                field_error(
                    f("upstream"),
                    format!(
                        "unknown upstream {name:?}: this case has {count} ({})",
                        (0..count).map(upstream_id).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            if spec.kind == "upstream_net" {
                let (effect, label) = match spec.mode.as_deref() {
                    Some("blackhole") => (UpstreamEffect::Blackhole, "blackhole"),
                    Some("reset") => (UpstreamEffect::Reset, "reset"),
                    Some(other) => {
                        return Err(field_error(
                            f("mode"),
                            format!("unknown mode {other:?}: use blackhole or reset"),
                        ));
                    }
                    None => return Err(field_error(f("mode"), "required (blackhole or reset)")),
                };
                return Ok(Fault::Upstream {
                    at,
                    until,
                    upstream,
                    effect,
                    flap: None,
                    label: format!("{name}: {label}"),
                });
            }
            let mut behavior = baseline.clone();
            let mut label = Vec::new();
            if let Some(factor) = spec.latency_factor {
                if !(factor.is_finite() && factor > 0.0 && factor <= 1_000.0) {
                    return Err(field_error(
                        f("latency_factor"),
                        format!("must be within (0, 1000], got {factor}"),
                    ));
                }
                behavior.first_byte = scale(&behavior.first_byte, factor)
                    .map_err(|m| field_error(f("latency_factor"), m))?;
                behavior.chunk_delay = scale(&behavior.chunk_delay, factor)
                    .map_err(|m| field_error(f("latency_factor"), m))?;
                label.push(format!("latency x{factor}"));
            }
            if let Some(patch) = &spec.behavior {
                let json = table_to_json(patch).map_err(|m| field_error(f("behavior"), m))?;
                behavior = behavior
                    .patched(json.to_string().as_bytes())
                    .map_err(|e| field_error(f("behavior"), e.to_string()))?;
                label.push(json.to_string());
            }
            if label.is_empty() {
                return Err(field_error(
                    f("behavior"),
                    "an upstream fault needs behavior or latency_factor",
                ));
            }
            let flap = match spec.flap_s {
                Some(s) => {
                    let d = secs(&f("flap_s"), s)?;
                    if d < Duration::from_millis(200) {
                        return Err(field_error(f("flap_s"), "must be >= 0.2 s"));
                    }
                    label.push(format!("flapping every {s} s"));
                    Some(d)
                }
                None => None,
            };
            Ok(Fault::Upstream {
                at,
                until,
                upstream,
                effect: UpstreamEffect::Behave(behavior),
                flap,
                label: format!("{name}: {}", label.join(", ")),
            })
        }
        // Refused above.
        other => Err(field_error(f("kind"), format!("unknown kind {other:?}"))),
    }
}

/// A latency multiplied by `factor`.
fn scale(latency: &mock::Latency, factor: f64) -> Result<mock::Latency, String> {
    use mock::Latency;
    match latency {
        Latency::Fixed { ms } => Ok(Latency::Fixed { ms: ms * factor }),
        Latency::LogNormal { p50_ms, p99_ms, .. } => {
            Latency::log_normal(p50_ms * factor, p99_ms * factor).map_err(|e| e.to_string())
        }
    }
}
