//! Network faults between the parts of a chaos cluster.
//!
//! Raft runs over QUIC (UDP), so every node gets a [`udp::UdpProxy`] in
//! front of its Raft port and `cluster.members` lists the proxies: every
//! packet between two nodes crosses exactly one proxy, which knows the
//! sender (by source address: a node sends everything from its one bound
//! socket) and the receiver, and asks the shared [`rules::LinkTable`] what
//! to do with it (deliver, delay, drop). Providers are reached over TCP
//! through a [`tcp::TcpProxy`] that can pass, blackhole or reset.

pub mod rules;
pub mod tcp;
pub mod udp;

pub use rules::{LinkEffect, LinkRule, LinkTable, Rules, Verdict};
pub use tcp::{TcpMode, TcpProxy};
pub use udp::UdpProxy;
