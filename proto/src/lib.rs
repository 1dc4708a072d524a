//! Types every Meridian crate shares: the node configuration today; the
//! routing table, Raft commands, health reports and the wire codec as the
//! cluster grows. Kept free of I/O so that every crate (and every test) can
//! parse and validate the same shapes the same way.

pub mod api;
pub mod calendar;
pub mod codec;
pub mod config;
pub mod error;
pub mod health;
pub mod state;
pub mod tenancy;

pub use config::{Config, ConfigError};
pub use error::FieldError;
