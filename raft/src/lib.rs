//! Meridian's consensus layer: the replicated [`proto::state::ClusterState`]
//! kept by openraft 0.9 (v2 storage traits) over a sled log and state
//! machine, with peers talking Raft over QUIC under mutual TLS.

pub mod certs;
pub mod network;
pub mod prevote;
pub mod store;
pub mod types;

pub use types::{NodeId, TypeConfig};
