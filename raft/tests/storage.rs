//! The sled store against openraft's own storage suite, across a restart
//! (clean, and kill -9 of a process right after acknowledged entries), and
//! with a purged log that must stay small on disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, StorageHelper};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership, Vote,
};
use proto::FieldError;
use proto::codec;
use proto::state::{ClusterState, Command, CommandResponse, KeyRecord, Member};
use raft::store::{self, Applied, LogStore, StateMachineStore, StoreError};
use raft::{NodeId, TypeConfig};
use tempfile::TempDir;

/// Opens a fresh store in its own temp dir; the dir lives as long as the guard.
struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm) =
            store::open(dir.path()).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite() {
    Suite::test_all(TempStores).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn member(n: u64) -> Member {
    Member {
        raft_addr: format!("10.0.0.{n}:7000"),
        admin_addr: format!("10.0.0.{n}:7001"),
        region: format!("r{n}"),
    }
}

fn membership() -> Membership<NodeId, Member> {
    let nodes: BTreeMap<NodeId, Member> = (1..=3).map(|n| (n, member(n))).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn key(name: &str) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        sha256: "ab".repeat(32),
        limits: Default::default(),
    }
}

/// Ten entries: blank, membership, then commands (one of them rejected).
fn history() -> Vec<Entry<TypeConfig>> {
    let mut commands: Vec<Command> = (0..6)
        .map(|i| Command::PutKey(key(&format!("k{i}"))))
        .collect();
    commands.push(Command::DeleteKey { name: "k0".into() });
    commands.push(Command::PutKey(KeyRecord {
        name: "bad".into(),
        sha256: "nothex".into(),
        limits: Default::default(),
    }));
    let mut entries = vec![
        entry(1, 1, EntryPayload::Blank),
        entry(1, 2, EntryPayload::Membership(membership())),
    ];
    entries.extend(
        commands
            .into_iter()
            .zip(3..)
            .map(|(c, i)| entry(2, i, EntryPayload::Normal(c))),
    );
    entries
}

fn expected_state() -> (ClusterState, Vec<CommandResponse>) {
    let mut state = ClusterState::default();
    let mut out = vec![CommandResponse::Applied { changed: false }; 2];
    for e in history() {
        if let EntryPayload::Normal(c) = &e.payload {
            out.push(state.apply(c));
        }
    }
    (state, out)
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(2, 1);
    let (state, responses) = expected_state();
    let built = {
        let (mut log, mut sm) = store::open(dir.path()).unwrap();
        let mut updates = sm.subscribe();
        log.blocking_append(history()).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        // Apply in two batches, as openraft would as commits advance.
        let all = history();
        let (first, rest) = all.split_at(4);
        let mut got = sm.apply(first.to_vec()).await.unwrap();
        got.extend(sm.apply(rest.to_vec()).await.unwrap());
        assert_eq!(got, responses);
        assert!(updates.has_changed().unwrap());
        assert_eq!(updates.borrow_and_update().state, state);
        assert_eq!(
            responses[9],
            CommandResponse::Rejected(FieldError::new(
                "key.sha256",
                "must be 64 lowercase hex digits"
            ))
        );

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 10)));
        assert!(
            snap.meta.snapshot_id.starts_with("2-10-"),
            "{}",
            snap.meta.snapshot_id
        );
        log.purge(log_id(2, 5)).await.unwrap();
        snap
    };

    let (mut log, mut sm) = store::open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    let state_of_log = log.get_log_state().await.unwrap();
    assert_eq!(state_of_log.last_purged_log_id, Some(log_id(2, 5)));
    assert_eq!(state_of_log.last_log_id, Some(log_id(2, 10)));
    assert_eq!(
        log.try_get_log_entries(0..).await.unwrap(),
        history()[5..].to_vec()
    );

    let expected = Applied {
        state: state.clone(),
        last_applied: Some(log_id(2, 10)),
        membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
    };
    assert_eq!(*sm.current(), expected);
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (expected.last_applied, expected.membership.clone())
    );

    let snap = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snap.meta, built.meta);
    assert_eq!(snap.snapshot.get_ref(), built.snapshot.get_ref());
    let data: Applied = codec::decode_value(snap.snapshot.get_ref()).unwrap();
    assert_eq!(data, expected);

    // A second node installs that snapshot, restarts, and has the state.
    let other = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm2) = store::open(other.path()).unwrap();
        let mut updates = sm2.subscribe();
        let mut incoming = sm2.begin_receiving_snapshot().await.unwrap();
        *incoming = *snap.snapshot;
        sm2.install_snapshot(&snap.meta, incoming).await.unwrap();
        assert!(updates.has_changed().unwrap());
        assert_eq!(**updates.borrow_and_update(), expected);
    }
    let (_log, mut sm2) = store::open(other.path()).unwrap();
    assert_eq!(*sm2.current(), expected);
    assert_eq!(
        sm2.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
}

/// The state after the first `n` entries of [`history`].
fn state_after(n: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for e in &history()[..n] {
        if let EntryPayload::Normal(c) = &e.payload {
            state.apply(c);
        }
    }
    state
}

/// Applying is not written: a store reopened after applying everything
/// comes back with its last snapshot's state, and openraft's start-up
/// (`get_initial_state`) re-applies the log after it up to the committed
/// mark. Entries past the mark stay in the log for a leader to commit.
#[tokio::test]
async fn a_restart_reapplies_the_committed_log_after_the_last_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let all = history();
    {
        let (mut log, mut sm) = store::open(dir.path()).unwrap();
        log.blocking_append(all.clone()).await.unwrap();
        sm.apply(all[..4].to_vec()).await.unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 4)));
        log.purge(log_id(2, 3)).await.unwrap();
        sm.apply(all[4..].to_vec()).await.unwrap();
        assert_eq!(sm.current().state, state_after(10));
        log.save_committed(Some(log_id(2, 9))).await.unwrap();
        // The committed mark rides on the next flush.
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
    }

    let (mut log, mut sm) = store::open(dir.path()).unwrap();
    let loaded = sm.current();
    assert_eq!(loaded.last_applied, Some(log_id(2, 4)));
    assert_eq!(loaded.state, state_after(4));
    let started = StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(started.committed, Some(log_id(2, 9)));
    let applied = sm.current();
    assert_eq!(applied.last_applied, Some(log_id(2, 9)));
    assert_eq!(applied.state, state_after(9));
    assert_eq!(
        applied.membership,
        StoredMembership::new(Some(log_id(1, 2)), membership())
    );
    assert_eq!(
        log.try_get_log_entries(4..).await.unwrap(),
        all[3..].to_vec(),
        "everything after the purge is still in the log"
    );
}

/// Where [`crash_child`] keeps its store; set only in the child.
const CRASH_DIR: &str = "MERIDIAN_STORE_CRASH_DIR";

/// Index of the entry the crash child snapshots at.
const CRASH_SNAPSHOT: u64 = 20;

/// Entries acknowledged before the crash child is killed: well past its
/// snapshot.
const CRASH_AFTER: u64 = 40;

/// Entry `index` of the crash child's log: a blank first, then one new key
/// per entry.
fn crash_entry(index: u64) -> Entry<TypeConfig> {
    match index {
        1 => entry(1, 1, EntryPayload::Blank),
        _ => entry(
            1,
            index,
            EntryPayload::Normal(Command::PutKey(key(&format!("k{index}")))),
        ),
    }
}

/// Not a test by itself: the process that
/// [`acknowledged_entries_survive_kill_9`] starts and kills. Like a node, for
/// each entry: append it (flushed), mark it committed, apply it, and only
/// then acknowledge it (a line on stdout); at [`CRASH_SNAPSHOT`] it
/// snapshots and purges half the log. It runs until it is killed.
#[tokio::test]
#[ignore = "the child process of acknowledged_entries_survive_kill_9"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let (mut log, mut sm) = store::open(Path::new(&dir)).unwrap();
    let mut out = std::io::stdout();
    for index in 1..1_000_000 {
        log.blocking_append([crash_entry(index)]).await.unwrap();
        log.save_committed(Some(log_id(1, index))).await.unwrap();
        sm.apply([crash_entry(index)]).await.unwrap();
        if index == CRASH_SNAPSHOT {
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            log.purge(log_id(1, CRASH_SNAPSHOT / 2)).await.unwrap();
        }
        writeln!(out, "acked {index}").unwrap();
        out.flush().unwrap();
    }
}

/// kill -9 of a process right after it acknowledged entries past its last
/// snapshot: every acknowledged entry is in the log after the restart and
/// the start-up re-applies every one of them (the committed mark was
/// flushed before each acknowledgement); what follows them in the log
/// applies as a leader commits it.
#[tokio::test]
async fn acknowledged_entries_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(index) = line.unwrap().strip_prefix("acked ") {
            acked = index.parse().unwrap();
            if acked >= CRASH_AFTER {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(acked >= CRASH_AFTER, "the child stopped at {acked}");

    let (mut log, mut sm) = store::open(dir.path()).unwrap();
    assert_eq!(sm.current().last_applied, Some(log_id(1, CRASH_SNAPSHOT)));
    let kept = log
        .try_get_log_entries(CRASH_SNAPSHOT / 2 + 1..=acked)
        .await
        .unwrap();
    let expected: Vec<_> = (CRASH_SNAPSHOT / 2 + 1..=acked).map(crash_entry).collect();
    assert_eq!(kept, expected, "an acknowledged entry is missing");

    StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    let replayed = sm.current().last_applied.unwrap().index;
    assert!(replayed >= acked, "re-applied {replayed} of {acked}");
    // What a leader's commit index brings: the rest of the log.
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
    let rest = log.try_get_log_entries(replayed + 1..).await.unwrap();
    sm.apply(rest).await.unwrap();
    let mut state = ClusterState::default();
    for index in 2..=last.index {
        if let EntryPayload::Normal(c) = &crash_entry(index).payload {
            state.apply(c);
        }
    }
    assert!(state.keys.contains_key(&format!("k{acked}")));
    assert_eq!(sm.current().state, state);
    assert_eq!(sm.current().last_applied, Some(last));
}

#[tokio::test]
async fn a_snapshot_that_disagrees_with_its_meta_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = store::open(dir.path()).unwrap();
    sm.apply(history()).await.unwrap();
    let mut snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    snap.meta.last_log_id = Some(log_id(3, 11));

    let other = tempfile::tempdir().unwrap();
    let (_log, mut sm2) = store::open(other.path()).unwrap();
    assert!(
        sm2.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .is_err()
    );
    assert_eq!(*sm2.current(), Applied::default());
}

/// A data dir written by a build whose store wrote format version 1 (the
/// same bincode body behind a version byte of 1, as the store did before
/// it shared the wire's codec) is refused at open, naming the dir and both
/// versions, whichever tree holds the old value: nothing is misread.
#[test]
fn a_data_dir_of_the_old_format_is_refused_naming_it() {
    let old = |value: Vec<u8>| {
        let mut value = value;
        value[0] = 1;
        value
    };
    let entry = codec::encode_value(&history()[0]).unwrap();
    let applied = codec::encode_value(&Applied::default()).unwrap();
    for (tree, key, value) in [
        ("logs", 1u64.to_be_bytes().to_vec(), old(entry)),
        ("sm", b"applied".to_vec(), old(applied)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = store::open_db(dir.path()).unwrap();
            db.open_tree(tree).unwrap().insert(key, value).unwrap();
            db.flush().unwrap();
        }
        let Err(e) = store::open(dir.path()) else {
            panic!("a format 1 value in `{tree}` was accepted");
        };
        assert!(
            matches!(e, StoreError::Format { found: 1, expected, .. } if expected == codec::VERSION),
            "{e}"
        );
        let message = e.to_string();
        assert!(
            message.contains(&dir.path().display().to_string())
                && message.contains("version 1")
                && message.contains(&format!("version {}", codec::VERSION)),
            "{message}"
        );
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, so sparse
/// files count for what they really use).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                disk_usage(&e.path())
            } else {
                meta.blocks() * 512
            }
        })
        .sum()
}

/// Appends small command entries `indexes` in batches of 500 (one flush each).
async fn append_small(log: &mut LogStore, indexes: std::ops::RangeInclusive<u64>) {
    let all: Vec<u64> = indexes.collect();
    for chunk in all.chunks(500) {
        let batch = chunk.iter().map(|&i| {
            let name = format!("k{i}");
            entry(1, i, EntryPayload::Normal(Command::DeleteKey { name }))
        });
        log.blocking_append(batch).await.unwrap();
    }
}

/// 20,000 small entries purged down to the last 100: the `logs` tree holds
/// those 100 and the sled dir takes under 8 MiB on disk (measured 4.2 to
/// 4.8 MB). Then 8 more rounds of 20,000 appends, each followed by a purge:
/// the dir stays under 16 MiB (measured 4.7 to 11.6 MB, going up and down
/// with no trend over 15 rounds as sled reclaims segments in the
/// background). Kept unpurged, the same entries grow it by about 2.3 MB per
/// round (20.5 MB after 180,000), past the bound by round 8.
#[tokio::test]
async fn a_purged_log_stays_small() {
    const N: u64 = 20_000;
    const KEEP: u64 = 100;
    const FIRST_BOUND: u64 = 8 << 20;
    const STEADY_BOUND: u64 = 16 << 20;
    const ROUNDS: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = store::open(dir.path()).unwrap();
        append_small(&mut log, 1..=N).await;
        log.purge(log_id(1, N - KEEP)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, N - KEEP)));
        assert_eq!(state.last_log_id, Some(log_id(1, N)));
    }
    {
        let db = store::open_db(dir.path()).unwrap();
        let logs = db.open_tree("logs").unwrap();
        assert_eq!(logs.len() as u64, KEEP);
        let first = logs.first().unwrap().unwrap().0;
        assert_eq!(first.as_ref(), (N - KEEP + 1).to_be_bytes());
        db.flush().unwrap();
        let size = disk_usage(dir.path());
        eprintln!("{size} bytes on disk after one purge");
        assert!(size < FIRST_BOUND, "{size} bytes after one purge");
    }
    let (mut log, _sm) = store::open(dir.path()).unwrap();
    for round in 1..=ROUNDS {
        let last = (round + 1) * N;
        append_small(&mut log, last - N + 1..=last).await;
        log.purge(log_id(1, last - KEEP)).await.unwrap();
        let size = disk_usage(dir.path());
        eprintln!("{size} bytes on disk after round {round}");
        assert!(size < STEADY_BOUND, "{size} bytes after round {round}");
        assert_eq!(
            log.try_get_log_entries(0..).await.unwrap().len() as u64,
            KEEP
        );
    }
}
