//! The openraft type configuration every part of the cluster shares.

use proto::state::{Command, CommandResponse, Member};

/// A node's Raft id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Meridian's Raft types: log entries carry [`Command`]s, applying one
    /// answers a [`CommandResponse`], and members are [`Member`]s.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// The Raft handle of a Meridian node.
pub type Raft = openraft::Raft<TypeConfig>;
