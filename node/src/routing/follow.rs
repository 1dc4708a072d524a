//! Following the cluster: the routing table rebuilt each time the applied
//! upstreams, routes or keys change, and a way to wait until it has been.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use raft::store::Applied;
use tokio::sync::watch;

use super::{BuildError, LocalTrust, NodeSettings, RoutingSnapshot, Secrets};
use crate::server;
use crate::tenants::{self, Tenants};

/// The routing table for an applied state: the replicated upstreams, routes
/// and keys over this node's own settings, marked with the log index it was
/// built from.
pub fn build_applied(
    node: &NodeSettings,
    applied: &Applied,
    secrets: &dyn Secrets,
    previous: Option<&RoutingSnapshot>,
    trust: &LocalTrust,
) -> Result<RoutingSnapshot, BuildError> {
    let mut snapshot = RoutingSnapshot::from_state(&applied.state, node, secrets, previous, trust)?;
    snapshot.applied_index = applied.last_applied.map(|l| l.index);
    Ok(snapshot)
}

/// Logs every upstream `next` disables that `previous` did not disable for
/// the same reason, naming the upstream and the field to fix; and, once the
/// cluster's state is `seeded` here (before, no key has arrived yet), a
/// client key ring that refuses everyone.
pub fn log_disabled(next: &RoutingSnapshot, previous: Option<&RoutingSnapshot>, seeded: bool) {
    for upstream in &next.upstreams {
        let Some(disabled) = &upstream.disabled else {
            continue;
        };
        let known = previous.is_some_and(|p| {
            p.upstreams
                .iter()
                .any(|u| u.id == upstream.id && u.disabled.as_ref() == Some(disabled))
        });
        if !known {
            tracing::warn!(
                upstream = %upstream.id,
                field = disabled.field,
                "upstream skipped on this node: {} ({})",
                disabled.reason,
                disabled.field
            );
        }
    }
    let closed = |s: &RoutingSnapshot| s.keys.is_empty() && !s.keys.accepts_anyone();
    let was_closed = previous.is_some_and(|p| closed(p) && p.applied_index.is_some());
    if seeded && closed(next) && !was_closed {
        tracing::warn!(
            "no client key in the cluster and this node's API is not on loopback: every request \
             is refused (401) until a key is added"
        );
    }
}

/// What [`follow_applied`] builds each routing table with: this node's
/// settings, its trust and its secrets; and the keys' limits it brings up
/// to date before a new table is served.
pub struct Follow {
    /// This node's own settings.
    pub node: NodeSettings,
    /// What this node's own file allows upstreams to read.
    pub trust: Arc<LocalTrust>,
    /// Where provider keys are read.
    pub secrets: Arc<dyn Secrets + Send + Sync>,
    /// Rebuilt before each new table is swapped in, so no request is
    /// authenticated by a key whose limits and credits are not yet known
    /// here (it would go unlimited and uncharged).
    pub tenants: Arc<Tenants>,
}

/// Rebuilds the routing table every time the applied upstreams, routes or
/// keys change. Other applied entries (health reports every second,
/// announcements) only advance the index the table is known to be current at.
/// An upstream this node cannot use is disabled in the new table (and
/// logged), so the rest of the change is served at once.
pub async fn follow_applied(
    follow: Follow,
    mut built_from: Arc<Applied>,
    mut applied: watch::Receiver<Arc<Applied>>,
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    built: watch::Sender<Option<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            () = server::stopped(&mut stop) => return,
        }
        let current = applied.borrow_and_update().clone();
        let index = current.last_applied.map(|l| l.index);
        if !current.state.routing_differs(&built_from.state) {
            built.send_replace(index);
            continue;
        }
        let previous = snapshot.load_full();
        match build_applied(
            &follow.node,
            &current,
            follow.secrets.as_ref(),
            Some(&previous),
            &follow.trust,
        ) {
            Ok(next) => {
                log_disabled(&next, Some(&previous), current.state.seeded);
                tracing::info!(
                    applied = ?next.applied_index,
                    routes = next.routes.len(),
                    upstreams = next.upstreams.len(),
                    disabled = next.upstreams.iter().filter(|u| !u.usable()).count(),
                    "routing table updated"
                );
                follow.tenants.rebuild(current.clone(), tenants::now_ms());
                snapshot.store(Arc::new(next));
                built.send_replace(index);
                built_from = current;
            }
            Err(e) => {
                tracing::error!(error = %e, "the applied state cannot be served; keeping the previous routing table")
            }
        }
    }
}

/// Waits until the routing table has been rebuilt from a state at least as
/// recent as log `index` (`built` carries the index of each table as it is
/// swapped in); false after `timeout`.
pub async fn routing_built_at(
    built: &mut watch::Receiver<Option<u64>>,
    index: Option<u64>,
    timeout: Duration,
) -> bool {
    let reached = built.wait_for(|b| *b >= index);
    matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
