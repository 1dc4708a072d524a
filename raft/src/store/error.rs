//! The store's one error type, and how it becomes openraft's.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

use super::codec::CodecError;
use crate::NodeId;

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
