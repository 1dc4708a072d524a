//! The Raft log and the vote: openraft's [`RaftLogStorage`] over the `logs`
//! and `meta` trees.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};

use super::error::to_storage;
use super::{StoreError, codec, flush, read_value, write_value};
use crate::{NodeId, TypeConfig};

const VOTE: &[u8] = b"vote";
const LAST_PURGED: &[u8] = b"last_purged";
const COMMITTED: &[u8] = b"committed";

/// The log half of the store. Cheap to clone (sled trees are shared
/// handles), which is how openraft's replication tasks get their readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    logs: sled::Tree,
    meta: sled::Tree,
}

/// A log entry as openraft hands it to us.
type LogEntry = Entry<TypeConfig>;

impl LogStore {
    pub(super) fn new(logs: sled::Tree, meta: sled::Tree) -> Self {
        Self { logs, meta }
    }

    /// Decodes the entries whose index lies in `range`, in index order.
    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<LogEntry>, StoreError> {
        let keys = (key_bound(range.start_bound()), key_bound(range.end_bound()));
        self.logs
            .range::<[u8; 8], _>(keys)
            .map(|kv| Ok(codec::decode_value(&kv?.1)?))
            .collect()
    }

    /// Removes every entry whose index lies in `range` in one atomic batch.
    fn remove_range(&self, range: impl RangeBounds<u64>) -> Result<(), StoreError> {
        let keys = (key_bound(range.start_bound()), key_bound(range.end_bound()));
        let mut batch = sled::Batch::default();
        for key in self.logs.range::<[u8; 8], _>(keys).keys() {
            batch.remove(key?);
        }
        self.logs.apply_batch(batch)?;
        Ok(())
    }

    /// The id of the last entry in the log (or the last purged one): what
    /// a pre-vote compares, read without going through openraft.
    pub fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        Ok(self.log_state()?.last_log_id)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id: Option<LogId<NodeId>> = read_value(&self.meta, LAST_PURGED)?;
        let last_log_id = match self.logs.last()? {
            Some((_, bytes)) => Some(codec::decode_value::<LogEntry>(&bytes)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn append_entries(
        &self,
        entries: impl IntoIterator<Item = LogEntry>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&key(entry.log_id.index)[..], codec::encode_value(&entry)?);
        }
        self.logs.apply_batch(batch)?;
        flush(&self.logs).await
    }

    async fn save_durably<T: serde::Serialize>(&self, k: &[u8], v: &T) -> Result<(), StoreError> {
        write_value(&self.meta, k, v)?;
        flush(&self.meta).await
    }
}

/// The sled key of a log index: big-endian, so byte order is index order.
fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_bound(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    bound.map(|&index| key(index))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError<NodeId>> {
        self.read_range(range)
            .map_err(to_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state()
            .map_err(to_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Writes the vote and flushes it before returning: a node must never
    /// forget whom it voted for in a term.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.save_durably(VOTE, vote)
            .await
            .map_err(to_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        read_value(&self.meta, VOTE).map_err(to_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Records the committed log id without a flush of its own: openraft
    /// calls this in its core just before it applies the entries, and the
    /// state machine flushes it before the batch is acknowledged (see
    /// [`super::state_machine`]), so the core does not wait on an fsync for
    /// it. On restart openraft re-applies the log from the last snapshot up
    /// to this mark.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        write_value(&self.meta, COMMITTED, &committed)
            .map_err(to_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        read_value::<Option<LogId<NodeId>>>(&self.meta, COMMITTED)
            .map(Option::flatten)
            .map_err(to_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Writes the entries in one batch, flushes, and only then tells
    /// openraft (through `callback`) that they are durable.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_entries(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(to_storage(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    /// Removes the entries at `log_id.index` and after (conflicting entries
    /// a new leader overwrites).
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let result = match self.remove_range(log_id.index..) {
            Ok(()) => flush(&self.logs).await,
            Err(e) => Err(e),
        };
        result.map_err(to_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    /// Records `log_id` as the last purged id (flushed), then removes the
    /// entries up to and including it. Recording first means a crash
    /// in between leaves stale entries behind a correct purge mark, never a
    /// hole the mark does not explain.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let result = async {
            self.save_durably(LAST_PURGED, &log_id).await?;
            self.remove_range(..=log_id.index)?;
            flush(&self.logs).await
        };
        result
            .await
            .map_err(to_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}
