//! This node's place in the cluster: openraft over the sled store and the
//! QUIC transport, bootstrapping from the configuration's members, seeding
//! the replicated state from the configuration file once, and the write and
//! read paths the admin API uses (forwarded to the leader when this node is
//! a follower, acknowledged only after commit).
//!
//! Watching the Raft core itself (whether it still runs) is in `raft_core`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use proto::Config;
use proto::state::{Command, KeyRecord, Member, NodeInfo};
use raft::network::{Network, Transport};
use raft::store::Applied;
use raft::{NodeId, TypeConfig};
use tokio::sync::watch;

use crate::auth::KeyHash;
use standing::Standing;

mod bootstrap;
mod raft_core;
pub mod standing;
mod tuning;
mod write;

pub use tuning::RaftSettings;

/// How often a waiting write looks whether this node got cut off (the
/// standing itself is judged every 250 ms).
const CUT_OFF_POLL: Duration = Duration::from_millis(100);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Raft data directory could not be opened.
    #[error("cannot open the Raft store in {path}: {message}")]
    Store {
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
    /// The QUIC listener or TLS files could not be used.
    #[error("cannot start the Raft transport on {addr} (listen.raft): {message}")]
    Transport {
        /// Where.
        addr: String,
        /// Why.
        message: String,
    },
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a write or a consistent read did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No leader is known (an election is running, or there is no quorum).
    #[error("no leader is known; the cluster may be electing or without quorum")]
    NoLeader,
    /// The leader could not be reached or did not answer in time.
    #[error("the leader could not be reached: {0}")]
    Unreachable(String),
    /// A new member did not catch up with the log in time, so it was left a
    /// learner (check its address and certificate).
    #[error(
        "node {0} did not catch up within {1:?}; it stays a learner (check its address and that its certificate is signed by the cluster CA)"
    )]
    NotCaughtUp(NodeId, Duration),
    /// The leader could not get a quorum to acknowledge in time: too many
    /// voters are down or cut off. Nothing is lost; retry later.
    #[error("no quorum of voters acknowledged within {0:?}; too many may be down or cut off")]
    NoQuorum(Duration),
    /// A membership change sent to a follower: openraft changes membership
    /// on the leader only. Names the leader, and its admin API when known,
    /// so the operator (or a script) can ask it.
    #[error("membership changes are made on the leader: node {leader} at {where_}")]
    NotLeader {
        /// The leader's id.
        leader: NodeId,
        /// Its admin API if it announced one, else its Raft address.
        where_: String,
    },
    /// Raft failed the operation.
    #[error("raft: {0}")]
    Raft(String),
    /// This node has heard no quorum for longer than twice its bound
    /// (partitioned from the majority, or the majority is down; no election
    /// is under way): refused at once, as no leader would answer it.
    /// Nothing was proposed; retry, or write on a node of the majority.
    #[error(
        "this node has heard no quorum of voters for {} ms: nothing was proposed; retry, or write on another node",
        .0.as_millis()
    )]
    CutOff(Duration),
}

/// This node's cluster handle.
pub struct Cluster {
    /// This node's id.
    pub id: NodeId,
    /// The Raft handle.
    pub raft: Raft,
    network: Network,
    applied: watch::Receiver<Arc<Applied>>,
    transport: Option<Transport>,
    timeout: Duration,
    /// Where this node stands: a member heard, cut off, or removed.
    pub standing: Arc<Standing>,
    /// How long without a quorum before writes are refused at once
    /// ([`WriteError::CutOff`]): twice the standing's bound.
    refuse_writes_after: Duration,
}

impl Cluster {
    /// Opens the store, starts Raft and the transport, and bootstraps a new
    /// cluster from `cluster.members` (or a cluster of one). The health
    /// reports members send this node go to `health`.
    pub async fn start(
        settings: &RaftSettings,
        health: raft::network::HealthSink,
    ) -> Result<Arc<Self>, ClusterError> {
        let id = settings.id;
        let dir = settings.dir.clone();
        let path = dir.display().to_string();
        let store_error = |message: String| ClusterError::Store {
            path: path.clone(),
            message,
        };
        let (log, state_machine) = tokio::task::spawn_blocking(move || raft::store::open(&dir))
            .await
            .map_err(|e| store_error(e.to_string()))?
            .map_err(|e| store_error(e.to_string()))?;
        let applied = state_machine.subscribe();
        let log_tip = log.clone();

        let (network, transport) = match &settings.tls {
            Some(paths) => {
                let transport = Transport::bind(settings.listen, paths, settings.network.clone())
                    .map_err(|e| ClusterError::Transport {
                    addr: settings.listen.to_string(),
                    message: e.to_string(),
                })?;
                (transport.network(id), Some(transport))
            }
            None => (Network::standalone(id), None),
        };
        let raft = Raft::new(
            id,
            settings.config.clone(),
            network.clone(),
            log,
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if !initialized {
            bootstrap::initialize(&raft, id, settings, transport.as_ref().map(|_| &network))
                .await?;
        }
        // Peers are answered only once this node has a membership: the
        // transport takes the Raft protocol from non-members only while a
        // node has none (see `raft::network::rpc::check`), and a Meridian
        // node never has none once it serves.
        let timing = raft::prevote::campaign::Timing::of(&settings.config);
        if let Some(transport) = &transport {
            transport.serve(
                raft::prevote::Voter::new(
                    raft.clone(),
                    log_tip.clone(),
                    timing.lease,
                    settings.voters.iter().map(|v| v.id).collect(),
                )
                .with_health(health),
            );
        }
        // openraft's own election timer is off (`enable_elect = false`):
        // this task campaigns, after a pre-vote round.
        let stranger = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(raft::prevote::campaign::run(
            id,
            raft.clone(),
            network.clone(),
            log_tip,
            timing,
            stranger.clone(),
        ));
        let standing = Arc::new(Standing::default());
        tokio::spawn(standing::watch(
            id,
            raft.clone(),
            standing.clone(),
            stranger,
            settings.cut_off_after,
        ));
        Ok(Arc::new(Self {
            id,
            raft,
            network,
            applied,
            transport,
            timeout: settings.write_timeout,
            standing,
            refuse_writes_after: settings.cut_off_after * 2,
        }))
    }

    /// How long ago the member at `raft_addr` last answered this node.
    pub fn last_contact(&self, raft_addr: &str) -> Option<Duration> {
        self.network.last_contact(raft_addr)
    }

    /// The round trip to the member at `raft_addr`, as QUIC measures it.
    pub fn round_trip(&self, raft_addr: &str) -> Option<Duration> {
        self.network.round_trip(raft_addr)
    }

    /// Sends this node's health `report` to member `peer` at `member`,
    /// within `ttl`; `Err` says why it was not taken.
    pub async fn send_health(
        &self,
        peer: NodeId,
        member: &Member,
        report: proto::health::HealthReport,
        ttl: Duration,
    ) -> Result<(), String> {
        self.network.send_health(peer, member, report, ttl).await
    }

    /// The state as last applied on this node.
    pub fn applied(&self) -> Arc<Applied> {
        self.applied.borrow().clone()
    }

    /// Changes to the applied state, for the routing table to follow.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Applied>> {
        self.applied.clone()
    }

    /// The current leader, waiting up to the write timeout for one; at once
    /// [`WriteError::CutOff`] when this node has heard no quorum for long
    /// ([`Cluster::cut_off_long`]: no leader will answer it soon, so the
    /// caller is told to retry elsewhere or later rather than held).
    async fn leader(&self) -> Result<(NodeId, Member), WriteError> {
        // An isolated leader still names itself: the standing decides first.
        if let Some(silent) = self.cut_off_long() {
            return Err(WriteError::CutOff(silent));
        }
        let mut metrics = self.raft.metrics();
        let known = async {
            loop {
                let known = {
                    let m = metrics.borrow_and_update();
                    m.current_leader.and_then(|leader| {
                        m.membership_config
                            .membership()
                            .get_node(&leader)
                            .map(|n| (leader, n.clone()))
                    })
                };
                if let Some(found) = known {
                    return Ok(found);
                }
                if metrics.changed().await.is_err() {
                    return Err(WriteError::NoLeader);
                }
            }
        };
        tokio::select! {
            found = tokio::time::timeout(self.timeout, known) => {
                found.unwrap_or(Err(WriteError::NoLeader))
            }
            silent = self.cut_off() => Err(WriteError::CutOff(silent)),
        }
    }

    /// How long this node has heard no quorum, once that is past twice the
    /// standing's bound: long enough that no election is still under way (a
    /// lost leader is replaced within one bound, a failed first round within
    /// two), so waiting for a leader would only hold the caller.
    fn cut_off_long(&self) -> Option<Duration> {
        self.standing
            .cut_off()
            .filter(|silent| *silent > self.refuse_writes_after)
    }

    /// Resolves once [`Cluster::cut_off_long`] says so, with how long this
    /// node has heard no quorum.
    async fn cut_off(&self) -> Duration {
        loop {
            if let Some(silent) = self.cut_off_long() {
                return silent;
            }
            tokio::time::sleep(CUT_OFF_POLL).await;
        }
    }

    /// Resolves once this node knows a leader other than `leader`.
    async fn leader_moved(&self, leader: NodeId) {
        let mut metrics = self.raft.metrics();
        loop {
            let now = metrics.borrow_and_update().current_leader;
            if now.is_some_and(|now| now != leader) {
                return;
            }
            if metrics.changed().await.is_err() {
                // Raft stopped: the attempt itself fails.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Adds a node as a learner (it receives the log) and, if `voter`, then
    /// promotes it. Returns when the membership change is committed.
    pub async fn add_member(
        &self,
        id: NodeId,
        member: Member,
        voter: bool,
    ) -> Result<(), WriteError> {
        self.require_leader().await?;
        self.raft
            .add_learner(id, member, true)
            .await
            .map_err(|e| WriteError::Raft(e.to_string()))?;
        if voter {
            // openraft's blocking add returns at once while the log is shorter
            // than its lag threshold; a voter that cannot replicate (wrong
            // certificate, wrong address) would weaken the quorum, so promote
            // only once it holds the log.
            self.wait_caught_up(id).await?;
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|e| WriteError::Raft(e.to_string()))?;
        }
        Ok(())
    }

    async fn wait_caught_up(&self, id: NodeId) -> Result<(), WriteError> {
        let mut metrics = self.raft.metrics();
        let caught_up = async {
            loop {
                let done = {
                    let m = metrics.borrow_and_update();
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten())
                        .map(|l| l.index);
                    matched.is_some() && matched >= m.last_log_index
                };
                if done || metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(self.timeout, caught_up)
            .await
            .map_err(|_| WriteError::NotCaughtUp(id, self.timeout))
    }

    /// Removes a node from the cluster (voter or learner).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), WriteError> {
        self.require_leader().await?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let ids = BTreeSet::from([id]);
        let change = if membership.membership().voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| WriteError::Raft(e.to_string()))?;
        Ok(())
    }

    async fn require_leader(&self) -> Result<(), WriteError> {
        let (leader, member) = self.leader().await?;
        if leader == self.id {
            return Ok(());
        }
        let where_ = match self.applied().state.nodes.get(&leader) {
            Some(info) if !info.admin_addr.is_empty() => {
                format!("admin http://{}", info.admin_addr)
            }
            _ => format!("raft {}", member.raft_addr),
        };
        Err(WriteError::NotLeader { leader, where_ })
    }

    /// Seeds the replicated state from `seed` once a leader exists (only the
    /// leader proposes it, and the state applies it at most once), and
    /// announces this node's admin address and region. Runs until both are in.
    pub async fn settle(self: Arc<Self>, seed: Command, info: NodeInfo) {
        let mut applied = self.subscribe();
        loop {
            let state = applied.borrow_and_update().state.clone();
            let seeded = state.seeded;
            let announced = state.nodes.get(&self.id) == Some(&info);
            if seeded && announced {
                return;
            }
            let leader = self.raft.metrics().borrow().current_leader;
            if !seeded
                && leader == Some(self.id)
                && let Err(e) = self.write(seed.clone()).await
            {
                tracing::warn!(error = %e, "seeding the cluster state failed; will retry");
            }
            if !announced && leader.is_some() {
                let announce = Command::Announce {
                    id: self.id,
                    info: info.clone(),
                };
                if let Err(e) = self.write(announce).await {
                    tracing::debug!(error = %e, "announcing this node failed; will retry");
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), applied.changed()).await;
        }
    }

    /// Stops Raft and closes the transport.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        if let Some(transport) = &self.transport {
            transport.close().await;
        }
    }
}

/// The seed command for a configuration file: its upstreams, routes and
/// (hashed) client keys.
pub fn seed(config: &Config, keys: &[(String, KeyHash)]) -> Command {
    Command::Seed {
        upstreams: config.upstreams.clone(),
        routes: config.routes.clone(),
        keys: keys
            .iter()
            .map(|(name, hash)| KeyRecord {
                name: name.clone(),
                sha256: hex(hash),
                limits: config
                    .keys
                    .iter()
                    .find(|k| &k.name == name)
                    .and_then(|k| k.limits().ok())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// Lowercase hex of a key hash, as the replicated state stores it.
pub fn hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key hash from its lowercase hex form.
pub fn unhex(text: &str) -> Option<KeyHash> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_round_trip_through_hex() {
        let hash = crate::auth::hash_key("sk-test");
        let text = hex(&hash);
        assert_eq!(text.len(), 64);
        assert_eq!(unhex(&text), Some(hash));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}
