//! The store's one error type, and how it becomes openraft's.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

use crate::NodeId;
use proto::codec::CodecError;

/// Why the store could not be opened or read or written.
///
/// Opening returns it as is; inside the openraft traits it is wrapped in a
/// [`StorageError`] that names what was being touched and how, so openraft
/// (and the logs) can tell a failed vote write from a corrupt log entry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed: I/O, corruption, or the directory is locked by another
    /// process.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// The data dir was written in another storage format (an older or
    /// newer build): refused whole at open, before anything is misread.
    #[error(
        "the data dir {dir} holds storage format version {found}; this build reads only \
         version {expected}: run the release that wrote it, or restore this node from its \
         peers (a new node id and an empty data dir, see deploy/RUNBOOK.md section 7)"
    )]
    Format {
        /// The directory opened.
        dir: String,
        /// The version byte found on a stored value.
        found: u8,
        /// The version this build reads and writes ([`proto::codec::VERSION`]).
        expected: u8,
    },
    /// A snapshot's data disagrees with its metadata.
    #[error("snapshot data is for {data}, but its metadata says {meta}")]
    SnapshotMismatch {
        /// What the data holds (last applied log id and membership).
        data: String,
        /// What the metadata claims.
        meta: String,
    },
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Self::Sled(e),
        }
    }
}

/// Builds the mapping from a [`StoreError`] to openraft's error for an
/// operation on `subject`, for use with `map_err`.
pub(crate) fn to_storage(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StoreError) -> StorageError<NodeId> {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}
