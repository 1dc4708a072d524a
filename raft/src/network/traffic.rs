//! What the transport carries, counted: bytes and messages per peer and
//! direction, and the log entries (and forwarded writes) by kind, so that an
//! operator sees which writes fill the links between regions and the cost
//! model (`docs/cost-model.md`) can be checked against a running cluster.
//!
//! Bytes are frame bytes (length prefix, version byte and body), what Meridian
//! hands to QUIC; QUIC, TLS, UDP and IP add their headers, acknowledgements
//! and keep-alives on top. A request counts as sent by the caller and
//! received by the callee, its response the other way, both under the other
//! node's id: on the leader, "sent to 2" is mostly AppendEntries to node 2.
//!
//! The counting is atomics only. The per-peer counters are looked up once
//! per openraft client (it keeps one per peer) and once per served
//! connection, so the replication path takes no lock; only forwarded writes,
//! reads and pre-votes look their peer up per call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use openraft::EntryPayload;
use proto::state::Command;

use super::rpc::RaftRequest;
use crate::types::{NodeId, TypeConfig};

/// The kinds of log entries and forwarded writes counted, as labelled.
pub const ENTRY_KINDS: [&str; 8] = [
    "report",
    "tenancy",
    "config",
    "announce",
    "catalogue",
    "credits",
    "membership",
    "blank",
];

/// The kind (its place in [`ENTRY_KINDS`]) of a command: health reports,
/// tenant shares and configuration are the three a cost model separates.
pub fn command_kind(command: &Command) -> usize {
    match command {
        Command::Report { .. } => 0,
        Command::Tenancy { .. } => 1,
        Command::Seed { .. }
        | Command::PutUpstream(_)
        | Command::DeleteUpstream { .. }
        | Command::PutRoute(_)
        | Command::DeleteRoute { .. }
        | Command::PutKey(_)
        | Command::DeleteKey { .. } => 2,
        Command::Announce { .. } => 3,
        Command::PutCatalogue { .. } => 4,
        Command::AddCredits { .. } => 5,
    }
}

/// Which way a message went, as labelled.
pub const DIRECTIONS: [&str; 2] = ["sent", "received"];

/// One peer's counters, from this node's side.
#[derive(Debug, Default)]
pub struct PeerTraffic {
    bytes: [AtomicU64; 2],
    messages: [AtomicU64; 2],
}

impl PeerTraffic {
    /// Counts one frame of `bytes` sent to the peer.
    pub fn sent(&self, bytes: usize) {
        self.count(0, bytes);
    }

    /// Counts one frame of `bytes` received from the peer.
    pub fn received(&self, bytes: usize) {
        self.count(1, bytes);
    }

    fn count(&self, direction: usize, bytes: usize) {
        if let (Some(b), Some(m)) = (self.bytes.get(direction), self.messages.get(direction)) {
            b.fetch_add(bytes as u64, Ordering::Relaxed);
            m.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frame bytes in `direction` (its place in [`DIRECTIONS`]).
    pub fn bytes(&self, direction: usize) -> u64 {
        self.bytes
            .get(direction)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Frames in `direction` (its place in [`DIRECTIONS`]).
    pub fn messages(&self, direction: usize) -> u64 {
        self.messages
            .get(direction)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

/// Entries of one kind carried in one direction: how many, and their bytes.
#[derive(Debug, Default)]
struct KindCount {
    entries: AtomicU64,
    bytes: AtomicU64,
}

/// Everything one transport counted. Shared by its client and server sides.
#[derive(Debug, Default)]
pub struct Traffic {
    peers: Mutex<BTreeMap<NodeId, Arc<PeerTraffic>>>,
    /// By direction, then by kind (the place in [`ENTRY_KINDS`]).
    kinds: [[KindCount; ENTRY_KINDS.len()]; 2],
}

/// The traffic every transport of this process counts into unless its
/// settings name another (`NetworkSettings::traffic`): what `/metrics` shows.
static PROCESS: LazyLock<Arc<Traffic>> = LazyLock::new(Arc::default);

impl Traffic {
    /// This process's traffic (a node has one transport).
    pub fn process() -> Arc<Traffic> {
        PROCESS.clone()
    }

    /// The counters of peer `id`, made on first use. Takes a lock: look a
    /// peer up once and keep the handle.
    pub fn peer(&self, id: NodeId) -> Arc<PeerTraffic> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_default()
            .clone()
    }

    /// Every peer counted so far, by id.
    pub fn peers(&self) -> Vec<(NodeId, Arc<PeerTraffic>)> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, p)| (*id, p.clone()))
            .collect()
    }

    /// Tallies the log entries or forwarded write `request` carries, sent
    /// (`direction` 0) or received (1). Other requests carry none.
    pub fn tally(&self, direction: usize, request: &RaftRequest) {
        match request {
            RaftRequest::AppendEntries(rpc) => {
                for entry in &rpc.entries {
                    let kind = match &entry.payload {
                        EntryPayload::Normal(command) => command_kind(command),
                        EntryPayload::Membership(_) => 6,
                        EntryPayload::Blank => 7,
                    };
                    let bytes = proto::codec::encoded_len::<openraft::Entry<TypeConfig>>(entry)
                        .unwrap_or(0);
                    self.add(direction, kind, bytes);
                }
            }
            RaftRequest::Forward(command) => {
                let bytes = proto::codec::encoded_len(command).unwrap_or(0);
                self.add(direction, command_kind(command), bytes);
            }
            // Sent straight to a member, not in the log: still a report.
            RaftRequest::Health(report) => {
                let bytes = proto::codec::encoded_len(report).unwrap_or(0);
                self.add(direction, 0, bytes);
            }
            _ => {}
        }
    }

    fn add(&self, direction: usize, kind: usize, bytes: usize) {
        if let Some(k) = self.kinds.get(direction).and_then(|d| d.get(kind)) {
            k.entries.fetch_add(1, Ordering::Relaxed);
            k.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Entries (and forwarded writes) of `kind` counted in `direction`.
    pub fn entries(&self, direction: usize, kind: usize) -> u64 {
        self.kind(direction, kind)
            .map_or(0, |k| k.entries.load(Ordering::Relaxed))
    }

    /// Their encoded bytes (within the frames counted per peer).
    pub fn entry_bytes(&self, direction: usize, kind: usize) -> u64 {
        self.kind(direction, kind)
            .map_or(0, |k| k.bytes.load(Ordering::Relaxed))
    }

    fn kind(&self, direction: usize, kind: usize) -> Option<&KindCount> {
        self.kinds.get(direction).and_then(|d| d.get(kind))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, Entry, LogId, Vote};
    use proto::health::HealthReport;

    use super::*;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    fn report() -> Command {
        Command::Report {
            id: 2,
            report: HealthReport {
                seq: 7,
                region: "eu".into(),
                ..HealthReport::default()
            },
        }
    }

    #[test]
    fn frames_count_per_peer_and_direction() {
        let traffic = Traffic::default();
        let two = traffic.peer(2);
        two.sent(100);
        two.sent(50);
        two.received(10);
        traffic.peer(3).received(7);
        // The handle is shared: a second lookup counts into the same one.
        traffic.peer(2).sent(1);
        let peers = traffic.peers();
        assert_eq!(peers.len(), 2);
        let (id, p) = &peers[0];
        assert_eq!(*id, 2);
        assert_eq!((p.bytes(0), p.messages(0)), (151, 3));
        assert_eq!((p.bytes(1), p.messages(1)), (10, 1));
        let (id, p) = &peers[1];
        assert_eq!(*id, 3);
        assert_eq!((p.bytes(0), p.bytes(1), p.messages(1)), (0, 7, 1));
    }

    #[test]
    fn entries_are_tallied_by_kind_with_their_encoded_size() {
        let traffic = Traffic::default();
        let entries = vec![
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Normal(report())),
            entry(3, EntryPayload::Normal(report())),
            entry(
                4,
                EntryPayload::Normal(Command::DeleteRoute { model: "m".into() }),
            ),
        ];
        let one_report = proto::codec::encoded_len(&entries[1]).unwrap() as u64;
        let request = RaftRequest::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        });
        traffic.tally(0, &request);
        assert_eq!(traffic.entries(0, 0), 2);
        assert_eq!(traffic.entry_bytes(0, 0), 2 * one_report);
        assert!(one_report > 10);
        assert_eq!(traffic.entries(0, 2), 1);
        assert_eq!(traffic.entries(0, 7), 1);
        assert_eq!(traffic.entries(1, 0), 0);

        // A forwarded write counts as its command.
        traffic.tally(1, &RaftRequest::Forward(report()));
        assert_eq!(traffic.entries(1, 0), 1);
        assert_eq!(
            traffic.entry_bytes(1, 0),
            proto::codec::encoded_len(&report()).unwrap() as u64
        );
        // A heartbeat or vote carries none.
        traffic.tally(1, &RaftRequest::ReadIndex);
        assert_eq!(traffic.entries(1, 0), 1);
    }

    #[test]
    fn every_command_has_a_kind_label() {
        let kinds = [
            report(),
            Command::Tenancy {
                id: 1,
                report: Default::default(),
            },
            Command::DeleteKey { name: "k".into() },
            Command::Announce {
                id: 1,
                info: Default::default(),
            },
            Command::PutCatalogue {
                upstream: "u".into(),
                models: vec![],
            },
            Command::AddCredits {
                key: "k".into(),
                id: "t".into(),
                nanos: 1,
            },
        ]
        .iter()
        .map(command_kind)
        .collect::<Vec<_>>();
        assert_eq!(kinds, vec![0, 1, 2, 3, 4, 5]);
        assert!(kinds.iter().all(|k| *k < ENTRY_KINDS.len()));
    }
}
