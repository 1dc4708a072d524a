//! Provider-addressed models: a `model` that names no route but reads
//! `{prefix}/{model}`, where the prefix is an upstream's id or one of its
//! aliases, goes to that upstream alone with `{model}` (everything after
//! the first `/`, so `openai/ft:gpt-4o:org/x` keeps its slashes) as the
//! provider's model name. Routes win: a route literally named
//! `openai/gpt-4o` is used before the upstream `openai` is looked at.
//!
//! Such a request gets a route of one tier with one target, so it has the
//! health handling, circuits, metrics, usage and cost of any route and
//! fails over to nothing else (it named its upstream); its timeouts are
//! the `[proxy]` defaults and it is never hedged.
//!
//! An upstream's catalogue (its declared `models` and what discovery
//! committed to the cluster's state) is built into routes with the
//! snapshot, so a lookup is two hash reads and an `Arc` clone. An upstream
//! whose catalogue is empty accepts any model: its one-target route is
//! made per request (an `Arc<Upstream>` clone and the model as JSON).
//!
//! # Metrics
//!
//! All addressed traffic of an upstream is counted under one route label,
//! `route="{id}/*"` (with `upstream="{id}"`), whatever model it named: a
//! client chooses the model, and a label per name would let it grow the
//! node's series without bound (a discovered catalogue may hold 10 000).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proto::api::openai::Model;
use proto::config::{ModelPrice, UpstreamConfig, check_model_name};

use super::{Price, Route, Target, Upstream};
use crate::error::ProxyError;
use crate::metrics::{Metrics, RouteMetrics, TargetMetrics};
use crate::request_body::json_string;

/// Why a `model` has no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Miss {
    /// Neither a route nor `{prefix}/{model}` with a known prefix.
    #[error("no route and no upstream prefix")]
    Unknown,
    /// The upstream is known but its non-empty catalogue lacks the model.
    #[error("upstream `{upstream}` does not list the model ({count} models)")]
    NotInCatalogue {
        /// The upstream's id.
        upstream: Arc<str>,
        /// How many models its catalogue holds.
        count: usize,
    },
    /// What follows the prefix is not a model name.
    #[error("the model name after `{prefix}/` is not valid")]
    BadModel {
        /// The prefix as the client wrote it (a known id or alias).
        prefix: Arc<str>,
    },
}

impl Miss {
    /// The client's error for `model`, which missed this way.
    pub fn into_error(self, model: &str) -> ProxyError {
        match self {
            Self::Unknown => ProxyError::UnknownModel(model.to_owned()),
            Self::NotInCatalogue { upstream, count } => ProxyError::NotInCatalogue {
                model: model.to_owned(),
                upstream: upstream.to_string(),
                count,
            },
            Self::BadModel { prefix } => ProxyError::BadRequest {
                message: format!(
                    "The model name after `{prefix}/` must be 1 to 256 characters without \
                     spaces or control characters."
                ),
                param: Some("model"),
            },
        }
    }
}

/// What an addressed route takes from the node's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Defaults {
    pub max_attempts: u32,
    pub first_byte_timeout: Duration,
    pub request_timeout: Duration,
    pub error_threshold: f64,
}

/// One upstream as addressed names reach it.
struct Door {
    upstream: Arc<Upstream>,
    /// Routes of its catalogue (declared ∪ discovered) by provider model name.
    catalogue: HashMap<Arc<str>, Arc<Route>>,
    /// Its prices by provider model name, for a route made per request.
    prices: BTreeMap<String, ModelPrice>,
    /// The counters of all its addressed traffic (`route="{id}/*"`).
    metrics: Arc<RouteMetrics>,
    target_metrics: Arc<TargetMetrics>,
}

/// Every upstream by the prefixes that address it, built with the snapshot.
pub(super) struct Addressed {
    doors: HashMap<Arc<str>, Arc<Door>>,
    defaults: Defaults,
}

impl Addressed {
    /// The doors of `upstreams`, each with its declared models and the
    /// models `discovered` for it.
    pub(super) fn build(
        upstreams: &[Arc<Upstream>],
        discovered: &BTreeMap<String, Vec<String>>,
        metrics: &Metrics,
        defaults: Defaults,
    ) -> Self {
        let mut doors = HashMap::new();
        for upstream in upstreams {
            let uc: &UpstreamConfig = &upstream.config;
            let label: Arc<str> = Arc::from(format!("{}/*", upstream.id));
            let route_metrics = metrics.route(&label);
            let target_metrics = route_metrics.target(&upstream.id);
            let mut door = Door {
                upstream: upstream.clone(),
                catalogue: HashMap::new(),
                prices: uc.prices.clone(),
                metrics: route_metrics,
                target_metrics,
            };
            let found = discovered.get(&uc.id).into_iter().flatten();
            for model in uc.models.iter().chain(found) {
                if door.catalogue.contains_key(model.as_str()) {
                    continue;
                }
                let name = format!("{}/{model}", upstream.id);
                let route = door.route(Arc::from(name), model, defaults);
                door.catalogue
                    .insert(Arc::from(model.as_str()), Arc::new(route));
            }
            let door = Arc::new(door);
            for prefix in std::iter::once(&uc.id).chain(&uc.aliases) {
                doors.insert(Arc::from(prefix.as_str()), door.clone());
            }
        }
        Self { doors, defaults }
    }

    /// The route of an addressed `model` (routes have been looked up already).
    pub(super) fn lookup(&self, model: &str) -> Result<Arc<Route>, Miss> {
        let (prefix, name) = model.split_once('/').ok_or(Miss::Unknown)?;
        let door = self.doors.get(prefix).ok_or(Miss::Unknown)?;
        if check_model_name("model", name).is_err() {
            return Err(Miss::BadModel {
                prefix: Arc::from(prefix),
            });
        }
        if let Some(route) = door.catalogue.get(name) {
            return Ok(route.clone());
        }
        if !door.catalogue.is_empty() {
            return Err(Miss::NotInCatalogue {
                upstream: door.upstream.id.clone(),
                count: door.catalogue.len(),
            });
        }
        let full = format!("{}/{name}", door.upstream.id);
        Ok(Arc::new(door.route(Arc::from(full), name, self.defaults)))
    }

    /// The `/v1/models` entries of every catalogue model, as
    /// `{id}/{model}` owned by the upstream's id.
    pub(super) fn entries(&self) -> Vec<Model> {
        let mut entries = Vec::new();
        for (prefix, door) in &self.doors {
            // Each door is listed once, under its id rather than an alias.
            if **prefix != *door.upstream.id {
                continue;
            }
            entries.extend(
                door.catalogue
                    .values()
                    .map(|r| Model::new(&r.name, &door.upstream.id)),
            );
        }
        entries
    }
}

impl Door {
    /// The one-target route `name` to `model` on this upstream.
    fn route(&self, name: Arc<str>, model: &str, defaults: Defaults) -> Route {
        let price = self
            .prices
            .get(model)
            .map_or_else(Price::default, |p| Price {
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
                cached_input_per_mtok: p.cached_input_per_mtok,
            });
        Route {
            name,
            tiers: vec![vec![Target {
                upstream: self.upstream.clone(),
                model: Arc::from(model),
                model_json: json_string(model),
                price,
                metrics: self.target_metrics.clone(),
                // An Azure deployment's own URIs. A name that passed
                // `check_model_name` is always a valid percent-encoded path
                // segment; were it not, the request would fail at the
                // upstream's plain URI, never reach another.
                uris: super::build::target_uris(&self.upstream.config, model)
                    .ok()
                    .flatten(),
            }]],
            max_attempts: defaults.max_attempts,
            first_byte_timeout: defaults.first_byte_timeout,
            request_timeout: defaults.request_timeout,
            error_threshold: defaults.error_threshold,
            hedge: None,
            metrics: self.metrics.clone(),
        }
    }
}

/// A model name as a path segment (`GET /v1/models/{id}`) percent-decoded:
/// an SDK may escape the `/` of `deepseek/deepseek-chat` as `%2F`. A
/// malformed escape is kept as written; bytes that are not UTF-8 become
/// U+FFFD, and the name then fails whatever lookup follows.
pub fn decode_model_id(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "addressed_tests.rs"]
mod tests;
