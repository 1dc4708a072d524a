//! The routing table as the data plane reads it: an immutable snapshot built
//! from configuration, swapped whole (`ArcSwap`) when configuration changes,
//! so a request reads routes, upstreams and keys without a lock or an await.
//!
//! Upstreams carry their connection pool and live counters; a rebuild keeps
//! the `Upstream` of every upstream whose configuration did not change, so
//! pools stay warm and in-flight counts stay true across config changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use proto::config::{Config, HealthConfig, ProxyConfig, UpstreamAuth, UpstreamConfig};
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
        !matches!(self.key_state, KeyState::Missing(_))
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

impl RoutingSnapshot {
    /// Builds a snapshot from a configuration file, reusing the upstreams of
    /// `previous` whose configuration is unchanged.
    pub fn build(
        config: &Config,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
    ) -> Result<Self, BuildError> {
        let keys = resolve_keys(config, secrets)?;
        Self::build_with_keys(config, keys, secrets, previous)
    }

    /// Builds a snapshot whose client keys are already hashed, as the
    /// replicated state holds them; `config.keys` is ignored.
    pub fn build_with_keys(
        config: &Config,
        keys: Vec<(String, KeyHash)>,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
    ) -> Result<Self, BuildError> {
        let invalid = |field: String, message: String| BuildError::Invalid { field, message };
        let region = HeaderValue::from_str(&config.node.region)
            .map_err(|_| invalid("node.region".into(), "must be a header-safe string".into()))?;

        let metrics = previous.map(|p| p.metrics.clone()).unwrap_or_default();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut by_id: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for (i, uc) in config.upstreams.iter().enumerate() {
            let reused = previous
                .and_then(|p| p.upstreams.iter().find(|u| u.config == *uc))
                .cloned();
            let upstream = match reused {
                Some(u) => u,
                None => Arc::new(
                    build_upstream(uc, &config.proxy, secrets, &metrics).map_err(
                        |(field, message)| invalid(format!("upstreams[{i}].{field}"), message),
                    )?,
                ),
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
            keys: KeyRing::new(keys),
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
            let value = secrets
                .env(&key.key_env)
                .ok_or_else(|| BuildError::Invalid {
                    field: format!("keys[{i}].key_env"),
                    message: format!("environment variable {} is not set", key.key_env),
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

fn build_upstream(
    uc: &UpstreamConfig,
    proxy: &ProxyConfig,
    secrets: &dyn Secrets,
    metrics: &Metrics,
) -> Result<Upstream, (String, String)> {
    let base = uc.base_url.trim_end_matches('/');
    let mut uris = Vec::with_capacity(3);
    for endpoint in Endpoint::ALL {
        let uri: Uri = format!("{base}{}", endpoint.suffix())
            .parse()
            .map_err(|e| ("base_url".to_owned(), format!("not a URL: {e}")))?;
        uris.push(uri);
    }
    let uris: [Uri; 3] = uris.try_into().map_err(|_| {
        (
            "base_url".to_owned(),
            "could not build endpoint URLs".to_owned(),
        )
    })?;

    let (key, key_state) = match (&uc.api_key_env, &uc.api_key_file) {
        (Some(var), _) => match secrets.env(var) {
            Some(key) => (Some(key), KeyState::Present),
            None => (
                None,
                KeyState::Missing(format!("environment variable {var} is not set")),
            ),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(key) if !key.trim().is_empty() => (Some(key.trim().to_owned()), KeyState::Present),
            Ok(_) => (
                None,
                KeyState::Missing(format!("{} is empty", path.display())),
            ),
            Err(e) => (
                None,
                KeyState::Missing(format!("cannot read {}: {e}", path.display())),
            ),
        },
        (None, None) => (None, KeyState::NotNeeded),
    };
    let auth = match key {
        None => None,
        Some(key) => {
            let (name, value) = match uc.auth {
                UpstreamAuth::Bearer => (http::header::AUTHORIZATION, format!("Bearer {key}")),
                UpstreamAuth::ApiKey => (HeaderName::from_static("api-key"), key),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                (
                    "api_key_env".to_owned(),
                    "the key holds characters not allowed in a header".to_owned(),
                )
            })?;
            value.set_sensitive(true);
            Some((name, value))
        }
    };
    let pools =
        upstream::pools_for(uc, proxy).map_err(|e| (e.field().to_owned(), e.to_string()))?;
    let id: Arc<str> = Arc::from(uc.id.as_str());
    Ok(Upstream {
        metrics: metrics.upstream(&id),
        id,
        id_header: HeaderValue::from_str(&uc.id)
            .map_err(|_| ("id".to_owned(), "must be a header-safe string".to_owned()))?,
        region: Arc::from(uc.region.as_str()),
        config: uc.clone(),
        uris,
        auth,
        key_state,
        pools,
        live: Live::default(),
    })
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
        let snap = build(&[("CLIENT_KEY", "ck"), ("A_KEY", "ka"), ("B_KEY", "kb")]).unwrap();
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
        let snap = build(&[("CLIENT_KEY", "ck"), ("A_KEY", "ka")]).unwrap();
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
        let snap = build(&[("CLIENT_KEY", "ck"), ("A_KEY", "ka"), ("B_KEY", "kb")]).unwrap();
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
        let snap = build(&[("CLIENT_KEY", "ck"), ("A_KEY", "ka"), ("B_KEY", "kb")]).unwrap();
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

    #[tokio::test]
    async fn rebuild_keeps_unchanged_upstreams() {
        let env = FakeEnv(
            [("CLIENT_KEY", "ck"), ("A_KEY", "ka"), ("B_KEY", "kb")]
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
