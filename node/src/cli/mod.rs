//! The operator commands of the `meridian` binary that talk to a running
//! node's admin API, or prepare files for one.

pub mod admin_client;
pub mod certs;
pub mod members;
