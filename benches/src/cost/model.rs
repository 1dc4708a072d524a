//! The cost model of `docs/cost-model.md`: bytes per second out of and into
//! the leader and each follower, from the number of regions (one voter
//! each), the size of a health report (which grows with the upstreams), the
//! tenant shares, the report interval and the heartbeat. Health reports go
//! straight from each member to every other (no leader in between); tenant
//! shares and configuration go through the Raft log, so the leader sends
//! each to every follower. Pure arithmetic, so the table in the docs and
//! the check against a measured cluster come from the same formulas.

/// What the model needs to know of a cluster.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Voters (regions).
    pub nodes: f64,
    /// Encoded bytes of one health report as sent to one member.
    pub report_bytes: f64,
    /// Frame bytes of one member's answer to a report, and the request's
    /// frame besides the report.
    pub report_overhead: f64,
    /// Encoded bytes of one tenant-share log entry (0: no tenants).
    pub tenancy_bytes: f64,
    /// Seconds between two health reports of a node.
    pub interval_s: f64,
    /// Seconds between two tenant shares of a node (while it has demand).
    pub tenancy_interval_s: f64,
    /// Seconds between two heartbeats of an idle leader.
    pub heartbeat_s: f64,
    /// Messages from the leader to one follower per committed write,
    /// besides heartbeats (the call carrying the entry, the one carrying
    /// the new commit index, the answer to the follower's own forwarded
    /// write; batching lowers it). Calibrated by `meridian-cost`.
    pub calls_per_write: f64,
    /// Frame bytes of a Raft message from the leader to a follower besides
    /// the entries it carries.
    pub call_bytes: f64,
    /// Frame bytes of a Raft message from a follower to the leader besides
    /// the commands it forwards.
    pub answer_bytes: f64,
}

/// Bytes per second the model predicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Out of the leader, to all followers together.
    pub leader_out: f64,
    /// Into the leader.
    pub leader_in: f64,
    /// Into one follower (from the leader and every other member).
    pub follower_in: f64,
    /// Out of one follower.
    pub follower_out: f64,
    /// Of what any node sends, its own health reports to every other
    /// member (the same on every node, the leader included).
    pub node_out_reports: f64,
    /// Of `leader_out`, the tenant shares' entries.
    pub leader_out_tenancy: f64,
}

impl Inputs {
    /// Writes committed per second: every node's tenant share, once per
    /// interval (health reports are not written to the log).
    pub fn writes_per_s(&self) -> f64 {
        self.nodes * self.tenancy_rate()
    }

    /// Tenant shares per node per second.
    fn tenancy_rate(&self) -> f64 {
        if self.tenancy_bytes > 0.0 {
            1.0 / self.tenancy_interval_s
        } else {
            0.0
        }
    }

    /// Raft messages per second each way between the leader and one
    /// follower.
    pub fn messages_per_s(&self) -> f64 {
        self.calls_per_write * self.writes_per_s() + 1.0 / self.heartbeat_s
    }

    /// The model.
    pub fn predict(&self) -> Prediction {
        let n = self.nodes;
        let others = (n - 1.0).max(0.0);
        // Each node sends its report to, and takes one from, every other
        // member; the overhead (the frame and the answer) both ways.
        let reports = others * (self.report_bytes + self.report_overhead) / self.interval_s;
        // The log: every node's share reaches every follower once, from
        // the leader; each follower sends its own to the leader.
        let own_share = self.tenancy_bytes * self.tenancy_rate();
        let tenancy = n * own_share;
        let messages = self.messages_per_s();
        let raft_in = tenancy + messages * self.call_bytes;
        let raft_out = own_share + messages * self.answer_bytes;
        Prediction {
            leader_out: reports + others * raft_in,
            leader_in: reports + others * raft_out,
            follower_in: reports + raft_in,
            follower_out: reports + raft_out,
            node_out_reports: reports,
            leader_out_tenancy: others * tenancy,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn inputs(nodes: f64, report_bytes: f64) -> Inputs {
        Inputs {
            nodes,
            report_bytes,
            report_overhead: 0.0,
            tenancy_bytes: 0.0,
            interval_s: 1.0,
            tenancy_interval_s: 1.0,
            heartbeat_s: 0.5,
            calls_per_write: 0.0,
            call_bytes: 0.0,
            answer_bytes: 0.0,
        }
    }

    #[test]
    fn report_traffic_grows_with_the_regions_on_every_node_alike() {
        let three = inputs(3.0, 1000.0).predict();
        // Each node sends its 1000 B report to 2 others, and takes theirs.
        assert_eq!(three.leader_out, 2000.0);
        assert_eq!(three.node_out_reports, 2000.0);
        assert_eq!(three.follower_in, 2000.0);
        assert_eq!(
            three.follower_out, three.leader_out,
            "the leader carries no one's reports"
        );
        // Linear in the regions, not their square (in the log it was
        // 20 × 19 × 1000 out of the leader).
        let twenty = inputs(20.0, 1000.0).predict();
        assert_eq!(twenty.leader_out, 19.0 * 1000.0);
        // Twice the interval, half the traffic.
        let slow = Inputs {
            interval_s: 2.0,
            tenancy_interval_s: 2.0,
            ..inputs(20.0, 1000.0)
        };
        assert_eq!(slow.predict().leader_out, twenty.leader_out / 2.0);
    }

    #[test]
    fn tenant_shares_go_through_the_leader_and_messages_add_their_overhead() {
        let i = Inputs {
            tenancy_bytes: 100.0,
            report_overhead: 10.0,
            calls_per_write: 2.0,
            call_bytes: 50.0,
            answer_bytes: 20.0,
            ..inputs(3.0, 1000.0)
        };
        // 3 shares/s: 6 messages/s and 2 heartbeats.
        assert_eq!(i.writes_per_s(), 3.0);
        assert_eq!(i.messages_per_s(), 8.0);
        let p = i.predict();
        let reports = 2.0 * 1010.0;
        assert_eq!(p.follower_in, reports + 300.0 + 8.0 * 50.0);
        assert_eq!(p.follower_out, reports + 100.0 + 8.0 * 20.0);
        assert_eq!(p.leader_out, reports + 2.0 * (300.0 + 8.0 * 50.0));
        assert_eq!(p.leader_in, reports + 2.0 * (100.0 + 8.0 * 20.0));
        assert_eq!(p.leader_out_tenancy, 600.0);
    }
}
