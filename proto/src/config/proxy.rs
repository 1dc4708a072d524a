//! The data plane's `[proxy]` timeouts and limits, how client connections
//! are held (`[connections]`), and how upstream health is measured and acted
//! on (`[health]`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

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
    /// Largest non-streamed upstream answer read (502 beyond), and the most
    /// of one unfinished stream event held (the stream ends with an error
    /// event beyond).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// The longest a stream may last once its first chunk arrived; past it
    /// the stream ends with an error event, so an upstream that trickles
    /// for ever cannot hold a request, and its slots, for ever.
    #[serde(default = "default_max_stream_ms")]
    pub max_stream_ms: u64,
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
fn default_max_stream_ms() -> u64 {
    3_600_000
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
            max_stream_ms: default_max_stream_ms(),
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
    /// (for HTTP/1.1 this also bounds the head of a later request, and how
    /// long a client may take none of its answer before it is closed).
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

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
/// reports sent to every member, target choice, circuit breakers and the adaptive
/// first-byte timeout. The defaults suit providers that answer in tens of
/// milliseconds to tens of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often this node sends its window to every other member.
    pub report_interval_ms: u64,
    /// Slots in a window; the window spans `window_slots × slot_ms`.
    pub window_slots: u32,
    /// Length of one slot; old samples leave the window a slot at a time.
    pub slot_ms: u64,
    /// Samples a region's shared p99 needs before it is preferred to the
    /// whole cluster's; this node's own samples count from the first,
    /// weighed by how many and how fresh they are against the shared figure.
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
    /// A target whose p99 is this many times its tier's fastest or more
    /// gets no steady share, only probes; 0 (or anything up to 1) avoids
    /// none. Lower leaves a browned-out upstream sooner and takes more
    /// traffic from one merely slower.
    pub avoid_ratio: f64,
    /// At most one latency probe per avoided target this often: how soon a
    /// recovered upstream is noticed.
    pub probe_interval_ms: u64,
    /// And only after this many plans passed the target over, so probes
    /// stay under 1/gap of a busy node's traffic.
    pub probe_gap: u64,
    /// How fast this node's own samples lose weight against the shared
    /// figure: an own sample weighs half after this long. Shorter follows
    /// the other regions sooner when this one goes quiet.
    pub own_half_life_ms: u64,
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
            avoid_ratio: 3.0,
            probe_interval_ms: 1_000,
            probe_gap: 100,
            own_half_life_ms: 10_000,
        }
    }
}

impl HealthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let at = |f: &str| format!("health.{f}");
        for (field, value) in [
            ("report_interval_ms", self.report_interval_ms),
            ("window_slots", u64::from(self.window_slots)),
            ("slot_ms", self.slot_ms),
            ("breaker_failures", u64::from(self.breaker_failures)),
            ("ejection_ms", self.ejection_ms),
            ("probe_interval_ms", self.probe_interval_ms),
            ("probe_gap", self.probe_gap),
            ("own_half_life_ms", self.own_half_life_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(at(field), "must be greater than 0"));
            }
        }
        if self.window_slots > 3_600 {
            return Err(ConfigError::new(at("window_slots"), "must be at most 3600"));
        }
        let window = u64::from(self.window_slots).saturating_mul(self.slot_ms);
        if window > crate::health::MAX_WINDOW_MS {
            return Err(ConfigError::new(
                at("slot_ms"),
                format!(
                    "window_slots × slot_ms is {window} ms; a window is at most {} ms (1 h), \
                     or the other members refuse this node's reports",
                    crate::health::MAX_WINDOW_MS
                ),
            ));
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
            ("avoid_ratio", self.avoid_ratio),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::new(at(field), "must be a number of 0 or more"));
            }
        }
        Ok(())
    }
}

impl ProxyConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > 1024 {
            return Err(ConfigError::new("proxy.workers", "must be at most 1024"));
        }
        let positive = [
            ("proxy.request_timeout_ms", self.request_timeout_ms),
            ("proxy.first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("proxy.connect_timeout_ms", self.connect_timeout_ms),
            ("proxy.max_request_bytes", self.max_request_bytes as u64),
            ("proxy.max_response_bytes", self.max_response_bytes as u64),
            ("proxy.max_stream_ms", self.max_stream_ms),
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
