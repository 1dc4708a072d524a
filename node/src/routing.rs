//! The routing table as the data plane reads it: an immutable snapshot built
//! from configuration, swapped whole (`ArcSwap`) when configuration changes,
//! so a request reads routes, upstreams and keys without a lock or an await.
//!
//! Upstreams carry their connection pool and live counters; a rebuild keeps
//! the `Upstream` of every upstream whose configuration did not change, so
//! pools stay warm and in-flight counts stay true across config changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use proto::config::{
    Config, ConfigError, FileAccess, HealthConfig, ProxyConfig, SecretOrigin, SecretPolicy,
    UpstreamAuth, UpstreamConfig, check_secret_strength,
};
use serde::Serialize;

use crate::auth::{KeyHash, KeyRing, hash_key};
use crate::breaker::Circuit;
use crate::health::{Quantiles, WindowSummary};
use crate::hedge::Hedge;
use crate::metrics::{Metrics, RouteMetrics, TargetMetrics, UpstreamMetrics};
use crate::request_body::json_string;
use crate::scrub::Scrubber;
use crate::select::{self, Pick, Policy, TargetStats};
use crate::upstream::{self, Pools};

/// The OpenAI endpoints Meridian proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    ChatCompletions,
    /// `/v1/completions`
    Completions,
    /// `/v1/embeddings`
    Embeddings,
}

impl Endpoint {
    /// Every proxied endpoint, in the order of `Upstream::uris`.
    pub const ALL: [Endpoint; 3] = [Self::ChatCompletions, Self::Completions, Self::Embeddings];

    /// The endpoint for a client path, if it is one Meridian proxies.
    pub fn from_path(path: &str) -> Option<Self> {
        match path.trim_end_matches('/') {
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            "/v1/completions" => Some(Self::Completions),
            "/v1/embeddings" => Some(Self::Embeddings),
            _ => None,
        }
    }

    /// The path below the upstream's base URL.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Whether this node holds the provider key an upstream needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// The upstream needs no key.
    NotNeeded,
    /// The key was read.
    Present,
    /// The key is not available on this node; the upstream is skipped.
    Missing(String),
}

/// Why an upstream is not used on this node, and the field to fix: a
/// committed upstream one node cannot use (its key missing or unreadable
/// here, its CA file not PEM, a key reference this node's `[secrets]` does
/// not allow) is disabled on that node alone, and the rest of the change
/// applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disabled {
    /// The upstream's field at fault: `api_key_env`, `api_key_file`, `ca_file`, …
    pub field: &'static str,
    /// What is wrong, in words an operator can act on (never the key).
    pub reason: String,
}

/// Counters the data plane updates and the health recorder publishes.
#[derive(Default)]
pub struct Live {
    /// Attempts currently running against the upstream.
    pub in_flight: AtomicUsize,
    /// The latest window summary from the health recorder.
    pub summary: ArcSwap<WindowSummary>,
    /// What the cluster's reports say of its time to first byte, for this
    /// node's region ([`crate::board::HealthBoard::ttfb_estimate`]), published by the board
    /// follower each time the board is rebuilt, so a request reads it without
    /// looking anything up.
    pub shared_ttfb: ArcSwapOption<Quantiles>,
    /// The circuit breaker's state (`Circuit::as_u8`), set by the recorder.
    circuit: AtomicU8,
    /// Probes a half-open circuit still allows.
    probes: AtomicU32,
}

impl Live {
    /// The circuit as the recorder last set it.
    pub fn circuit(&self) -> Circuit {
        Circuit::from_u8(self.circuit.load(Ordering::Relaxed))
    }

    /// Sets the circuit; `probe` allows one probe request.
    pub fn set_circuit(&self, circuit: Circuit, probe: bool) {
        self.probes.store(u32::from(probe), Ordering::Relaxed);
        self.circuit.store(circuit.as_u8(), Ordering::Relaxed);
    }

    /// Whether a half-open circuit still allows a probe.
    pub fn probe_ready(&self) -> bool {
        self.probes.load(Ordering::Relaxed) > 0
    }

    /// Takes the probe of a half-open circuit; false if another request
    /// took it first.
    pub fn take_probe(&self) -> bool {
        self.probes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| p.checked_sub(1))
            .is_ok()
    }
}

/// One provider deployment, ready to send to.
pub struct Upstream {
    /// Its id.
    pub id: Arc<str>,
    /// Its id, ready for `x-meridian-upstream`.
    pub id_header: HeaderValue,
    /// Where it runs.
    pub region: Arc<str>,
    /// The configuration it was built from, to reuse it across rebuilds.
    pub config: UpstreamConfig,
    /// Full URI of each endpoint, by `Endpoint` index.
    uris: [Uri; 3],
    /// The provider key header, marked sensitive so it never prints.
    auth: Option<(HeaderName, HeaderValue)>,
    /// Whether the key is there.
    pub key_state: KeyState,
    /// Why it is not used on this node, if it is not.
    pub disabled: Option<Disabled>,
    /// Its connection pools, one per data-plane worker.
    pub pools: Pools,
    /// Live counters.
    pub live: Live,
    /// Its Prometheus counters, shared with any later `Upstream` of the same id.
    pub metrics: Arc<UpstreamMetrics>,
}

impl Upstream {
    /// The URI to send an endpoint's requests to.
    pub fn uri(&self, endpoint: Endpoint) -> &Uri {
        &self.uris[endpoint.index()]
    }

    /// The provider key header, if the upstream takes one.
    pub fn auth_header(&self) -> Option<&(HeaderName, HeaderValue)> {
        self.auth.as_ref()
    }

    /// Whether requests can be sent to it from this node.
    pub fn usable(&self) -> bool {
        self.disabled.is_none()
    }
}

/// Prices of a target, per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Per million output (completion) tokens.
    pub output_per_mtok: f64,
}

/// A provider model behind a route.
pub struct Target {
    /// Where it runs.
    pub upstream: Arc<Upstream>,
    /// The provider's model name.
    pub model: Arc<str>,
    /// The provider's model name as a JSON string, spliced into bodies.
    pub model_json: Bytes,
    /// What it costs.
    pub price: Price,
    /// The counters of this route's answers from this upstream.
    pub metrics: Arc<TargetMetrics>,
}

/// A model name clients may send, and its tiers.
pub struct Route {
    /// What clients send as `model`.
    pub name: Arc<str>,
    /// Ordered priority groups.
    pub tiers: Vec<Vec<Target>>,
    /// Attempts across all tiers.
    pub max_attempts: u32,
    /// Per-attempt time to first byte.
    pub first_byte_timeout: Duration,
    /// Whole-request deadline.
    pub request_timeout: Duration,
    /// Recent error rate above which a target is not eligible.
    pub error_threshold: f64,
    /// Hedging, when the route asks for it.
    pub hedge: Option<Hedge>,
    /// Its Prometheus counters, kept across rebuilds.
    pub metrics: Arc<RouteMetrics>,
}

impl Target {
    /// The time to first byte to expect from this target: this node's own
    /// window when it has enough samples (it is the freshest, and what a
    /// node cut off from the cluster still has), else the shared figures of
    /// this region or the whole cluster; `None` when nobody has enough.
    pub fn ttfb_estimate(&self, policy: &Policy) -> Option<Quantiles> {
        estimate(
            &self.upstream.live.summary.load(),
            &self.upstream.live,
            policy,
        )
    }

    /// What the selector needs to know about this target right now, for a
    /// streamed request or not. Error rates are this node's own: an upstream
    /// can fail from one region and not another, and a node judges what it
    /// can reach itself.
    ///
    /// A half-open circuit's probe is a plain request's to take: a probe
    /// that fails after its first chunk has reached the client cannot fail
    /// over, so for a stream a half-open circuit counts as open (tried only
    /// as a last resort).
    pub fn stats(&self, policy: &Policy, stream: bool) -> TargetStats {
        let live = &self.upstream.live;
        let summary = live.summary.load();
        let circuit = match live.circuit() {
            Circuit::HalfOpen if stream || !live.probe_ready() => Circuit::Open,
            circuit => circuit,
        };
        TargetStats {
            usable: self.upstream.usable(),
            p99_ms: estimate(&summary, live, policy).map(|q| q.p99),
            in_flight: live.in_flight.load(Ordering::Relaxed),
            error_rate: summary.error_rate,
            attempts: summary.attempts,
            circuit,
        }
    }
}

/// This node's own figures when they hold enough samples, else the shared
/// ones, else this node's few samples rather than the prior: the prior is
/// pessimistic, and a target judged by it against measured ones would win
/// only the exploration share, which at low traffic never gathers enough
/// samples for it to be judged again (an upstream back from an ejection or
/// a brownout would stay starved).
fn estimate(summary: &WindowSummary, live: &Live, policy: &Policy) -> Option<Quantiles> {
    let local = summary.ttfb_ms;
    if local.count >= policy.min_samples {
        return Some(local);
    }
    if let Some(shared) = live.shared_ttfb.load().as_deref() {
        return Some(*shared);
    }
    (local.count > 0).then_some(local)
}

impl Route {
    /// The targets to try, in order: `select::plan` over each target's
    /// figures, with this route's error threshold.
    pub fn plan(&self, policy: &Policy, stream: bool, rng: &mut impl rand::Rng) -> Vec<Pick> {
        let policy = Policy {
            error_threshold: self.error_threshold,
            ..*policy
        };
        let stats: Vec<Vec<TargetStats>> = self
            .tiers
            .iter()
            .map(|tier| tier.iter().map(|t| t.stats(&policy, stream)).collect())
            .collect();
        select::plan(&stats, &policy, self.max_attempts as usize, rng)
    }

    /// Whether any target can be used from this node.
    pub fn usable(&self) -> bool {
        self.tiers.iter().flatten().any(|t| t.upstream.usable())
    }
}

/// Everything a request reads, swapped whole on change.
pub struct RoutingSnapshot {
    /// This node's region, ready for `x-meridian-region`.
    pub region: HeaderValue,
    /// Client keys.
    pub keys: KeyRing,
    /// Routes by model name.
    pub routes: HashMap<Arc<str>, Arc<Route>>,
    /// Upstreams, in configuration order.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The `/v1/models` answer, built once.
    pub models_body: Bytes,
    /// Timeouts and limits.
    pub proxy: ProxyConfig,
    /// Health settings (the adaptive first-byte timeout).
    pub health: HealthConfig,
    /// The Raft log index of the state it was built from, if any.
    pub applied_index: Option<u64>,
    /// The node's counters: made with the first snapshot and handed on to
    /// each rebuild, so they outlive configuration changes.
    pub metrics: Arc<Metrics>,
    /// Removes the provider keys of `upstreams` from what leaves the node.
    pub scrub: Arc<Scrubber>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration value cannot be used (names the field).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Where secrets come from; the process environment in production, a map in tests.
pub trait Secrets {
    /// The value of an environment variable, if set and not empty.
    fn env(&self, name: &str) -> Option<String>;
}

/// Reads secrets from the process environment.
pub struct ProcessEnv;

impl Secrets for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// What a node's own file decides, whatever the replicated state says:
/// which provider-key references it reads, and whether it lets in clients
/// without a key while no key exists (only a node started without keys on
/// a loopback data plane).
#[derive(Debug, Clone, Default)]
pub struct LocalTrust {
    /// The provider-key references this node reads.
    pub policy: SecretPolicy,
    /// With no client key at all, accept every request (else refuse every one).
    pub open_without_keys: bool,
}

impl LocalTrust {
    /// The trust of a node's own configuration file.
    pub fn new(config: &Config) -> Self {
        Self {
            policy: SecretPolicy::new(config),
            open_without_keys: config.keys.is_empty() && config.listen.api.ip().is_loopback(),
        }
    }
}

impl RoutingSnapshot {
    /// Builds a snapshot from a configuration file, reusing the upstreams of
    /// `previous` whose configuration is unchanged.
    pub fn build(
        config: &Config,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
    ) -> Result<Self, BuildError> {
        let keys = resolve_keys(config, secrets)?;
        Self::build_with_keys(config, keys, secrets, previous, &LocalTrust::new(config))
    }

    /// Builds a snapshot whose client keys are already hashed, as the
    /// replicated state holds them; `config.keys` is ignored, and `trust`
    /// comes from the node's own file (`config` may carry the cluster's
    /// upstreams).
    pub fn build_with_keys(
        config: &Config,
        keys: Vec<(String, KeyHash)>,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
        trust: &LocalTrust,
    ) -> Result<Self, BuildError> {
        let invalid = |field: String, message: String| BuildError::Invalid { field, message };
        let region = HeaderValue::from_str(&config.node.region)
            .map_err(|_| invalid("node.region".into(), "must be a header-safe string".into()))?;

        let metrics = previous.map(|p| p.metrics.clone()).unwrap_or_default();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut by_id: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for uc in &config.upstreams {
            // A disabled upstream is built again: its key file or CA may
            // have been fixed since.
            let reused = previous
                .and_then(|p| p.upstreams.iter().find(|u| u.config == *uc && u.usable()))
                .cloned();
            let upstream = match reused {
                Some(u) => u,
                None => Arc::new(build_upstream(
                    uc,
                    &config.proxy,
                    secrets,
                    &trust.policy,
                    &metrics,
                )?),
            };
            by_id.insert(uc.id.as_str(), upstream.clone());
            upstreams.push(upstream);
        }

        let mut routes = HashMap::with_capacity(config.routes.len());
        for (i, rc) in config.routes.iter().enumerate() {
            let name: Arc<str> = Arc::from(rc.model.as_str());
            let route_metrics = metrics.route(&name);
            let mut tiers = Vec::with_capacity(rc.tiers.len());
            for (t, tier) in rc.tiers.iter().enumerate() {
                let mut targets = Vec::with_capacity(tier.len());
                for (j, tc) in tier.iter().enumerate() {
                    let upstream = by_id.get(tc.upstream.as_str()).cloned().ok_or_else(|| {
                        invalid(
                            format!("routes[{i}].tiers[{t}][{j}].upstream"),
                            format!("no upstream with id `{}`", tc.upstream),
                        )
                    })?;
                    targets.push(Target {
                        model: Arc::from(tc.model.as_str()),
                        model_json: json_string(&tc.model),
                        price: Price {
                            input_per_mtok: tc.input_per_mtok,
                            output_per_mtok: tc.output_per_mtok,
                        },
                        metrics: route_metrics.target(&upstream.id),
                        upstream,
                    });
                }
                tiers.push(targets);
            }
            let route = Route {
                name: name.clone(),
                tiers,
                max_attempts: rc.max_attempts.unwrap_or(config.proxy.max_attempts),
                first_byte_timeout: Duration::from_millis(
                    rc.first_byte_timeout_ms
                        .unwrap_or(config.proxy.first_byte_timeout_ms),
                ),
                request_timeout: Duration::from_millis(
                    rc.request_timeout_ms
                        .unwrap_or(config.proxy.request_timeout_ms),
                ),
                error_threshold: rc.error_threshold.unwrap_or(config.health.error_threshold),
                hedge: rc.hedge.as_ref().map(|h| {
                    Hedge::new(h.quantile, Duration::from_millis(h.min_delay_ms), h.budget)
                }),
                metrics: route_metrics,
            };
            routes.insert(name, Arc::new(route));
        }

        Ok(Self {
            scrub: Scrubber::for_upstreams(&upstreams, previous.map(|p| &p.scrub)),
            region,
            keys: KeyRing::new(keys).open_when_empty(trust.open_without_keys),
            models_body: models_body(config),
            routes,
            upstreams,
            proxy: config.proxy.clone(),
            health: config.health.clone(),
            applied_index: None,
            metrics,
        })
    }

    /// The route for a model name.
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// Ready to serve: at least one route has an upstream this node can use.
    pub fn ready(&self) -> bool {
        self.routes.values().any(|r| r.usable())
    }
}

/// Hashes the client keys a configuration names, from the environment. A
/// key whose variable is unset is an error: a node must not start accepting
/// fewer clients than its operator configured.
pub fn resolve_keys(
    config: &Config,
    secrets: &dyn Secrets,
) -> Result<Vec<(String, KeyHash)>, BuildError> {
    config
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let field = format!("keys[{i}].key_env");
            let value = secrets
                .env(&key.key_env)
                .ok_or_else(|| BuildError::Invalid {
                    field: field.clone(),
                    message: format!("environment variable {} is not set", key.key_env),
                })?;
            check_secret_strength(&field, &key.key_env, &value).map_err(|e| {
                BuildError::Invalid {
                    field: e.field,
                    message: e.message,
                }
            })?;
            Ok((key.name.clone(), hash_key(&value)))
        })
        .collect()
}

fn models_body(config: &Config) -> Bytes {
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    let mut data: Vec<Model<'_>> = config
        .routes
        .iter()
        .map(|r| Model {
            id: &r.model,
            object: "model",
            created: 0,
            owned_by: "meridian",
        })
        .collect();
    data.sort_by(|a, b| a.id.cmp(b.id));
    Bytes::from(
        serde_json::to_vec(&List {
            object: "list",
            data,
        })
        .unwrap_or_default(),
    )
}

/// The largest key file read, so a reference to a huge file (or a device)
/// cannot stall or exhaust the node.
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Builds one upstream. What this node cannot use (a key it may not read or
/// cannot read, a key that is not a valid header value, a CA file that is
/// not PEM) disables the upstream here, naming the field; it never fails
/// the whole table.
fn build_upstream(
    uc: &UpstreamConfig,
    proxy: &ProxyConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
    metrics: &Metrics,
) -> Result<Upstream, BuildError> {
    let mut disabled: Option<Disabled> = None;
    let mut disable = |field: &'static str, reason: String| {
        disabled.get_or_insert(Disabled { field, reason });
    };
    let base = uc.base_url.trim_end_matches('/');
    let uris: [Uri; 3] = Endpoint::ALL.map(|endpoint| {
        format!("{base}{}", endpoint.suffix())
            .parse()
            .unwrap_or_else(|e| {
                disable("base_url", format!("not a URL: {e}"));
                Uri::default()
            })
    });

    let (auth, key_state) = match provider_key(uc, secrets, policy, SecretOrigin::Applied) {
        Ok(None) => (None, KeyState::NotNeeded),
        Ok(Some(header)) => (Some(header), KeyState::Present),
        Err((field, reason)) => {
            disable(field, reason.clone());
            (None, KeyState::Missing(reason))
        }
    };
    let pools = match upstream::pools_for(uc, proxy) {
        Ok(pools) => pools,
        Err(e) => {
            disable(e.field(), e.to_string());
            // Never used while disabled, but every upstream has pools.
            let plain = UpstreamConfig {
                ca_file: None,
                ..uc.clone()
            };
            // Only rustls refusing its own defaults fails this: no
            // upstream's input can, so it fails the table as before.
            upstream::pools_for(&plain, proxy).map_err(|e| BuildError::Invalid {
                field: format!("upstreams.{}.{}", uc.id, e.field()),
                message: e.to_string(),
            })?
        }
    };
    let id_header = HeaderValue::from_str(&uc.id).unwrap_or_else(|_| {
        disable("id", "must be a header-safe string".to_owned());
        HeaderValue::from_static("invalid")
    });
    let id: Arc<str> = Arc::from(uc.id.as_str());
    Ok(Upstream {
        metrics: metrics.upstream(&id),
        id,
        id_header,
        region: Arc::from(uc.region.as_str()),
        config: uc.clone(),
        uris,
        auth,
        key_state,
        disabled,
        pools,
        live: Live::default(),
    })
}

/// The provider key header of an upstream, read as `origin` allows on this
/// node: `Ok(None)` for a keyless upstream, else the field at fault and why.
fn provider_key(
    uc: &UpstreamConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
    origin: SecretOrigin,
) -> Result<Option<(HeaderName, HeaderValue)>, (&'static str, String)> {
    let (field, key) = match (&uc.api_key_env, &uc.api_key_file) {
        (Some(var), _) => {
            policy
                .check_env("upstream", var, origin)
                .map_err(|e| ("api_key_env", e.message))?;
            let key = secrets.env(var).ok_or_else(|| {
                (
                    "api_key_env",
                    format!("environment variable {var} is not set"),
                )
            })?;
            ("api_key_env", key)
        }
        (None, Some(path)) => {
            let access = policy
                .check_file("upstream", path, origin)
                .map_err(|e| ("api_key_file", e.message))?;
            let key = read_key_file(path, &access, policy).map_err(|r| ("api_key_file", r))?;
            ("api_key_file", key)
        }
        (None, None) => return Ok(None),
    };
    let key = key.trim();
    let (name, value) = match uc.auth {
        UpstreamAuth::Bearer => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        UpstreamAuth::ApiKey => (HeaderName::from_static("api-key"), key.to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        (
            field,
            "the key holds characters not allowed in a header (a line break or a control \
             character?)"
                .to_owned(),
        )
    })?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

/// Reads an allowed key file: below the secrets directory once symlinks
/// are resolved (unless the node's own file names it), a regular file of at
/// most 64 KiB, not empty. The reason never holds the file's content.
fn read_key_file(
    path: &Path,
    access: &FileAccess,
    policy: &SecretPolicy,
) -> Result<String, String> {
    let shown = path.display();
    let target = match access {
        FileAccess::Named => path.to_path_buf(),
        FileAccess::BelowDir(dir) => {
            let dir = std::fs::canonicalize(dir).map_err(|e| {
                format!(
                    "this node's [secrets] dir {} cannot be used: {e}",
                    dir.display()
                )
            })?;
            let file =
                std::fs::canonicalize(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
            let tls: Vec<PathBuf> = policy
                .tls_files()
                .filter_map(|t| std::fs::canonicalize(t).ok())
                .collect();
            if !policy.resolved_inside(&file, &dir, &tls) {
                return Err(format!(
                    "{shown} resolves (through a link) outside this node's [secrets] dir"
                ));
            }
            file
        }
    };
    let file = std::fs::File::open(&target).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!("{shown} is larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    let mut key = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_KEY_FILE_BYTES), &mut key)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if key.trim().is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(key)
}

/// Checks an upstream written through the admin API before it is proposed,
/// as far as this node can: its key reference is one the node's
/// `[secrets]` allows (never its own secrets), a key file is readable and
/// a valid header value, a key variable that is set here holds a valid
/// header value, and a CA file holds a PEM certificate. Other nodes check
/// again when they apply it, and disable it there if they cannot use it.
pub fn check_upstream(
    uc: &UpstreamConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
) -> Result<(), ConfigError> {
    let error = |field: &str, message: String| ConfigError {
        field: format!("upstream.{field}"),
        message,
    };
    if let Some(var) = &uc.api_key_env {
        policy.check_env("upstream", var, SecretOrigin::AdminApi)?;
    }
    // A variable may be set on other nodes only (each region its own key).
    let unset_here = uc
        .api_key_env
        .as_deref()
        .is_some_and(|var| secrets.env(var).is_none());
    if !unset_here {
        provider_key(uc, secrets, policy, SecretOrigin::AdminApi)
            .map_err(|(field, reason)| error(field, reason))?;
    }
    if let Some(path) = &uc.ca_file {
        upstream::load_ca(path).map_err(|e| error(e.field(), e.to_string()))?;
    }
    Ok(())
}

/// Counts an attempt in flight against an upstream until dropped.
pub struct InFlight(Arc<Upstream>);

impl InFlight {
    /// Starts counting.
    pub fn new(upstream: Arc<Upstream>) -> Self {
        upstream.live.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(upstream)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::collections::HashMap as Map;

    struct FakeEnv(Map<&'static str, &'static str>);
    impl Secrets for FakeEnv {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    const CONFIG: &str = r#"
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

    fn build(env: &[(&'static str, &'static str)]) -> Result<RoutingSnapshot, BuildError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_toml(CONFIG).unwrap();
        RoutingSnapshot::build(&config, &FakeEnv(env.iter().copied().collect()), None)
    }

    #[tokio::test]
    async fn builds_uris_keys_and_routes() {
        let snap = build(&[
            ("CLIENT_KEY", "client-key-0123456789"),
            ("A_KEY", "ka"),
            ("B_KEY", "kb"),
        ])
        .unwrap();
        let fast = snap.route("fast").unwrap();
        assert_eq!(fast.tiers.len(), 2);
        let a = &fast.tiers[0][0].upstream;
        assert_eq!(
            a.uri(Endpoint::ChatCompletions),
            "http://127.0.0.1:1/v1/chat/completions"
        );
        let (name, value) = a.auth_header().unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer ka");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("ka"));
        let b = &fast.tiers[1][0].upstream;
        assert_eq!(
            b.uri(Endpoint::Embeddings),
            "https://b.example/openai/v1/embeddings"
        );
        assert_eq!(b.auth_header().unwrap().0, "api-key");
        assert_eq!(fast.tiers[1][0].model_json, "\"b-small\"");
        assert_eq!(fast.tiers[1][0].price.input_per_mtok, 1.5);
        assert!(snap.ready());
        let models: serde_json::Value = serde_json::from_slice(&snap.models_body).unwrap();
        assert_eq!(models["data"][0]["id"], "b-only");
        assert_eq!(models["data"][1]["id"], "fast");
    }

    #[tokio::test]
    async fn missing_provider_key_makes_upstream_unusable() {
        let snap = build(&[("CLIENT_KEY", "client-key-0123456789"), ("A_KEY", "ka")]).unwrap();
        assert!(snap.route("fast").unwrap().usable());
        assert!(!snap.route("b-only").unwrap().usable());
        assert!(
            matches!(snap.upstreams[1].key_state, KeyState::Missing(ref m) if m.contains("B_KEY"))
        );
    }

    #[tokio::test]
    async fn missing_client_key_is_an_error_naming_the_field() {
        let Err(BuildError::Invalid { field, .. }) = build(&[("A_KEY", "ka")]) else {
            panic!("expected an error");
        };
        assert_eq!(field, "keys[0].key_env");
    }

    #[tokio::test]
    async fn streams_leave_the_probe_of_a_half_open_circuit_to_plain_requests() {
        let snap = build(&[
            ("CLIENT_KEY", "client-key-0123456789"),
            ("A_KEY", "ka"),
            ("B_KEY", "kb"),
        ])
        .unwrap();
        let target = &snap.route("fast").unwrap().tiers[0][0];
        let policy = Policy::default();
        target.upstream.live.set_circuit(Circuit::HalfOpen, true);
        assert_eq!(target.stats(&policy, false).circuit, Circuit::HalfOpen);
        assert_eq!(target.stats(&policy, true).circuit, Circuit::Open);
        assert!(target.upstream.live.take_probe());
        assert_eq!(target.stats(&policy, false).circuit, Circuit::Open);
    }

    #[tokio::test]
    async fn estimates_fall_back_to_shared_then_to_a_few_own_samples() {
        let snap = build(&[
            ("CLIENT_KEY", "client-key-0123456789"),
            ("A_KEY", "ka"),
            ("B_KEY", "kb"),
        ])
        .unwrap();
        let target = &snap.route("fast").unwrap().tiers[0][0];
        let live = &target.upstream.live;
        let policy = Policy::default();
        let q = |count, p99| Quantiles {
            count,
            p99,
            ..Quantiles::default()
        };
        let window = |count, p99| {
            Arc::new(WindowSummary {
                ttfb_ms: q(count, p99),
                ..WindowSummary::default()
            })
        };
        assert_eq!(
            target.ttfb_estimate(&policy),
            None,
            "nothing known: the prior"
        );
        live.summary.store(window(3, 40.0));
        assert_eq!(target.ttfb_estimate(&policy), Some(q(3, 40.0)));
        live.shared_ttfb.store(Some(Arc::new(q(500, 900.0))));
        assert_eq!(target.ttfb_estimate(&policy), Some(q(500, 900.0)));
        live.summary.store(window(policy.min_samples, 50.0));
        assert_eq!(
            target.ttfb_estimate(&policy),
            Some(q(policy.min_samples, 50.0))
        );
    }

    fn upstream_with(extra: &str, secrets: &str) -> Upstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_toml(&format!(
            "[node]\nid = 1\nregion = \"r\"\n\n{secrets}\n[[upstreams]]\nid = \"u\"\nbase_url = \"http://127.0.0.1:1/v1\"\n{extra}\n"
        ))
        .unwrap();
        // The reference arrives through the cluster: the node's own file
        // names no upstream, so only [secrets] decides.
        let mut own = config.clone();
        own.upstreams.clear();
        let env = FakeEnv(
            [
                ("ALLOWED_KEY", "sk-allowed"),
                ("BROKEN_KEY", "sk-broken\nX-Injected: 1"),
                ("MERIDIAN_ADMIN_TOKEN", "admin-token-0123456789"),
            ]
            .into_iter()
            .collect(),
        );
        build_upstream(
            &config.upstreams[0],
            &config.proxy,
            &env,
            &SecretPolicy::new(&own),
            &Metrics::default(),
        )
        .unwrap()
    }

    fn disabled_field(u: &Upstream) -> &'static str {
        u.disabled
            .as_ref()
            .expect("the upstream should be disabled")
            .field
    }

    #[tokio::test]
    async fn what_a_node_cannot_use_disables_that_upstream_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let secrets = format!(
            "[secrets]\nenv = [\"ALLOWED_KEY\", \"BROKEN_KEY\"]\nenv_prefix = \"MERIDIAN_\"\ndir = \"{}\"\n",
            keys.display()
        );
        let write = |name: &str, text: &str| {
            let path = keys.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let good = write("good", "sk-from-file\n");
        let newline = write("newline", "sk-first\nsk-second\n");
        let empty = write("empty", " \n");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "sk-outside").unwrap();
        std::os::unix::fs::symlink(&outside, keys.join("link-out")).unwrap();
        let not_pem = write("not-pem", "hello");

        let ok = upstream_with(&format!("api_key_file = \"{good}\""), &secrets);
        assert!(ok.usable(), "{:?}", ok.disabled);
        assert_eq!(ok.auth_header().unwrap().1, "Bearer sk-from-file");
        assert!(upstream_with("api_key_env = \"ALLOWED_KEY\"", &secrets).usable());

        for (extra, field) in [
            (format!("api_key_file = \"{newline}\""), "api_key_file"),
            (format!("api_key_file = \"{empty}\""), "api_key_file"),
            (
                format!("api_key_file = \"{}\"", keys.join("absent").display()),
                "api_key_file",
            ),
            (
                format!("api_key_file = \"{}\"", keys.join("link-out").display()),
                "api_key_file",
            ),
            (
                format!("api_key_file = \"{}\"", outside.display()),
                "api_key_file",
            ),
            ("api_key_file = \"/etc/passwd\"".to_owned(), "api_key_file"),
            ("api_key_env = \"BROKEN_KEY\"".to_owned(), "api_key_env"),
            ("api_key_env = \"UNLISTED_KEY\"".to_owned(), "api_key_env"),
            (
                "api_key_env = \"MERIDIAN_ADMIN_TOKEN\"".to_owned(),
                "api_key_env",
            ),
            ("ca_file = \"/surely/not/here.pem\"".to_owned(), "ca_file"),
            (format!("ca_file = \"{not_pem}\""), "ca_file"),
            ("ca_file = \"/dev/zero\"".to_owned(), "ca_file"),
        ] {
            let u = upstream_with(&extra, &secrets);
            assert_eq!(disabled_field(&u), field, "{extra}");
            assert!(u.auth_header().is_none(), "{extra}: no key is sent");
            let reason = &u.disabled.as_ref().unwrap().reason;
            for secret in ["sk-first", "sk-outside", "sk-broken", "admin-token"] {
                assert!(!reason.contains(secret), "{extra}: {reason}");
            }
        }
        // Nothing is allowed without [secrets].
        assert_eq!(
            disabled_field(&upstream_with(&format!("api_key_file = \"{good}\""), "")),
            "api_key_file"
        );
    }

    #[tokio::test]
    async fn one_unusable_upstream_leaves_the_rest_of_the_table() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_toml(&CONFIG.replace(
            "auth = \"api-key\"",
            "auth = \"api-key\"\nca_file = \"/surely/not/here.pem\"",
        ))
        .unwrap();
        let env = FakeEnv(
            [
                ("CLIENT_KEY", "client-key-0123456789"),
                ("A_KEY", "ka"),
                ("B_KEY", "kb"),
            ]
            .into_iter()
            .collect(),
        );
        let snap = RoutingSnapshot::build(&config, &env, None).unwrap();
        assert!(snap.route("fast").unwrap().usable());
        assert!(!snap.route("b-only").unwrap().usable());
        assert_eq!(disabled_field(&snap.upstreams[1]), "ca_file");
        // A disabled upstream is built again at the next change.
        let again = RoutingSnapshot::build(&config, &env, Some(&snap)).unwrap();
        assert!(Arc::ptr_eq(&snap.upstreams[0], &again.upstreams[0]));
        assert!(!Arc::ptr_eq(&snap.upstreams[1], &again.upstreams[1]));
    }

    #[tokio::test]
    async fn short_client_keys_are_refused_at_start() {
        let Err(BuildError::Invalid { field, message }) =
            build(&[("CLIENT_KEY", "k"), ("A_KEY", "ka"), ("B_KEY", "kb")])
        else {
            panic!("expected an error");
        };
        assert_eq!(field, "keys[0].key_env");
        assert!(
            message.contains("CLIENT_KEY") && message.contains("16"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn the_client_door_is_open_only_without_keys_on_loopback() {
        let bare = |api: &str| {
            let config = Config::from_toml(&format!(
                "[node]\nid = 1\nregion = \"r\"\n[listen]\napi = \"{api}\"\n"
            ));
            config.map(|c| LocalTrust::new(&c).open_without_keys)
        };
        assert_eq!(bare("127.0.0.1:8080"), Ok(true));
        assert_eq!(bare("[::1]:8080"), Ok(true));
        assert!(bare("0.0.0.0:8080").is_err(), "refused at start");
        let with_key = Config::from_toml(
            "[node]\nid = 1\nregion = \"r\"\n[[keys]]\nname = \"a\"\nkey_env = \"K\"\n",
        )
        .unwrap();
        assert!(!LocalTrust::new(&with_key).open_without_keys);
    }

    #[tokio::test]
    async fn rebuild_keeps_unchanged_upstreams() {
        let env = FakeEnv(
            [
                ("CLIENT_KEY", "client-key-0123456789"),
                ("A_KEY", "ka"),
                ("B_KEY", "kb"),
            ]
            .into_iter()
            .collect(),
        );
        let config = Config::from_toml(CONFIG).unwrap();
        let first = RoutingSnapshot::build(&config, &env, None).unwrap();
        let mut changed = config.clone();
        changed.upstreams[1].base_url = "https://c.example/v1".into();
        let second = RoutingSnapshot::build(&changed, &env, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&first.upstreams[0], &second.upstreams[0]));
        assert!(!Arc::ptr_eq(&first.upstreams[1], &second.upstreams[1]));
    }
}
