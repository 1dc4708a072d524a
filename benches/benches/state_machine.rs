//! What applying one Raft batch costs the state machine as the tenants'
//! usage ledger grows (1,000, 27,000 and 200,000 cells, the ledger's cap),
//! and what a snapshot of that state costs. Through `raft::store`'s public
//! API, on a sled store in a temp dir, as openraft calls it: one batch is
//! one health report (`Command::Report`), the entry every node committed
//! about once a second until reports left the log (#19); it still stands
//! for a small entry that touches nothing of the ledger, which is what the
//! batch's cost is measured against.
//!
//! `cargo bench -p meridian-benches --bench state_machine`; the figures,
//! before and after the state machine stopped persisting every batch, are
//! in `benches/RESULTS.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use openraft::storage::RaftStateMachine;
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use proto::codec;
use proto::health::HealthReport;
use proto::state::{ClusterState, Command};
use proto::tenancy::{Counters, UsageBucket};
use raft::TypeConfig;
use raft::store::{self, Applied, StateMachineStore};
use tokio::runtime::Runtime;

/// Usage cells in the ledger: a small deployment, the size measured in
/// the field when this bench was written, and the ledger's cap.
const CELLS: [usize; 3] = [1_000, 27_000, 200_000];

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// A state whose ledger holds `cells` usage cells: 50 keys × 10 models ×
/// 2 upstreams per day, over as many days as it takes.
fn state_with(cells: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..cells {
        let bucket = UsageBucket {
            key: format!("tenant-{:02}", i % 50),
            day: 20_000 + (i / 1_000) as u32,
            model: format!("model-{}", (i / 50) % 10),
            upstream: format!("upstream-{}", (i / 500) % 2),
        };
        let counters = Counters {
            requests: i as u64,
            input_tokens: 20 * i as u64,
            output_tokens: 100 * i as u64,
            cost_nanos: 42_000 * i as u64,
        };
        state.tenancy.usage.insert(bucket, counters);
    }
    assert_eq!(state.tenancy.usage.len(), cells);
    state
}

/// A store in `dir` holding `state` at log index 1, installed as a
/// snapshot (the way a follower gets a large state).
async fn store_with(dir: &std::path::Path, state: ClusterState) -> StateMachineStore {
    let (_log, mut sm) = store::open(dir).unwrap();
    let applied = Applied {
        state,
        last_applied: Some(log_id(1)),
        membership: StoredMembership::default(),
    };
    let meta = SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: "bench".into(),
    };
    let data = codec::encode_value(&applied).unwrap();
    sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
        .await
        .unwrap();
    sm
}

/// A health report entry at `index`.
fn report(index: u64) -> Entry<TypeConfig> {
    let report = HealthReport {
        seq: index,
        region: "r1".into(),
        at_unix_ms: index,
        window_ms: 30_000,
        upstreams: BTreeMap::new(),
        cooldowns: BTreeMap::new(),
    };
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Command::Report { id: 1, report }),
    }
}

fn apply_path(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("state machine");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    for cells in CELLS {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = rt.block_on(store_with(dir.path(), state_with(cells)));
        let mut index = 1;
        group.bench_with_input(
            BenchmarkId::new("apply one batch (a health report)", cells),
            &cells,
            |b, _| {
                b.iter(|| {
                    index += 1;
                    black_box(rt.block_on(sm.apply([report(index)])).unwrap());
                })
            },
        );
        // The part of a batch that grows with the state once nothing is
        // written per batch: the copy the batch works on (and dropping the
        // state it replaces).
        let applied = sm.current();
        group.bench_with_input(
            BenchmarkId::new("clone and drop the applied state", cells),
            &cells,
            |b, _| b.iter(|| drop(black_box(Applied::clone(&applied)))),
        );
        group.bench_with_input(
            BenchmarkId::new("build a snapshot", cells),
            &cells,
            |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut builder = sm.get_snapshot_builder().await;
                        black_box(builder.build_snapshot().await.unwrap());
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, apply_path);
criterion_main!(benches);
