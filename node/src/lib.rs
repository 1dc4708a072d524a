//! The Meridian node: an OpenAI-compatible router that sends each request to
//! the healthiest upstream of its route, failing over across tiers.
//!
//! The request path reads one immutable [`routing::RoutingSnapshot`] and
//! never waits on a lock; decisions ([`select`], [`health::Windows`],
//! [`health::breaker`], [`health::board`], [`hedge`]) are pure functions of
//! their inputs so they are tested without sockets or clocks.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod defaults;
pub mod error;
pub mod health;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod relay;
pub mod request_body;
pub mod routing;
pub mod scrub;
pub mod select;
pub mod server;
pub mod settings;
pub mod upstream;
pub mod usage;
