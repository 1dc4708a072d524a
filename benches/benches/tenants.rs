//! The cost of the tenants check on the request path (issue #16), side by
//! side: a key without limits (one map lookup, nothing else) and a key
//! with an allowlist (a glob), `rpm`, `tpm` and credits (the sliding-window
//! counters and the allowance). Measured through the node's public
//! `meridian::tenants` API, as the proxy calls it: the key's state by name,
//! `admit` with the wall clock, and for a limited key the `x-ratelimit-*`
//! headers and the count of its answer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use meridian::metrics::Metrics;
use meridian::tenants::{self, Tenants};
use openraft::StoredMembership;
use proto::state::{ClusterState, KeyRecord, NodeInfo};
use proto::tenancy::{Counters, KeyLimits};
use raft::store::Applied;

/// A three-node cluster's state with the two keys; the limits are far
/// above what a bench run spends, so every request is admitted and the
/// whole check runs every time.
fn tenants() -> Arc<Tenants> {
    let mut state = ClusterState::default();
    let limited = KeyLimits {
        models: Some(vec!["fast".into(), "route-*".into(), "deepseek/*".into()]),
        rpm: Some(1_000_000_000),
        tpm: Some(1_000_000_000_000),
        credits_nanos: Some(1_000_000_000 * 1_000_000_000),
        class: None,
    };
    for (name, limits) in [("free", KeyLimits::default()), ("acme", limited)] {
        state.keys.insert(
            name.into(),
            KeyRecord {
                name: name.into(),
                sha256: "00".repeat(32),
                limits: limits.clone(),
            },
        );
        if let Some(opening) = limits.credits_nanos {
            state.tenancy.open(name, opening);
        }
    }
    for id in 1..=3 {
        state.nodes.insert(
            id,
            NodeInfo {
                admin_addr: String::new(),
                region: format!("r{id}"),
            },
        );
    }
    let applied = Arc::new(Applied {
        state,
        last_applied: None,
        membership: StoredMembership::default(),
    });
    Tenants::new(
        1,
        tenants::now_ms(),
        Duration::from_secs(1),
        Arc::new(Metrics::default()),
        applied,
        2,
    )
}

fn admission(c: &mut Criterion) {
    let t = tenants();
    let mut group = c.benchmark_group("tenants admission");
    for key in ["free", "acme"] {
        group.bench_function(format!("{key}: lookup + admit"), |b| {
            b.iter(|| {
                let state = t.key(black_box(key)).unwrap();
                black_box(state.admit(black_box("route-17"), tenants::now_ms())).unwrap();
            })
        });
    }
    // What a limited key's request adds besides admission: the headers on
    // its answer and the count of its usage, cost and tokens.
    let counters = Counters {
        requests: 1,
        input_tokens: 20,
        output_tokens: 100,
        cost_nanos: 42_000,
    };
    for key in ["free", "acme"] {
        group.bench_function(format!("{key}: admit + headers + answered"), |b| {
            b.iter(|| {
                let now = tenants::now_ms();
                let state = t.key(black_box(key)).unwrap();
                state.admit("route-17", now).unwrap();
                let mut headers = HeaderMap::new();
                if state.is_rate_limited() {
                    state.headers(now).apply(&mut headers);
                }
                t.answered(key, "route-17", "u1", counters);
                black_box(headers);
            })
        });
    }
    group.finish();
}

/// Every answer adds to its key's usage cell; with a worker per core, the
/// workers do so at once. Two threads (this machine's two cores) each count
/// `per_thread` answers of the same key, model and upstream, as two
/// workers answering one team's traffic would. The figure is the time an
/// answer takes on its thread (wall time × threads / answers): without
/// contention, the same with two threads as with one.
fn answered_concurrently(c: &mut Criterion) {
    let t = tenants();
    let counters = Counters {
        requests: 1,
        input_tokens: 20,
        output_tokens: 100,
        cost_nanos: 42_000,
    };
    let mut group = c.benchmark_group("tenants answered");
    for threads in [1usize, 2] {
        group.bench_function(format!("free: answered from {threads} thread(s)"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let start = std::time::Instant::now();
                std::thread::scope(|s| {
                    for worker in 0..threads {
                        let t = &t;
                        s.spawn(move || {
                            meridian::upstream::set_worker(worker);
                            for _ in 0..per_thread {
                                t.answered(black_box("free"), "route-17", "u1", counters);
                            }
                        });
                    }
                });
                start.elapsed() * threads as u32
            })
        });
    }
    group.finish();
}

criterion_group!(benches, admission, answered_concurrently);
criterion_main!(benches);
