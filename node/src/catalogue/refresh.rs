//! The task that keeps the catalogue fresh. It runs on every node and
//! fetches only while this node is the Raft leader, so one node asks each
//! provider, once per interval, however many regions there are; a new
//! leader fetches at once. A list that differs from the applied one is
//! committed; an unchanged one commits nothing (no log entry every ten
//! minutes), and a failed fetch commits nothing and logs a warning naming
//! the upstream (never its key: errors are scrubbed).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use proto::api::admin::CatalogueFetch;
use proto::config::UpstreamConfig;
use proto::state::{Command, CommandResponse};
use raft::store::Applied;
use tokio::sync::watch;
use tokio::time::Instant;

use super::fetch::{self, FetchError};
use super::schedule::Schedule;
use super::{Ledger, unix_ms};
use crate::cluster::Cluster;
use crate::routing::RoutingSnapshot;
use crate::server;

/// How soon an upstream not yet in the routing table is looked at again
/// (the table is rebuilt a moment after the state that added it applies).
const NOT_BUILT_RETRY: Duration = Duration::from_millis(250);

/// What the refresh task works with.
pub struct Refresh {
    /// This node's cluster handle: leadership, the applied state, writes.
    pub cluster: Arc<Cluster>,
    /// The routing table, whose upstreams hold the pools and key headers.
    pub snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    /// Where what this node saw is noted for the admin API.
    pub ledger: Arc<Ledger>,
    /// `[catalogue] refresh_ms`.
    pub refresh: Duration,
    /// `[catalogue] timeout_ms`.
    pub timeout: Duration,
}

/// What became of one due upstream.
enum Outcome {
    /// Fetched (or failed): due again a refresh later.
    Done,
    /// Not in this node's routing table as configured yet: look again soon.
    NotBuilt,
}

/// Runs until shutdown: notes every applied catalogue in the ledger and,
/// while this node leads, fetches each discovering upstream when it is due.
pub async fn run(refresh: Refresh, mut stop: watch::Receiver<bool>) {
    let mut applied = refresh.cluster.subscribe();
    let mut metrics = refresh.cluster.raft.metrics();
    let mut schedule = Schedule::new(refresh.refresh);
    let mut noted: Option<Arc<Applied>> = None;
    loop {
        let current = applied.borrow_and_update().clone();
        // Leadership metrics change with every heartbeat: note the
        // catalogue only when a new state was applied.
        if !noted.as_ref().is_some_and(|n| Arc::ptr_eq(n, &current)) {
            refresh
                .ledger
                .note_applied(&current.state.catalogue, unix_ms());
            noted = Some(current.clone());
        }
        let leader = metrics.borrow_and_update().current_leader == Some(refresh.cluster.id);
        let discovering = current
            .state
            .upstreams
            .values()
            .filter(|u| u.discover_models);
        let due: Vec<UpstreamConfig> = schedule
            .due(leader, discovering, Instant::now())
            .into_iter()
            .cloned()
            .collect();
        let mut retry_at = None;
        for upstream in due {
            let outcome = tokio::select! {
                outcome = refresh_one(&refresh, &upstream) => outcome,
                () = server::stopped(&mut stop) => return,
            };
            match outcome {
                Outcome::Done => schedule.fetched(&upstream, Instant::now()),
                Outcome::NotBuilt => retry_at = Some(Instant::now() + NOT_BUILT_RETRY),
            }
        }
        let wake = [schedule.next_due(), retry_at].into_iter().flatten().min();
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            changed = metrics.changed() => if changed.is_err() { return },
            () = sleep_until(wake) => {}
            () = server::stopped(&mut stop) => return,
        }
    }
}

/// Sleeps until `at`, or for ever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Fetches one upstream's list and commits it when it changed.
async fn refresh_one(refresh: &Refresh, upstream: &UpstreamConfig) -> Outcome {
    let snapshot = refresh.snapshot.load_full();
    let Some(built) = snapshot
        .upstreams
        .iter()
        .find(|u| u.id.as_ref() == upstream.id && u.config == *upstream)
    else {
        return Outcome::NotBuilt;
    };
    let id = upstream.id.as_str();
    let fetched = match fetch::fetch(built, &snapshot.scrub, refresh.timeout).await {
        Ok(fetched) => fetched,
        Err(FetchError::Unsupported) => {
            tracing::info!(
                upstream = id,
                "discover_models is set on an azure upstream, whose deployments cannot be \
                 listed; declare them in `models`"
            );
            return Outcome::Done;
        }
        Err(e) => {
            // Every variant's text is scrubbed where it was made; once more
            // here, so no future variant can carry a key out.
            let error = snapshot.scrub.message(&e.to_string());
            tracing::warn!(
                upstream = id,
                error = %error,
                "fetching the model list failed; the catalogue keeps what it held"
            );
            refresh.ledger.note_fetch(
                id,
                CatalogueFetch {
                    at_unix_ms: unix_ms(),
                    ok: false,
                    models: 0,
                    error: Some(error),
                },
            );
            return Outcome::Done;
        }
    };
    refresh.ledger.note_fetch(
        id,
        CatalogueFetch {
            at_unix_ms: unix_ms(),
            ok: true,
            models: fetched.models.len(),
            error: None,
        },
    );
    if fetched.skipped > 0 {
        tracing::info!(
            upstream = id,
            skipped = fetched.skipped,
            "the model list had entries without a usable id; they are left out"
        );
    }
    let held = refresh.cluster.applied();
    if held.state.catalogue.get(id) == Some(&fetched.models) {
        tracing::debug!(upstream = id, "model list unchanged");
        return Outcome::Done;
    }
    let models = fetched.models.len();
    let command = Command::PutCatalogue {
        upstream: id.to_owned(),
        models: fetched.models,
    };
    match refresh.cluster.write(command).await {
        Ok(CommandResponse::Applied { .. }) => {
            tracing::info!(upstream = id, models, "catalogue committed");
        }
        Ok(CommandResponse::Rejected(e)) => {
            tracing::warn!(upstream = id, field = %e.field, message = %e.message, "catalogue refused");
        }
        Err(e) => {
            tracing::warn!(upstream = id, error = %e, "catalogue not committed; the next refresh tries again");
        }
    }
    Outcome::Done
}
