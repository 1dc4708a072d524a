//! How this node's Raft transport is tuned from the cluster's timeouts, so
//! a restarted peer is redialled before it would campaign.

use std::time::Duration;

use raft::network::NetworkSettings;

/// Transport settings for this cluster's timing. A peer restarted after a
/// crash campaigns if it hears no leader for 0.7 x the election timeout, so
/// the leader must redial it sooner than that: the redial backoff is capped
/// at a quarter of the election timeout rather than the transport's 5 s.
pub(super) fn network_settings(cluster: &proto::config::ClusterConfig) -> NetworkSettings {
    let defaults = NetworkSettings::default();
    let quarter = Duration::from_millis(cluster.election_timeout_ms / 4);
    // A dial begun while the peer was down (restarting) holds its slot until
    // it times out; quinn resends a lost first packet only after about a
    // second. Left at 2 s, a restarted peer hears nothing for longer than
    // its election wait (0.7-0.8 × the election timeout) and campaigns. A
    // quarter of the election timeout, but at least three heartbeats (the
    // heartbeat is above the round trip, and a handshake takes one or two).
    let connect = quarter
        .max(Duration::from_millis(3 * cluster.heartbeat_ms))
        .min(defaults.connect_timeout);
    NetworkSettings {
        connect_timeout: connect,
        backoff_max: quarter.clamp(defaults.backoff_min, defaults.backoff_max),
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn peers_are_redialled_before_a_restarted_one_would_campaign() {
        let with = |election_timeout_ms| {
            let cluster = proto::config::ClusterConfig {
                election_timeout_ms,
                ..Default::default()
            };
            network_settings(&cluster).backoff_max
        };
        assert_eq!(with(1_000), Duration::from_millis(250));
        assert_eq!(with(5_000), Duration::from_millis(1_250));
        assert_eq!(with(40_000), NetworkSettings::default().backoff_max);
        assert_eq!(with(200), NetworkSettings::default().backoff_min);
    }

    #[test]
    fn a_dial_to_a_restarting_peer_is_given_up_before_it_would_campaign() {
        let connect = |heartbeat_ms, election_timeout_ms| {
            let cluster = proto::config::ClusterConfig {
                heartbeat_ms,
                election_timeout_ms,
                ..Default::default()
            };
            network_settings(&cluster).connect_timeout
        };
        // The test timing: a quarter of 1 s is under three heartbeats.
        assert_eq!(connect(100, 1_000), Duration::from_millis(300));
        // The defaults: three heartbeats (more than a quarter of 5 s).
        assert_eq!(connect(500, 5_000), Duration::from_millis(1_500));
        assert_eq!(
            connect(500, 20_000),
            NetworkSettings::default().connect_timeout
        );
    }
}
