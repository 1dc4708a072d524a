//! What this node's Raft transport carried (`meridian_raft_bytes_*`,
//! `meridian_raft_messages_*`, `meridian_raft_entries_total`,
//! `meridian_raft_entry_bytes_total`) and the size of its last health
//! report (`meridian_health_report_bytes`): the figures the cost model
//! (`docs/cost-model.md`) is checked against. The transport counts into the
//! process's [`Traffic`] with atomics; a scrape only reads them.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use raft::network::traffic::{DIRECTIONS, ENTRY_KINDS};
use raft::network::{PeerTraffic, Traffic};

use super::{counter, gauge};

/// The encoded size of the last health report this node wrote to the log.
#[derive(Debug, Default)]
pub struct ReportSize(AtomicU64);

impl ReportSize {
    /// Records a report of `bytes` (its command's encoded length).
    pub fn set(&self, bytes: usize) {
        self.0.store(bytes as u64, Ordering::Relaxed);
    }

    /// The last size recorded; 0 before the first report.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Writes the transport's counters and the report size.
pub(super) fn encode(
    traffic: &Traffic,
    report: &ReportSize,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let peers = traffic.peers();
    let per_peer = [
        (
            "meridian_raft_bytes_sent",
            "Raft frame bytes (requests and answers, before QUIC's own overhead) this node sent, by peer node id",
            true,
            0,
        ),
        (
            "meridian_raft_bytes_received",
            "Raft frame bytes this node received, by peer node id",
            true,
            1,
        ),
        (
            "meridian_raft_messages_sent",
            "Raft frames (one per request or answer) this node sent, by peer node id",
            false,
            0,
        ),
        (
            "meridian_raft_messages_received",
            "Raft frames this node received, by peer node id",
            false,
            1,
        ),
    ];
    for (name, help, bytes, direction) in per_peer {
        // No unit suffix: "bytes" is in the name, before the direction.
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (id, p) in &peers {
            let id = id.to_string();
            counter(&mut m, &[("peer", &id)], value(p, bytes, direction))?;
        }
    }

    for (name, help, bytes) in [
        (
            "meridian_raft_entries",
            "Log entries (in AppendEntries) and forwarded writes this node sent or received, by kind",
            false,
        ),
        (
            "meridian_raft_entry_bytes",
            "Encoded bytes of those entries and writes (within meridian_raft_bytes_*), by kind",
            true,
        ),
    ] {
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (direction, label) in DIRECTIONS.iter().enumerate() {
            for (kind, kind_label) in ENTRY_KINDS.iter().enumerate() {
                let n = if bytes {
                    traffic.entry_bytes(direction, kind)
                } else {
                    traffic.entries(direction, kind)
                };
                counter(&mut m, &[("direction", label), ("kind", kind_label)], n)?;
            }
        }
    }

    let mut m = encoder.encode_descriptor(
        "meridian_health_report",
        "Encoded size of the last health report this node wrote to the Raft log",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    gauge(&mut m, &[], report.get() as i64)
}

fn value(p: &PeerTraffic, bytes: bool, direction: usize) -> u64 {
    if bytes {
        p.bytes(direction)
    } else {
        p.messages(direction)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[derive(Debug)]
    struct C(Traffic, ReportSize);

    impl prometheus_client::collector::Collector for C {
        fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            encode(&self.0, &self.1, &mut e)
        }
    }

    #[test]
    fn the_transport_counters_are_named_per_peer_and_kind() {
        let traffic = Traffic::default();
        traffic.peer(2).sent(300);
        traffic.peer(2).received(40);
        traffic.peer(3).sent(7);
        traffic.tally(
            1,
            &raft::network::RaftRequest::Forward(proto::state::Command::DeleteKey {
                name: "k".into(),
            }),
        );
        let report = ReportSize::default();
        report.set(1234);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(C(traffic, report)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "meridian_raft_bytes_sent_total{peer=\"2\"} 300",
            "meridian_raft_bytes_sent_total{peer=\"3\"} 7",
            "meridian_raft_bytes_received_total{peer=\"2\"} 40",
            "meridian_raft_messages_sent_total{peer=\"2\"} 1",
            "meridian_raft_entries_total{direction=\"received\",kind=\"config\"} 1",
            "meridian_raft_entries_total{direction=\"sent\",kind=\"report\"} 0",
            "meridian_health_report_bytes 1234",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
