//! The Meridian node: an OpenAI-compatible router that sends each request to
//! the healthiest upstream of its route, failing over across tiers.
//!
//! The request path reads one immutable [`routing::RoutingSnapshot`] and
//! never waits on a lock; decisions ([`select`], [`proxy::failover`],
//! [`health::window`], [`health::breaker`], [`health::board`],
//! [`routing::hedge`]) are pure functions of their inputs so they are tested
//! without sockets or clocks.
//!
//! # Layout
//!
//! Start-up and settings:
//! - `main.rs`, `args.rs`: the `meridian` binary and its command line; the
//!   operator commands and the demo are the `meridian-cli` crate (`cli/`).
//! - [`settings`]: the config file validated once into what the node runs
//!   with (durations, workers, policy, recorder, limits, Raft tuning).
//! - [`node`]: starts everything in order and stops it; [`defaults`]: the
//!   embedded config of `meridian serve` without `--config`.
//!
//! The data plane (a request):
//! - [`server`]: TCP listeners, HTTP/1.1 and h2c, connection caps and timeouts.
//! - [`proxy`]: the request's edge (`mod.rs`), the pure failover machine
//!   (`failover.rs`), one attempt's I/O (`attempt.rs`), carrying out the
//!   machine's decisions (`route.rs`), and the finishing phase (`finish.rs`).
//! - [`auth`] (client keys; [`loopback`]: what a node open without
//!   credentials refuses from a browser), [`request_body`] (reading `model` and `stream`
//!   without re-serialising), [`select`] (which targets, in which order),
//!   [`upstream`] (connection pools), [`relay`] (streams, event by event),
//!   [`usage`] (tokens and cost), [`translate`] (Anthropic Messages ↔
//!   OpenAI chat, streams included), [`error`] (the data plane's errors and why
//!   an attempt failed), [`scrub`] (keys out of every answer and log line).
//! - [`routing`]: the snapshot the data plane reads, built from the applied
//!   cluster state (`build.rs`), rebuilt as Raft applies (`follow.rs`), with
//!   each route's hedge budget (`hedge.rs`) and where secrets come from
//!   (`secrets.rs`).
//! - [`capacity`]: upstreams' `max_concurrency` and the priority classes'
//!   reserved shares of it (and of `proxy.max_in_flight`): which targets a
//!   class may use now, its queue, and the requests shed.
//!
//! Health (a sample to a choice):
//! - [`health`]: windows, breakers and the recorder that owns them, each
//!   upstream's live state and the registry that keeps it across rebuilds,
//!   the cluster's board and the sharing through Raft, and the cooldowns
//!   a provider's `Retry-After` asks for (`health::cooldown`).
//! - [`log_line`]: the log line's timestamp, the text line's fields and
//!   the JSON line, written as tracing-subscriber's layouts with fewer
//!   formatting passes.
//! - [`metrics`]: the Prometheus counters, the recent failovers, and each
//!   priority class's success ratio and p99 against its objective
//!   ([`metrics::sla`]).
//! - [`telemetry`]: OpenTelemetry spans for each request and attempt, W3C
//!   trace context in and out, exported over OTLP/HTTP when configured.
//!
//! The cluster and operators:
//! - [`cluster`]: openraft over the sled store and the QUIC transport, writes
//!   and reads forwarded to the leader, the Raft core watched.
//! - [`admin`]: the admin API, `/metrics`, `/healthz`, `/readyz`, the dashboard.
//! - [`clock`]: the node's monotonic clock in milliseconds, one for every
//!   time window.
//! - [`catalogue`]: the leader fetches discovering upstreams' model lists
//!   and commits them (pure parse and schedule, the fetch, the task).
//!
//! docs/code-map.md draws both paths end to end across the crates.

pub mod admin;
pub mod auth;
pub mod capacity;
pub mod catalogue;
pub mod clock;
pub mod cluster;
pub mod defaults;
pub mod error;
pub mod health;
pub mod log_line;
pub mod loopback;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod relay;
pub mod request_body;
pub mod responses;
pub mod routing;
pub mod scrub;
pub mod select;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tenants;
pub mod translate;
pub mod upstream;
pub mod usage;
