//! The replicated state machine: openraft's [`RaftStateMachine`] over the
//! `sm` tree, applying committed [`Command`](proto::state::Command)s to a
//! [`ClusterState`] and publishing every new state to the node.
//!
//! The applied state is durable at snapshots only, openraft 0.9's own
//! pattern for the v2 storage: applying a batch changes the state in memory
//! and publishes it, nothing more; building or installing a snapshot writes
//! it, with its last applied log id, and flushes it. On start the store
//! loads the last snapshot and reports its last applied id, and openraft
//! re-applies the committed entries after it from the log (which is flushed
//! before an entry counts as accepted, and is never purged past the last
//! snapshot) up to the committed mark, which is flushed before a batch is
//! acknowledged: a restarted node comes back with every change it applied.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StoredMembership,
};
use proto::state::{ClusterState, CommandResponse, Member};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use tokio::sync::watch;

use super::error::to_storage;
use super::{StoreError, codec, flush, read_value};
use crate::{NodeId, TypeConfig};

/// Key of the applied state as builds before this one wrote it after every
/// batch. Still read, so a data dir from such a build starts from it if it
/// is newer than its snapshot (the log after it is kept), and removed with
/// the next snapshot written.
const LEGACY_APPLIED: &[u8] = b"applied";
/// Key of the current snapshot (metadata and data).
const SNAPSHOT: &[u8] = b"snapshot";

/// Everything the state machine has applied: what the node builds its
/// routing from, and exactly what a snapshot carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The cluster state after the last applied entry.
    pub state: ClusterState,
    /// The last log entry applied, `None` before the first.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied, with the id of its log entry.
    pub membership: StoredMembership<NodeId, Member>,
}

/// A snapshot as the `sm` tree keeps it.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    /// The encoded [`Applied`], byte for byte what was built or received.
    data: Vec<u8>,
}

impl From<StoredSnapshot> for Snapshot<TypeConfig> {
    fn from(s: StoredSnapshot) -> Self {
        Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }
    }
}

/// The state-machine half of the store.
///
/// The applied state lives in memory behind a watch channel (the node
/// subscribes to it); on disk, the `sm` tree holds the last snapshot, which
/// is the state the store comes back with (see the module's comment).
pub struct StateMachineStore {
    sm: sled::Tree,
    applied: watch::Sender<Arc<Applied>>,
    /// Numbers built snapshots, so two built at the same log id differ in id.
    built: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Loads the state of the last snapshot (or, in a data dir of an older
    /// build, the applied state it kept, if newer): openraft re-applies the
    /// committed entries after it.
    pub(super) fn load(sm: sled::Tree) -> Result<Self, StoreError> {
        let snapshot = match read_value::<StoredSnapshot>(&sm, SNAPSHOT)? {
            Some(stored) => codec::decode_value::<Applied>(&stored.data)?,
            None => Applied::default(),
        };
        let applied = match read_value::<Applied>(&sm, LEGACY_APPLIED)? {
            Some(legacy) if legacy.last_applied > snapshot.last_applied => legacy,
            _ => snapshot,
        };
        Ok(Self {
            sm,
            applied: watch::Sender::new(Arc::new(applied)),
            built: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A receiver that sees the applied state after every applied batch and
    /// every installed snapshot, so the node can rebuild its routing
    /// snapshot whenever the cluster state changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Applied>> {
        self.applied.subscribe()
    }

    /// The applied state right now, without copying it.
    pub fn current(&self) -> Arc<Applied> {
        self.applied.borrow().clone()
    }

    async fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        let applied: Applied = codec::decode_value(&data)?;
        if applied.last_applied != meta.last_log_id || applied.membership != meta.last_membership {
            return Err(StoreError::SnapshotMismatch {
                data: format!("{:?} / {}", applied.last_applied, applied.membership),
                meta: format!("{:?} / {}", meta.last_log_id, meta.last_membership),
            });
        }
        let mut batch = sled::Batch::default();
        batch.remove(LEGACY_APPLIED);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        batch.insert(SNAPSHOT, codec::encode_value(&stored)?);
        self.sm.apply_batch(batch)?;
        flush(&self.sm).await?;
        self.applied.send_replace(Arc::new(applied));
        Ok(())
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        Ok(read_value::<StoredSnapshot>(&self.sm, SNAPSHOT)?.map(Snapshot::from))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let applied = self.current();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    /// Applies a batch of committed entries in order: commands go through
    /// [`ClusterState::apply`], membership entries are recorded, and blank
    /// and membership entries answer `Applied { changed: false }`. The new
    /// state is published once per batch, with its last applied id, and not
    /// written: the entries are in the flushed log, and a restart re-applies
    /// them after the last snapshot. What is flushed per batch is only the
    /// committed mark openraft saved before it (a few bytes).
    ///
    /// The batch works on one copy of the state: the node's readers hold on
    /// to the states they were given (to tell what changed), so it cannot be
    /// changed in place.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut next = Applied::clone(&self.current());
        let mut responses = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => CommandResponse::Applied { changed: false },
                EntryPayload::Normal(command) => next.state.apply(&command),
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::Applied { changed: false }
                }
            });
        }
        let Some(last) = next.last_applied.filter(|_| !responses.is_empty()) else {
            return Ok(responses);
        };
        // openraft saved the committed mark (unflushed) just before this
        // batch; flushing it before anyone hears of the batch means a
        // restart re-applies at least every entry acknowledged to a client.
        // A leader that restarts in its own term serves read-index reads
        // from that mark (openraft 0.9 appends no new blank then), so a mark
        // behind an acknowledged write would serve reads without it.
        flush(&self.sm)
            .await
            .map_err(to_storage(ErrorSubject::Apply(last), ErrorVerb::Write))?;
        self.applied.send_replace(Arc::new(next));
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applied: self.current(),
            sm: self.sm.clone(),
            built: self.built.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Keeps the snapshot as the current one, flushed, and then replaces
    /// the applied state with the snapshot's, so a restart after this comes
    /// back with the installed state.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.install(meta, snapshot.into_inner())
            .await
            .map_err(to_storage(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            ))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current_snapshot()
            .map_err(to_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// Builds a snapshot of the state as it was when openraft asked for the
/// builder; openraft runs it in the background while applying goes on.
pub struct SnapshotBuilder {
    applied: Arc<Applied>,
    sm: sled::Tree,
    built: Arc<AtomicU64>,
}

impl SnapshotBuilder {
    async fn build(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let n = self.built.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let snapshot_id = match self.applied.last_applied {
            Some(id) => format!("{}-{}-{n}", id.leader_id.term, id.index),
            None => format!("--{n}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.applied.last_applied,
                last_membership: self.applied.membership.clone(),
                snapshot_id,
            },
            data: codec::encode_value(&*self.applied)?,
        };
        let bytes = codec::encode_value(&stored)?;
        // An install may have landed while this was being built; never let
        // an older snapshot replace a newer one.
        self.sm.transaction(|tx| {
            if let Some(current) = tx.get(SNAPSHOT)? {
                let current: StoredSnapshot = codec::decode_value(&current)
                    .map_err(|e| ConflictableTransactionError::Abort(StoreError::from(e)))?;
                if current.meta.last_log_id > stored.meta.last_log_id {
                    return Ok(());
                }
            }
            tx.insert(SNAPSHOT, bytes.as_slice())?;
            tx.remove(LEGACY_APPLIED)?;
            Ok(())
        })?;
        flush(&self.sm).await?;
        Ok(stored.into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serialises the state, last applied id and membership (deterministic
    /// bytes: ordered maps, fixed encoding) and keeps it, flushed, as the
    /// current snapshot: what a restart starts from. openraft purges the log
    /// only up to a snapshot it has been handed, so the entries a restart
    /// re-applies after it are always there.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        self.build()
            .await
            .map_err(to_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))
    }
}
