//! The cost model of `docs/cost-model.md`: bytes per second through the
//! leader and per follower, from the number of regions (one voter each),
//! the size of a health report (which grows with the upstreams), the
//! tenant shares, the report interval and the heartbeat. Pure arithmetic,
//! so the table in the docs and the check against a measured cluster come
//! from the same formulas.

/// What the model needs to know of a cluster.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Voters (regions).
    pub nodes: f64,
    /// Encoded bytes of one health report log entry.
    pub report_bytes: f64,
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
    /// Frame bytes of a message from the leader to a follower besides the
    /// entries it carries.
    pub call_bytes: f64,
    /// Frame bytes of a message from a follower to the leader besides the
    /// commands it forwards.
    pub answer_bytes: f64,
}

/// Bytes per second the model predicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Out of the leader, all followers together.
    pub leader_out: f64,
    /// Into the leader.
    pub leader_in: f64,
    /// Into one follower (from the leader).
    pub follower_in: f64,
    /// Out of one follower (to the leader).
    pub follower_out: f64,
    /// Of `leader_out`, the health reports' entries.
    pub leader_out_reports: f64,
    /// Of `leader_out`, the tenant shares' entries.
    pub leader_out_tenancy: f64,
}

impl Inputs {
    /// Writes committed per second: every node's health report and tenant
    /// share, once per interval each.
    pub fn writes_per_s(&self) -> f64 {
        self.nodes * (1.0 / self.interval_s + self.tenancy_rate())
    }

    /// Tenant shares per node per second.
    fn tenancy_rate(&self) -> f64 {
        if self.tenancy_bytes > 0.0 {
            1.0 / self.tenancy_interval_s
        } else {
            0.0
        }
    }

    /// Messages per second each way between the leader and one follower.
    pub fn messages_per_s(&self) -> f64 {
        self.calls_per_write * self.writes_per_s() + 1.0 / self.heartbeat_s
    }

    /// The model.
    pub fn predict(&self) -> Prediction {
        let n = self.nodes;
        let followers = (n - 1.0).max(0.0);
        // Every node's report and share reach every follower once...
        let own = self.report_bytes / self.interval_s + self.tenancy_bytes * self.tenancy_rate();
        let reports = n * self.report_bytes / self.interval_s;
        let tenancy = n * self.tenancy_bytes * self.tenancy_rate();
        let messages = self.messages_per_s();
        let follower_in = reports + tenancy + messages * self.call_bytes;
        // ...and each follower sends its own to the leader.
        let follower_out = own + messages * self.answer_bytes;
        Prediction {
            leader_out: followers * follower_in,
            leader_in: followers * follower_out,
            follower_in,
            follower_out,
            leader_out_reports: followers * reports,
            leader_out_tenancy: followers * tenancy,
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
    fn report_traffic_out_of_the_leader_grows_with_the_square_of_the_regions() {
        let three = inputs(3.0, 1000.0).predict();
        // 3 reports of 1000 B to each of 2 followers, every second.
        assert_eq!(three.leader_out, 6000.0);
        assert_eq!(three.leader_out_reports, 6000.0);
        assert_eq!(three.follower_in, 3000.0);
        let twenty = inputs(20.0, 1000.0).predict();
        assert_eq!(twenty.leader_out, 20.0 * 19.0 * 1000.0);
        // Twice the interval, half the traffic.
        let slow = Inputs {
            interval_s: 2.0,
            tenancy_interval_s: 2.0,
            ..inputs(20.0, 1000.0)
        };
        assert_eq!(slow.predict().leader_out, twenty.leader_out / 2.0);
    }

    #[test]
    fn messages_add_their_overhead() {
        let i = Inputs {
            tenancy_bytes: 100.0,
            calls_per_write: 2.0,
            call_bytes: 50.0,
            answer_bytes: 20.0,
            ..inputs(3.0, 1000.0)
        };
        // 6 writes/s: 12 messages/s and 2 heartbeats.
        assert_eq!(i.writes_per_s(), 6.0);
        assert_eq!(i.messages_per_s(), 14.0);
        let p = i.predict();
        assert_eq!(p.follower_in, 3000.0 + 300.0 + 14.0 * 50.0);
        assert_eq!(p.follower_out, 1100.0 + 14.0 * 20.0);
        assert_eq!(p.leader_in, 2.0 * p.follower_out);
        assert_eq!(p.leader_out_tenancy, 600.0);
    }
}
