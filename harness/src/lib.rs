//! Starts real Meridian processes on loopback, for the node's integration
//! tests, the chaos runner, the benchmarks and the demo: one launcher
//! instead of four.
//!
//! # Layout
//!
//! - [`ports`]: free loopback TCP and UDP ports.
//! - [`certs`]: a cluster CA and node certificates via `raft::certs`.
//! - [`config`]: node configs built as [`proto::config::Config`] values and
//!   written with `toml` (never a template).
//! - [`bins`]: where the binaries are (a directory the caller passes; no
//!   one runs cargo).
//! - [`process`]: a `meridian serve` process: spawn, ready line, SIGTERM,
//!   kill -9, restart on the same config and data dir, log tail.
//! - [`mocks`]: `meridian-mock` as a separate process (for when one must be
//!   killed); in-process mocks come from [`mock::spawn`].
//! - [`admin`]: a typed admin client (cluster view, leader, readiness,
//!   upstreams, routes, members) over [`http`], a small HTTP client.

pub mod admin;
pub mod bins;
pub mod certs;
pub mod config;
mod error;
pub mod http;
pub mod mocks;
pub mod ports;
pub mod process;

pub use error::HarnessError;
