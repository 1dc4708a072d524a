//! Durable Raft storage: the log, the vote and the state machine in one sled
//! database, behind openraft's v2 storage traits.
//!
//! One sled `Db` per node, with three trees:
//!
//! - `logs`: key = big-endian log index (so key order is log order), value =
//!   the encoded `Entry<TypeConfig>`;
//! - `meta`: the vote, the last purged log id and the last committed log id;
//! - `sm`: the current snapshot with its metadata: the applied state
//!   (cluster state, last applied log id, last membership, as one value so
//!   they change together) as of the snapshot's last log id.
//!
//! Every value goes through [`proto::codec`] (the same version byte as the
//! wire), and [`open`] refuses a data dir written in another version.
//! Appends, votes, purges and snapshots are flushed to disk before openraft
//! hears they are done. The applied state is not written per batch: it is
//! durable as the last snapshot plus the flushed log after it, which
//! openraft re-applies on start up to the committed mark, flushed before a
//! batch is acknowledged (see [`state_machine`]).

mod error;
pub mod log_store;
pub mod state_machine;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use proto::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::StoreError;
pub use log_store::LogStore;
pub use proto::codec::CodecError;
pub use state_machine::{Applied, SnapshotBuilder, StateMachineStore};

/// How long [`open`] waits for a just-dropped store on the same dir to let
/// go of sled's file lock.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens (or creates) the store in `dir` and returns its two halves, ready to
/// hand to `openraft::Raft::new`. Whatever was persisted there before (vote,
/// log, applied state, snapshot) is what the halves report.
///
/// sled releases its lock on the directory from background threads a moment
/// after the last handle is dropped (spacejam/sled#1234), so reopening in
/// the same process (a node restarting its Raft, a test) may find it still
/// held: this retries for up to a second, blocking the calling thread, and
/// then fails. A lock held by a live store is held far longer, so a real
/// second opener still gets the error.
///
/// A data dir written in another storage format ([`codec::VERSION`]) is
/// refused whole with [`StoreError::Format`], naming the dir and both
/// versions, before any of it is read as state.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let db = open_db(dir)?;
    let logs = db.open_tree("logs")?;
    let meta = db.open_tree("meta")?;
    let sm = db.open_tree("sm")?;
    for tree in [&logs, &meta, &sm] {
        check_format(dir, tree)?;
    }
    Ok((LogStore::new(logs, meta), StateMachineStore::load(sm)?))
}

/// Refuses a tree whose first value carries another version byte. A data
/// dir holds one format only (a format change refuses the old dir rather
/// than migrating it value by value), so the first value of each tree
/// stands for the rest; an empty value is left to the decoder, which calls
/// it truncated.
fn check_format(dir: &Path, tree: &sled::Tree) -> Result<(), StoreError> {
    let Some(first) = tree.iter().values().next() else {
        return Ok(());
    };
    match codec::version_of(&first?) {
        Some(found) if found != codec::VERSION => Err(StoreError::Format {
            dir: dir.display().to_string(),
            found,
            expected: codec::VERSION,
        }),
        _ => Ok(()),
    }
}

/// Opens the raw sled database in `dir`, waiting out a just-dropped handle
/// as [`open`] does. For offline inspection and tests that look at the trees
/// themselves; the node uses [`open`].
pub fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(dir).open() {
            Err(e) if is_lock_contention(&e) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            result => return Ok(result?),
        }
    }
}

/// Whether sled failed because another handle holds the directory's lock.
/// sled 0.34 reports it only as an `Other` I/O error with this message.
fn is_lock_contention(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// Reads and decodes the value at `key`, if there is one.
fn read_value<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
    match tree.get(key)? {
        Some(bytes) => Ok(Some(codec::decode_value(&bytes)?)),
        None => Ok(None),
    }
}

/// Encodes and writes `value` at `key` (not yet flushed).
fn write_value<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
    tree.insert(key, codec::encode_value(value)?)?;
    Ok(())
}

/// Flushes everything written so far to disk. All trees share one page
/// cache, so flushing through any tree makes every earlier write durable.
async fn flush(tree: &sled::Tree) -> Result<(), StoreError> {
    tree.flush_async().await?;
    Ok(())
}
