//! The cost of one millisecond reading on the request path (issue #13,
//! step fourteen), side by side: the node's coarse clocks
//! (`meridian::clock`) against the full readings they replaced, std's
//! `Instant` elapsed from a start (the former `monotonic_ms`) and
//! `SystemTime` since the epoch (the former `tenants::now_ms`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};

/// The former `clock::monotonic_ms`.
fn instant_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The former `tenants::now_ms`.
fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn clocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock ms");
    group.bench_function("monotonic, Instant", |b| b.iter(|| black_box(instant_ms())));
    group.bench_function("monotonic, coarse", |b| {
        b.iter(|| black_box(meridian::clock::monotonic_ms()))
    });
    group.bench_function("wall, SystemTime", |b| b.iter(|| black_box(system_ms())));
    group.bench_function("wall, coarse", |b| {
        b.iter(|| black_box(meridian::clock::wall_ms()))
    });
    group.finish();
}

criterion_group!(benches, clocks);
criterion_main!(benches);
