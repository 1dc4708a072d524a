//! How this node's Raft core and transport are tuned from `[cluster]`'s
//! timeouts: openraft's election bounds, and a transport that redials a
//! restarted peer before it would campaign.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use proto::config::{ClusterConfig, Voter};
use proto::{Config, FieldError};
use raft::network::{NetworkSettings, TlsPaths};

/// This node's Raft as [`crate::settings::Settings`] builds it once from the
/// file: who it is, where it stores and listens, the voters it bootstraps
/// with, and how its core and transport are tuned. It lives with the
/// cluster, which is all that reads it, so the cluster needs nothing else
/// from the node's settings.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// This node's Raft id.
    pub id: u64,
    /// The store's directory: `node.data_dir/raft`.
    pub dir: PathBuf,
    /// The QUIC listener (`listen.raft`).
    pub listen: SocketAddr,
    /// The cluster CA and this node's identity; `None` runs alone.
    pub tls: Option<TlsPaths>,
    /// The initial voters of `cluster.members`, parsed, in file order.
    pub voters: Vec<Voter>,
    /// openraft's configuration, already validated by openraft.
    pub config: Arc<openraft::Config>,
    /// The QUIC transport's tuning for this cluster's timing.
    pub network: NetworkSettings,
    /// How long a write or a consistent read waits for a leader and a commit.
    pub write_timeout: Duration,
    /// How long without a quorum before this node says it is cut off
    /// (`/readyz`): one election timeout, by which a reachable majority
    /// has elected a leader that would be heard.
    pub cut_off_after: Duration,
}

impl RaftSettings {
    /// The Raft settings of a validated file; what openraft still refuses
    /// names its `cluster.*` field.
    pub fn new(config: &Config) -> Result<Self, FieldError> {
        let cluster = &config.cluster;
        Ok(Self {
            id: config.node.id,
            dir: config.node.data_dir.join("raft"),
            listen: config.listen.raft,
            tls: config.tls.as_ref().map(|tls| TlsPaths {
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            }),
            voters: cluster.voters()?,
            config: Arc::new(openraft_config(cluster)?),
            network: network_settings(cluster),
            write_timeout: write_timeout(cluster),
            cut_off_after: Duration::from_millis(cluster.election_timeout_ms),
        })
    }
}

/// openraft's configuration for this cluster's timing, validated by openraft.
fn openraft_config(c: &ClusterConfig) -> Result<openraft::Config, FieldError> {
    openraft::Config {
        cluster_name: "meridian".into(),
        heartbeat_interval: c.heartbeat_ms,
        // openraft 0.9 makes a follower wait its leader lease (equal to
        // election_timeout_max) plus a random election timeout in
        // [min, max] after the last heartbeat; these bounds make the
        // whole wait 0.7-0.8 x cluster.election_timeout_ms, leaving room
        // for a failed first round within the configured timeout's
        // double (measured: see README).
        election_timeout_min: c.election_timeout_ms * 3 / 10,
        election_timeout_max: c.election_timeout_ms * 2 / 5,
        install_snapshot_timeout: c.heartbeat_ms.max(1_000) * 4,
        // Elections are Meridian's, after a pre-vote (raft::prevote): a
        // node cut off from the leader must not raise its term on its own.
        enable_elect: false,
        // openraft 0.9 gives one AppendEntries call a heartbeat to finish.
        // A batch of a few hundred entries (health reports are kilobytes
        // each) cannot cross a lossy WAN link in that time, so a follower
        // that fell behind would retry the same large batch forever; small
        // batches finish, and a lagging follower catches up batch by batch.
        max_payload_entries: 16,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_logs),
        max_in_snapshot_log_to_keep: c.snapshot_logs.min(500),
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| FieldError::new("cluster", e.to_string()))
}

/// How long a write or a consistent read waits: four election timeouts, so
/// a lost leader is replaced (even after a failed first round) within it,
/// and never under 5 s.
fn write_timeout(c: &ClusterConfig) -> Duration {
    Duration::from_millis(c.election_timeout_ms * 4).max(Duration::from_secs(5))
}

/// Transport settings for this cluster's timing. A peer restarted after a
/// crash campaigns if it hears no leader for 0.7 x the election timeout, so
/// the leader must redial it sooner than that: the redial backoff is capped
/// at a quarter of the election timeout rather than the transport's 5 s.
fn network_settings(cluster: &ClusterConfig) -> NetworkSettings {
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
        // A link silent this long is dead; on a live lossy one something
        // (an acknowledgement, a late answer) arrives every round trip.
        dead_after: connect,
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
            let cluster = ClusterConfig {
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
            let cluster = ClusterConfig {
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
