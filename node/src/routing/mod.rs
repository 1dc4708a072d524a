//! The routing table as the data plane reads it: an immutable snapshot built
//! from configuration, swapped whole (`ArcSwap`) when configuration changes,
//! so a request reads routes, upstreams and keys without a lock or an await.
//!
//! Upstreams carry their connection pool and live counters; a rebuild keeps
//! the `Upstream` of every upstream whose configuration did not change, so
//! pools stay warm and in-flight counts stay true across config changes.
//!
//! This file holds the snapshot's types and what a request reads from them
//! (a route's plan, a target's figures); building a snapshot from the
//! applied state is in `build`, where provider and client keys come from
//! and whether this node may read them in `secrets`, and the task that
//! rebuilds the table each time the cluster's applied state changes in
//! `follow`. Names no route holds but that address an upstream
//! (`{upstream}/{model}`) are looked up in `addressed`. Each upstream's live health (circuit, window summary, shared
//! estimate, attempts in flight) is not made here: it comes from the health
//! wing's [`Registry`], which keeps it across rebuilds.

mod addressed;
mod build;
mod endpoint;
#[cfg(test)]
pub(crate) mod fixtures;
mod follow;
pub mod hedge;
#[cfg(test)]
mod local_tests;
mod secrets;
#[cfg(test)]
mod tests;

pub use addressed::{Miss, decode_model_id};
pub use build::{BuildError, Disabled, NodeSettings};
pub use endpoint::{Dialect, Endpoint, Translation, azure_uris};
pub use follow::{Follow, build_applied, follow_applied, log_disabled, routing_built_at};
pub use secrets::{LocalTrust, ProcessEnv, Secrets, check_upstream, resolve_keys, response_seal};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use proto::api::openai::Model;
use proto::config::{HealthConfig, ProxyConfig, UpstreamConfig};
use serde::Serialize;

use crate::auth::KeyRing;
use crate::health::{Circuit, HasLive, Live, Quantiles, Registry, cooldown};
use crate::metrics::{Metrics, RouteMetrics, TargetMetrics, UpstreamMetrics};
use crate::scrub::Scrubber;
use crate::select::{self, Pick, Policy, TargetStats};
use crate::upstream::Pools;
use addressed::Addressed;
use hedge::Hedge;

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
    uris: [Uri; Endpoint::ALL.len()],
    /// The provider key header, marked sensitive so it never prints.
    auth: Option<(HeaderName, HeaderValue)>,
    /// Whether the key is there.
    pub key_state: KeyState,
    /// Why it is not used on this node, if it is not.
    pub disabled: Option<Disabled>,
    /// Its connection pools, one per data-plane worker.
    pub pools: Pools,
    /// Its live health, from the [`Registry`]: the same for every
    /// `Upstream` of this id the routing table builds in turn.
    pub live: Arc<Live>,
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

    /// What the capacity gate needs of it.
    pub fn gated(&self) -> crate::capacity::Gated<'_> {
        crate::capacity::Gated {
            id: &self.id,
            max_concurrency: self.config.max_concurrency,
            rpm: self.config.rpm,
            in_flight: &self.live.in_flight,
        }
    }
}

impl HasLive for Upstream {
    fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

impl HasLive for Arc<Upstream> {
    fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

/// Prices of a target, per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Per million output (completion) tokens.
    pub output_per_mtok: f64,
    /// Per million input tokens read from the provider's prompt cache;
    /// `None`: billed as input.
    pub cached_input_per_mtok: Option<f64>,
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
    /// Its own URI of each endpoint, by `Endpoint` index, when it has them:
    /// an Azure deployment's ([`azure_uris`]), where the model is in the
    /// path; `None` for the upstream's own ([`Upstream::uri`]).
    pub uris: Option<Arc<[Uri; Endpoint::ALL.len()]>>,
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
    /// The URI to send an endpoint's requests to: the target's own (an
    /// Azure deployment's), else its upstream's.
    pub fn uri(&self, endpoint: Endpoint) -> &Uri {
        match &self.uris {
            Some(uris) => &uris[endpoint.index()],
            None => self.upstream.uri(endpoint),
        }
    }

    /// The time to first byte to expect from this target: this node's own
    /// window blended with the shared figures of this region or the whole
    /// cluster, the own one weighing more the more fresh samples stand
    /// behind it ([`crate::health::blend`]: any recent own sample counts,
    /// for it is how this region reaches the upstream, and it is what a
    /// node cut off from the cluster still has); `None` when nobody
    /// measured it.
    pub fn ttfb_estimate(&self, policy: &Policy) -> Option<Quantiles> {
        self.upstream
            .live
            .ttfb_estimate(cooldown::now_ms(), &policy.blend)
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
        self.stats_at(policy, stream, cooldown::now_ms())
    }

    /// [`Target::stats`] at `now_ms` on the recorder's clock.
    fn stats_at(&self, policy: &Policy, stream: bool, now_ms: u64) -> TargetStats {
        let live = &self.upstream.live;
        let summary = live.summary.load();
        let circuit = match live.circuit() {
            Circuit::HalfOpen if stream || !live.probe_ready() => Circuit::Open,
            circuit => circuit,
        };
        TargetStats {
            usable: self.upstream.usable(),
            // A few own samples weigh more than the prior, which is
            // pessimistic: a target judged by it against measured ones
            // would be avoided until a probe measured it.
            p99_ms: live.ttfb_estimate(now_ms, &policy.blend).map(|q| q.p99),
            in_flight: live.in_flight.load(Ordering::Relaxed),
            error_rate: summary.error_rate,
            attempts: summary.attempts,
            circuit,
            probe: false,
        }
    }
}

impl Route {
    /// The targets to try, in order: `select::plan` over each target's
    /// figures, with this route's error threshold.
    pub fn plan(&self, policy: &Policy, stream: bool, rng: &mut impl rand::Rng) -> Vec<Pick> {
        self.plan_among(policy, stream, |_| true, rng)
    }

    /// The same among the targets whose upstream `serves` this request
    /// (one that speaks another API and cannot be translated to is left
    /// out, as an unusable one is).
    pub fn plan_among(
        &self,
        policy: &Policy,
        stream: bool,
        serves: impl Fn(&Upstream) -> bool,
        rng: &mut impl rand::Rng,
    ) -> Vec<Pick> {
        let policy = Policy {
            error_threshold: self.error_threshold,
            ..*policy
        };
        let now_ms = cooldown::now_ms();
        let mut stats: Vec<Vec<TargetStats>> = self
            .tiers
            .iter()
            .map(|tier| {
                tier.iter()
                    .map(|t| {
                        let mut stats = t.stats_at(&policy, stream, now_ms);
                        stats.usable &= serves(&t.upstream);
                        stats
                    })
                    .collect()
            })
            .collect();
        self.probe_avoided(&mut stats, &policy, now_ms);
        select::plan(&stats, &policy, self.max_attempts as usize, rng)
    }

    /// Counts this plan against every target it avoids and makes the
    /// request the latency probe of the first one due ([`probe_avoided`]).
    fn probe_avoided(&self, stats: &mut [Vec<TargetStats>], policy: &Policy, now_ms: u64) {
        probe_avoided(stats, policy, now_ms, |t, i| {
            &self.tiers[t][i].upstream.live
        });
    }

    /// Whether any target can be used from this node.
    pub fn usable(&self) -> bool {
        self.tiers.iter().flatten().any(|t| t.upstream.usable())
    }
}

/// Counts a plan against every target it avoids ([`select::avoided`]) in
/// the tier its first pick comes from ([`select::starts_here`]; a later
/// tier's targets are failovers, not choices) and makes the request the
/// latency probe of the first one due ([`select::probe_due`]), one probe a
/// request at most; `live_of(tier, index)` is the target's live health.
/// The probe is taken on the target's [`Live`], so two requests at once do
/// not both probe it.
pub fn probe_avoided<'a>(
    stats: &mut [Vec<TargetStats>],
    policy: &Policy,
    now_ms: u64,
    live_of: impl Fn(usize, usize) -> &'a Live,
) {
    let Some(t) = stats
        .iter()
        .position(|tier| select::starts_here(tier, policy))
    else {
        return;
    };
    let tier = &mut stats[t];
    let bar = select::AvoidBar::of(tier, policy);
    let mut probing = false;
    for (i, stats) in tier.iter_mut().enumerate() {
        if !bar.avoids(stats, policy) {
            continue;
        }
        let live = live_of(t, i);
        let (last_ms, passed) = live.passed_over();
        if !probing
            && select::probe_due(last_ms, passed, now_ms, policy)
            && live.take_latency_probe(last_ms, now_ms)
        {
            stats.probe = true;
            probing = true;
        }
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
    /// Every upstream by the prefixes that address it, with its catalogue.
    addressed: Addressed,
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
    /// Every upstream's live health by id: made with the first snapshot
    /// and handed on to each rebuild, like `metrics`.
    pub registry: Arc<Registry>,
    /// Removes the provider keys of `upstreams` from what leaves the node.
    pub scrub: Arc<Scrubber>,
}

impl RoutingSnapshot {
    /// The route named `model`, if one is.
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// What a request for `model` is sent through: the route of that name,
    /// else, for `{prefix}/{name}` with a prefix addressing an upstream,
    /// that upstream alone (see `addressed`). No lock, no await.
    pub fn lookup(&self, model: &str) -> Result<Arc<Route>, Miss> {
        match self.routes.get(model) {
            Some(route) => Ok(route.clone()),
            None => self.addressed.lookup(model),
        }
    }

    /// `GET /v1/models/{id}`: the entry of a name a client may send, owned
    /// by `meridian` for a route and by the upstream for an addressed name.
    pub fn model_entry(&self, id: &str) -> Result<Model, Miss> {
        if self.routes.contains_key(id) {
            return Ok(Model::new(id, "meridian"));
        }
        let route = self.addressed.lookup(id)?;
        let owner = route.tiers.iter().flatten().next().map(|t| &t.upstream.id);
        Ok(Model::new(id, owner.map_or("meridian", |o| o)))
    }

    /// Ready to serve: at least one route has an upstream this node can use.
    pub fn ready(&self) -> bool {
        self.routes.values().any(|r| r.usable()) || self.upstreams.iter().any(|u| u.usable())
    }
}

/// Counts an attempt in flight against an upstream until dropped.
pub struct InFlight {
    upstream: Arc<Upstream>,
    /// The class slot of an upstream with a capacity, given back (and the
    /// requests waiting for one told) after the count.
    _slot: Option<crate::capacity::Slot>,
}

impl InFlight {
    /// Starts counting.
    pub fn new(upstream: Arc<Upstream>) -> Self {
        upstream.live.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            upstream,
            _slot: None,
        }
    }

    /// Holds an attempt the capacity gate counted already
    /// ([`crate::capacity::Capacity::permit`]).
    pub fn counted(upstream: Arc<Upstream>, slot: crate::capacity::Slot) -> Self {
        Self {
            upstream,
            _slot: Some(slot),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.upstream.live.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
