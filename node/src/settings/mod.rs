//! The node's runtime settings, built once at start-up from its validated
//! configuration file and passed down: durations as [`Duration`], the
//! initial voters parsed, the worker count resolved, the router's policy,
//! the health recorder's and breakers' settings, both listeners' connection
//! limits, and the Raft core's and transport's tuning (in `cluster::tuning`). Nothing below [`Settings::new`] reads a
//! millisecond integer or re-parses an `id@addr` string, and nothing asks
//! the machine for its CPU count a second time.

use std::time::Duration;

use proto::{Config, FieldError};

use crate::cluster::RaftSettings;
use crate::health::RecorderSettings;
use crate::health::blend::Blend;
use crate::health::breaker::BreakerPolicy;
use crate::routing::NodeSettings;
use crate::select::Policy;
use crate::server::Limits;

#[cfg(test)]
mod tests;

/// How often the recorder drains queued samples and republishes summaries.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Everything a node runs with, derived from its file in one place.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file as validated, with `proxy.workers` replaced by the resolved
    /// count ([`Settings::workers`]), so the routing table built over it
    /// sizes its per-worker pools the same way. The sections used as they
    /// are (listeners, TLS paths, connections, keys, upstreams, routes,
    /// secrets) are read from here.
    pub file: Config,
    /// Data-plane threads: `proxy.workers`, or one per CPU when 0.
    pub workers: usize,
    /// How the router weighs targets, from `[health]`.
    pub policy: Policy,
    /// The health recorder's windows, cadence and circuit breakers.
    pub recorder: RecorderSettings,
    /// How long a request body may take to arrive (`connections.body_timeout_ms`).
    pub body_timeout: Duration,
    /// How the data plane's listener holds client connections.
    pub data_limits: Limits,
    /// How the admin listener holds client connections.
    pub admin_limits: Limits,
    /// The Raft store, core and transport, and the voters that bootstrap it.
    pub raft: RaftSettings,
    /// What each routing table is built with besides the cluster's state.
    pub routing: NodeSettings,
    /// How often the leader refreshes each discovering upstream's model
    /// list (`catalogue.refresh_ms`).
    pub catalogue_refresh: Duration,
    /// How long one model-list fetch may take (`catalogue.timeout_ms`).
    pub catalogue_timeout: Duration,
}

impl Settings {
    /// Builds the settings of a validated file ([`Config::from_toml`]
    /// validates); what still cannot be used names its field, as
    /// validation does.
    pub fn new(config: &Config) -> Result<Self, FieldError> {
        Self::with_cpus(config, || {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        })
    }

    /// [`Settings::new`] with the CPU count given, so the resolution of
    /// `proxy.workers` is tested without the machine's.
    fn with_cpus(config: &Config, cpus: impl FnOnce() -> usize) -> Result<Self, FieldError> {
        let workers = match config.proxy.workers {
            0 => cpus().max(1),
            n => n,
        };
        let mut file = config.clone();
        file.proxy.workers = workers;
        let health = &config.health;
        let ms = Duration::from_millis;
        Ok(Self {
            workers,
            policy: Policy {
                prior_p99_ms: health.prior_p99_ms,
                min_samples: health.min_samples,
                error_threshold: health.error_threshold,
                explore: health.explore,
                avoid_ratio: health.avoid_ratio,
                probe_every_ms: health.probe_interval_ms,
                probe_gap: health.probe_gap,
                blend: Blend {
                    half_life_ms: health.own_half_life_ms,
                    ..Blend::default()
                },
                ..Policy::default()
            },
            recorder: RecorderSettings {
                slots: health.window_slots as usize,
                slot: ms(health.slot_ms),
                publish_every: PUBLISH_EVERY,
                report_every: ms(health.report_interval_ms),
                region: config.node.region.clone(),
                breaker: BreakerPolicy {
                    failures: health.breaker_failures,
                    ejection_ms: health.ejection_ms,
                    max_ejection_ms: health.max_ejection_ms,
                },
                workers,
            },
            body_timeout: ms(config.connections.body_timeout_ms),
            data_limits: Limits::data(&config.connections),
            admin_limits: Limits::admin(&config.connections),
            raft: RaftSettings::new(config)?,
            routing: NodeSettings::new(&file),
            catalogue_refresh: ms(config.catalogue.refresh_ms),
            catalogue_timeout: ms(config.catalogue.timeout_ms),
            file,
        })
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> u64 {
        self.file.node.id
    }

    /// How often this node sends its health window to every other member.
    pub fn report_every(&self) -> Duration {
        self.recorder.report_every
    }
}
