//! A node's first start: bootstrap the cluster of its file, unless one
//! already runs there.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use proto::state::Member;
use raft::NodeId;
use raft::network::Network;
use raft::prevote::{AskError, PreVote, cluster_runs};
use raft::types::Raft;

use super::{ClusterError, RaftSettings};

/// How long a starting node waits for the members of its file to say
/// whether a cluster runs there.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bootstraps the cluster of `settings.voters` (or a cluster of one) on a
/// node with an empty store. Every bootstrapping member proposes the same
/// membership (Raft addresses only), so whichever is elected, the log
/// agrees. With a `network`, the other members are asked first: where a
/// cluster already runs (a node started before it was added, the runbook's
/// "other way round"), the node waits to be added instead, since
/// openraft's `initialize` campaigns at once and a node that raised its
/// term would depose the running cluster's leader when it is added.
pub(super) async fn initialize(
    raft: &Raft,
    id: NodeId,
    settings: &RaftSettings,
    network: Option<&Network>,
) -> Result<(), ClusterError> {
    let mut members: BTreeMap<NodeId, Member> = settings
        .voters
        .iter()
        .map(|v| {
            (
                v.id,
                Member {
                    raft_addr: v.raft_addr.to_string(),
                    ..Member::default()
                },
            )
        })
        .collect();
    if members.is_empty() {
        members.insert(
            id,
            Member {
                raft_addr: settings.listen.to_string(),
                ..Member::default()
            },
        );
    }
    if let Some(network) = network
        && cluster_runs_without_us(id, network, &members).await
    {
        tracing::info!(
            "a cluster already runs at the members of this file: waiting to be added \
             (meridian members add) instead of bootstrapping one"
        );
        return Ok(());
    }
    match raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(ClusterError::Raft(e.to_string())),
    }
}

/// Asks the other members of the file at once whether a cluster already
/// runs there (see [`cluster_runs`]). Members that are down or starting
/// count as "no": a cluster being created bootstraps as before.
async fn cluster_runs_without_us(
    id: NodeId,
    network: &Network,
    members: &BTreeMap<NodeId, Member>,
) -> bool {
    let mut asks = tokio::task::JoinSet::new();
    for (peer, member) in members.iter().filter(|(peer, _)| **peer != id) {
        let (network, peer, member) = (network.clone(), *peer, member.clone());
        asks.spawn(async move {
            tokio::time::timeout(
                PROBE_TIMEOUT,
                network.pre_vote(peer, &member, PreVote { last_log_id: None }),
            )
            .await
            .unwrap_or_else(|_| Err(AskError::Network("no answer".into())))
        });
    }
    cluster_runs(&asks.join_all().await)
}
