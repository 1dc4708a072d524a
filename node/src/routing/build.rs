//! Building a snapshot from the applied state: each upstream with its URIs,
//! key header and pools, each route with its targets, each upstream's
//! addressed models (`addressed`), and the `/v1/models` answer. What one node cannot use of a committed upstream (a key it may
//! not or cannot read, a CA file that is not PEM) disables that upstream on
//! that node alone ([`Disabled`]), naming the field, and the rest of the
//! table is built; what makes the table itself wrong (a route naming no
//! upstream, a region that is not a header value, a client key not set)
//! fails the build ([`BuildError`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use proto::FieldError;
use proto::api::openai::{Model, ModelList};
use proto::config::{
    Config, HealthConfig, ProxyConfig, RouteConfig, SecretOrigin, SecretPolicy, UpstreamConfig,
    UpstreamKind,
};
use proto::state::ClusterState;
use serde::Serialize;

use super::addressed::{Addressed, Defaults};
use super::hedge::Hedge;
use super::secrets::{LocalTrust, Secrets, ca_file_allowed, provider_key, resolve_keys};
use super::{Endpoint, KeyState, Price, Route, RoutingSnapshot, Target, Upstream, azure_uris};
use crate::auth::{KeyHash, KeyRing};
use crate::cluster::unhex;
use crate::health::{Live, Registry};
use crate::request_body::json_string;
use crate::scrub::Scrubber;
use crate::upstream;

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

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration value cannot be used (names the field).
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

/// What the routing table takes from this node's own settings; the
/// upstreams, routes and client keys come from the cluster's state.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's region, for `x-meridian-region`.
    pub region: String,
    /// Timeouts and limits, the defaults of every route.
    pub proxy: ProxyConfig,
    /// Health settings (error threshold, the adaptive first-byte timeout).
    pub health: HealthConfig,
}

impl NodeSettings {
    /// The settings of a node's file.
    pub fn new(config: &Config) -> Self {
        Self {
            region: config.node.region.clone(),
            proxy: config.proxy.clone(),
            health: config.health.clone(),
        }
    }
}

/// The tables a snapshot is built from, from a file or from the cluster.
struct Tables<'a> {
    upstreams: Vec<&'a UpstreamConfig>,
    routes: Vec<&'a RouteConfig>,
    keys: Vec<(String, KeyHash)>,
    /// The models discovery committed, by upstream id.
    discovered: &'a BTreeMap<String, Vec<String>>,
}

impl RoutingSnapshot {
    /// Builds a snapshot from a configuration file alone (its own
    /// upstreams, routes and client keys), reusing the upstreams of
    /// `previous` whose configuration is unchanged.
    pub fn build(
        config: &Config,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
    ) -> Result<Self, BuildError> {
        // Discovery commits to the cluster's state: a file alone has none.
        let discovered = BTreeMap::new();
        let tables = Tables {
            upstreams: config.upstreams.iter().collect(),
            routes: config.routes.iter().collect(),
            keys: resolve_keys(config, secrets)?,
            discovered: &discovered,
        };
        let node = NodeSettings::new(config);
        Self::assemble(tables, &node, secrets, previous, &LocalTrust::new(config))
    }

    /// Builds a snapshot from the cluster's applied state (its upstreams,
    /// routes, hashed client keys and discovered catalogue, in id and name
    /// order) and this node's own settings; `trust` comes from the node's
    /// own file.
    pub fn from_state(
        state: &ClusterState,
        node: &NodeSettings,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
        trust: &LocalTrust,
    ) -> Result<Self, BuildError> {
        let tables = Tables {
            upstreams: state.upstreams.values().collect(),
            routes: state.routes.values().collect(),
            // The state holds each hash as lowercase hex (`apply` checks
            // it), so none is skipped here.
            keys: state
                .keys
                .values()
                .filter_map(|k| unhex(&k.sha256).map(|h| (k.name.clone(), h)))
                .collect(),
            discovered: &state.catalogue,
        };
        Self::assemble(tables, node, secrets, previous, trust)
    }

    fn assemble(
        tables: Tables<'_>,
        node: &NodeSettings,
        secrets: &dyn Secrets,
        previous: Option<&RoutingSnapshot>,
        trust: &LocalTrust,
    ) -> Result<Self, BuildError> {
        let invalid = |field: String, message: String| FieldError::new(field, message);
        let region = HeaderValue::from_str(&node.region)
            .map_err(|_| invalid("node.region".into(), "must be a header-safe string".into()))?;
        let proxy = &node.proxy;

        let metrics = previous.map(|p| p.metrics.clone()).unwrap_or_default();
        let registry: Arc<Registry> = previous.map(|p| p.registry.clone()).unwrap_or_default();
        let mut lives = registry.rebuild(&metrics);
        let mut upstreams = Vec::with_capacity(tables.upstreams.len());
        let mut by_id: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for &uc in &tables.upstreams {
            let live = lives.live(&Arc::from(uc.id.as_str()));
            // A disabled upstream is built again: its key file or CA may
            // have been fixed since.
            let reused = previous
                .and_then(|p| p.upstreams.iter().find(|u| u.config == *uc && u.usable()))
                .cloned();
            let upstream = match reused {
                Some(u) => u,
                None => Arc::new(build_upstream(uc, proxy, secrets, &trust.policy, live)?),
            };
            by_id.insert(uc.id.as_str(), upstream.clone());
            upstreams.push(upstream);
        }

        let mut routes = HashMap::with_capacity(tables.routes.len());
        for (i, rc) in tables.routes.iter().enumerate() {
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
                    let uris = target_uris(&upstream.config, &tc.model).map_err(|e| {
                        invalid(
                            format!("routes[{i}].tiers[{t}][{j}].model"),
                            format!("not usable in a deployment URL: {e}"),
                        )
                    })?;
                    targets.push(Target {
                        uris,
                        model: Arc::from(tc.model.as_str()),
                        model_json: json_string(&tc.model),
                        price: Price {
                            input_per_mtok: tc.input_per_mtok,
                            output_per_mtok: tc.output_per_mtok,
                            cached_input_per_mtok: tc.cached_input_per_mtok,
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
                max_attempts: rc.max_attempts.unwrap_or(proxy.max_attempts),
                first_byte_timeout: Duration::from_millis(
                    rc.first_byte_timeout_ms
                        .unwrap_or(proxy.first_byte_timeout_ms),
                ),
                request_timeout: Duration::from_millis(
                    rc.request_timeout_ms.unwrap_or(proxy.request_timeout_ms),
                ),
                error_threshold: rc.error_threshold.unwrap_or(node.health.error_threshold),
                hedge: rc.hedge.as_ref().map(|h| {
                    Hedge::new(h.quantile, Duration::from_millis(h.min_delay_ms), h.budget)
                }),
                metrics: route_metrics,
            };
            routes.insert(name, Arc::new(route));
        }

        let addressed = Addressed::build(
            &upstreams,
            tables.discovered,
            &metrics,
            Defaults {
                max_attempts: proxy.max_attempts,
                first_byte_timeout: Duration::from_millis(proxy.first_byte_timeout_ms),
                request_timeout: Duration::from_millis(proxy.request_timeout_ms),
                error_threshold: node.health.error_threshold,
            },
        );

        // Built: the upstreams that left the table lose their health now,
        // and what left the configuration leaves /metrics.
        lives.publish();
        metrics.retain(
            &metric_labels(&routes, &upstreams),
            &upstreams.iter().map(|u| u.id.clone()).collect(),
        );
        Ok(Self {
            scrub: Scrubber::for_keys(&provider_keys(&upstreams), previous.map(|p| &p.scrub)),
            region,
            keys: KeyRing::new(tables.keys).open_when_empty(trust.open_without_keys),
            models_body: models_body(&tables.routes, &addressed),
            routes,
            upstreams,
            addressed,
            proxy: proxy.clone(),
            health: node.health.clone(),
            applied_index: None,
            metrics,
            registry,
        })
    }
}

/// Every route label the snapshot counts under (its routes, and each
/// upstream's addressed door `<upstream>/*`), with the upstreams of its
/// targets: what [`Metrics::retain`] keeps.
fn metric_labels(
    routes: &HashMap<Arc<str>, Arc<Route>>,
    upstreams: &[Arc<Upstream>],
) -> BTreeMap<Arc<str>, BTreeSet<Arc<str>>> {
    let mut labels: BTreeMap<Arc<str>, BTreeSet<Arc<str>>> = routes
        .iter()
        .map(|(name, route)| {
            let targets = route.tiers.iter().flatten();
            (
                name.clone(),
                targets.map(|t| t.upstream.id.clone()).collect(),
            )
        })
        .collect();
    for upstream in upstreams {
        let door: Arc<str> = Arc::from(format!("{}/*", upstream.id));
        labels.entry(door).or_default().insert(upstream.id.clone());
    }
    labels
}

/// A target's own URIs: an Azure deployment's (the model names it in the
/// path), precomputed here so no request formats one; `None` for every
/// other kind, which sends to its upstream's.
pub(super) fn target_uris(
    upstream: &UpstreamConfig,
    model: &str,
) -> Result<Option<Arc<[Uri; Endpoint::ALL.len()]>>, http::uri::InvalidUri> {
    match upstream.kind {
        UpstreamKind::Azure => Ok(Some(Arc::new(azure_uris(upstream, model)?))),
        UpstreamKind::Openai | UpstreamKind::Anthropic => Ok(None),
    }
}

/// Each upstream's provider key as it sends it (read back from its header),
/// for the scrubber.
fn provider_keys(upstreams: &[Arc<Upstream>]) -> Vec<(&Arc<str>, &str)> {
    upstreams
        .iter()
        .filter_map(|u| {
            let (name, value) = u.auth_header()?;
            let value = value.to_str().ok()?;
            // `x-api-key` and `api-key` hold the key alone.
            let key = if name == http::header::AUTHORIZATION {
                value.strip_prefix("Bearer ").unwrap_or(value)
            } else {
                value
            };
            Some((&u.id, key))
        })
        .collect()
}

/// The routes, owned by `meridian`, then every catalogue model as
/// `{upstream}/{model}` owned by its upstream; a route of the same name
/// wins, as it does for requests.
fn models_body(routes: &[&RouteConfig], addressed: &Addressed) -> Bytes {
    let mut data: Vec<Model> = routes
        .iter()
        .map(|r| Model::new(&r.model, "meridian"))
        .collect();
    data.extend(addressed.entries());
    let list = ModelList::of(data);
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

/// Builds one upstream. What this node cannot use (a key it may not read or
/// cannot read, a key that is not a valid header value, a CA file that is
/// not PEM) disables the upstream here, naming the field; it never fails
/// the whole table.
pub(super) fn build_upstream(
    uc: &UpstreamConfig,
    proxy: &ProxyConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
    live: Arc<Live>,
) -> Result<Upstream, BuildError> {
    let mut disabled: Option<Disabled> = None;
    let mut disable = |field: &'static str, reason: String| {
        disabled.get_or_insert(Disabled { field, reason });
    };
    let base = uc.base_url.trim_end_matches('/');
    let uris: [Uri; Endpoint::ALL.len()] = Endpoint::ALL.map(|endpoint| {
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
    // A CA file this node's [secrets] does not allow is never opened.
    let ca_allowed = match uc.ca_file.as_deref().map(|p| ca_file_allowed(p, policy)) {
        Some(Err(reason)) => {
            disable("ca_file", reason);
            false
        }
        _ => true,
    };
    let pools = match ca_allowed.then(|| upstream::pools_for(uc, proxy)) {
        Some(Ok(pools)) => pools,
        refused => {
            if let Some(Err(e)) = refused {
                disable(e.field(), e.to_string());
            }
            // Never used while disabled, but every upstream has pools.
            let plain = UpstreamConfig {
                ca_file: None,
                ..uc.clone()
            };
            // Only rustls refusing its own defaults fails this: no
            // upstream's input can, so it fails the table as before.
            upstream::pools_for(&plain, proxy).map_err(|e| {
                FieldError::new(format!("upstreams.{}.{}", uc.id, e.field()), e.to_string())
            })?
        }
    };
    let id_header = HeaderValue::from_str(&uc.id).unwrap_or_else(|_| {
        disable("id", "must be a header-safe string".to_owned());
        HeaderValue::from_static("invalid")
    });
    let id: Arc<str> = Arc::from(uc.id.as_str());
    Ok(Upstream {
        metrics: live.metrics.clone(),
        id,
        id_header,
        region: Arc::from(uc.region.as_str()),
        config: uc.clone(),
        uris,
        auth,
        key_state,
        disabled,
        pools,
        live,
    })
}
