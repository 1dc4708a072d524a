//! This node's usage since it started, per key, day, model and upstream:
//! cumulative counters, each remembering what the cluster has committed of
//! it, so a report carries only the cells that changed since, and carries
//! them again until one commits.

use std::hash::RandomState;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crossbeam_utils::CachePadded;
use hashbrown::{Equivalent, HashMap};
use proto::tenancy::{Counters, MAX_REPORT_CELLS, UsageBucket};

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    counters: Counters,
    committed: Counters,
}

/// A cell's place, borrowed from the request: every answer looks its cell
/// up by it, and only a cell's first answer makes a [`UsageBucket`] of it.
#[derive(Debug, Clone, Copy, Hash)]
pub struct BucketRef<'a> {
    /// [`UsageBucket::key`].
    pub key: &'a str,
    /// [`UsageBucket::day`].
    pub day: u32,
    /// [`UsageBucket::model`].
    pub model: &'a str,
    /// [`UsageBucket::upstream`].
    pub upstream: &'a str,
}

// Hashed as `UsageBucket`'s derived `Hash` hashes it: the same fields, in
// the same order, each `&str` as its `String` (checked by a test).
impl Equivalent<UsageBucket> for BucketRef<'_> {
    fn equivalent(&self, bucket: &UsageBucket) -> bool {
        self.day == bucket.day
            && self.key == bucket.key
            && self.model == bucket.model
            && self.upstream == bucket.upstream
    }
}

impl BucketRef<'_> {
    fn to_bucket(self) -> UsageBucket {
        UsageBucket {
            key: self.key.to_owned(),
            day: self.day,
            model: self.model.to_owned(),
            upstream: self.upstream.to_owned(),
        }
    }
}

type CellMap = HashMap<UsageBucket, Cell, RandomState>;

/// What one worker counted since the cells were last folded.
type Shard = HashMap<UsageBucket, Counters, RandomState>;

/// The cumulative cells of this boot.
///
/// Every answer adds to a cell, on whichever worker answered it: one map
/// behind one lock would have every worker take that lock (and move its
/// cache line) once per answer. So each worker adds to a shard of its own,
/// a lock no one else takes but the reader, and whoever reads the cells
/// (the report, the usage query) first folds the shards into the
/// cumulative map.
#[derive(Debug)]
pub struct Cells {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    cells: Mutex<CellMap>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cells {
    /// Cells for `workers` data-plane workers, one shard each (one at least).
    pub fn new(workers: usize) -> Self {
        Self {
            shards: (0..workers.max(1))
                .map(|_| CachePadded::default())
                .collect(),
            cells: Mutex::default(),
        }
    }

    /// Adds one answered request to its cell, in this worker's shard.
    pub fn add(&self, cell: BucketRef<'_>, one: &Counters) {
        let shard = &self.shards[crate::upstream::worker() % self.shards.len()];
        let mut shard = lock(shard);
        match shard.get_mut(&cell) {
            Some(found) => found.add(one),
            None => shard.entry(cell.to_bucket()).or_default().add(one),
        }
    }

    /// The cumulative cells with every shard folded in. A shard keeps the
    /// entries it had (zeroed), so a busy cell is not built again at each
    /// fold; one that counted nothing since the last fold is dropped, so
    /// a shard holds only the cells its worker answers now.
    fn folded(&self) -> MutexGuard<'_, CellMap> {
        let mut cells = lock(&self.cells);
        for shard in &self.shards {
            lock(shard).retain(|bucket, counted| {
                if *counted == Counters::default() {
                    return false;
                }
                match cells.get_mut(bucket) {
                    Some(cell) => cell.counters.add(counted),
                    None => cells
                        .entry(bucket.clone())
                        .or_default()
                        .counters
                        .add(counted),
                }
                *counted = Counters::default();
                true
            });
        }
        cells
    }

    /// The cells not committed as they stand, at most
    /// [`MAX_REPORT_CELLS`] of them.
    pub fn dirty(&self) -> Vec<(UsageBucket, Counters)> {
        self.folded()
            .iter()
            .filter(|(_, c)| c.counters != c.committed)
            .take(MAX_REPORT_CELLS)
            .map(|(b, c)| (b.clone(), c.counters))
            .collect()
    }

    /// `sent` was committed; cells older than `keep_days` before `today`
    /// with nothing left to send are forgotten, so the map stays bounded.
    pub fn committed(&self, sent: &[(UsageBucket, Counters)], today: u32, keep_days: u32) {
        // Folded first: a cell is forgotten only with nothing left to send,
        // what its shards hold included.
        let mut cells = self.folded();
        for (bucket, counters) in sent {
            if let Some(cell) = cells.get_mut(bucket) {
                cell.committed = cell.committed.max(counters);
            }
        }
        let oldest = today.saturating_sub(keep_days);
        cells.retain(|b, c| b.day >= oldest || c.counters != c.committed);
    }

    /// Every cell's counters, for tests and the totals.
    pub fn total(&self, key: &str) -> Counters {
        let mut total = Counters::default();
        for (b, c) in self.folded().iter() {
            if b.key == key {
                total.add(&c.counters);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::hash::BuildHasher;

    /// One answered request.
    const ONE: Counters = Counters {
        requests: 1,
        input_tokens: 3,
        output_tokens: 2,
        cost_nanos: 5,
    };

    fn bucket(day: u32) -> BucketRef<'static> {
        BucketRef {
            key: "acme",
            day,
            model: "fast",
            upstream: "a",
        }
    }

    #[test]
    fn a_borrowed_bucket_hashes_and_compares_as_its_owned_one() {
        let at = |(key, day, model, upstream)| BucketRef {
            key,
            day,
            model,
            upstream,
        };
        let hasher = RandomState::new();
        let parts = [
            ("acme", 1, "fast", "a"),
            ("acm", 1, "efast", "a"),
            ("acme", 2, "fast", "a"),
            ("", 0, "", ""),
            ("acme\u{ff}", 1, "fast", "a"),
        ];
        for (i, &part) in parts.iter().enumerate() {
            let borrowed = at(part);
            let owned = borrowed.to_bucket();
            assert_eq!(hasher.hash_one(borrowed), hasher.hash_one(&owned));
            for (j, &other) in parts.iter().enumerate() {
                let other = at(other).to_bucket();
                assert_eq!(borrowed.equivalent(&other), i == j, "{i} {j}");
            }
        }
        // Parts that only differ in where one ends and the next begins are
        // different cells.
        let cells = Cells::new(1);
        for part in [parts[0], parts[1], parts[0]] {
            cells.add(at(part), &ONE);
        }
        let mut dirty = cells.dirty();
        dirty.sort_by(|a, b| a.0.cmp(&b.0));
        let counts: Vec<_> = dirty
            .iter()
            .map(|(b, c)| (b.key.as_str(), c.requests))
            .collect();
        assert_eq!(counts, [("acm", 1), ("acme", 2)]);
    }

    #[test]
    fn cells_are_sent_until_committed() {
        let cells = Cells::new(1);
        cells.add(bucket(10), &ONE);
        let sent = cells.dirty();
        assert_eq!(sent.len(), 1);
        // Counted again while the report was in flight: still dirty after.
        cells.add(bucket(10), &ONE);
        cells.committed(&sent, 10, 30);
        let again = cells.dirty();
        assert_eq!(again[0].1.requests, 2);
        cells.committed(&again, 10, 30);
        assert!(cells.dirty().is_empty());
        assert_eq!(cells.total("acme").cost_nanos, 10);
        // Committed and old: forgotten.
        cells.committed(&[], 50, 30);
        assert_eq!(cells.total("acme"), Counters::default());
    }

    /// Entries held by the shards, for the tests.
    fn shard_entries(cells: &Cells) -> usize {
        cells.shards.iter().map(|s| lock(s).len()).sum()
    }

    #[test]
    fn each_worker_counts_in_a_shard_of_its_own() {
        let cells = Cells::new(3);
        for worker in [0, 1, 2, 4] {
            crate::upstream::set_worker(worker);
            cells.add(bucket(10), &ONE);
        }
        // Workers 0, 1 and 2 alone in theirs; 4 shares 1's (4 % 3).
        let held: Vec<_> = cells
            .shards
            .iter()
            .map(|s| lock(s).values().map(|c| c.requests).sum::<u64>())
            .collect();
        assert_eq!(held, [1, 2, 1]);
        assert_eq!(cells.total("acme").requests, 4);
    }

    #[test]
    fn answers_counted_on_many_workers_at_once_are_all_reported() {
        let cells = Cells::new(3);
        // Five workers on three shards (a worker index past the shards
        // shares one), each counting while another folds.
        std::thread::scope(|s| {
            for worker in [0, 1, 2, 7, usize::MAX] {
                let cells = &cells;
                s.spawn(move || {
                    crate::upstream::set_worker(worker);
                    for i in 0..1_000 {
                        cells.add(bucket(10 + (i % 2)), &ONE);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..50 {
                    let _ = cells.dirty();
                }
            });
        });
        let total = cells.total("acme");
        assert_eq!(total.requests, 5_000);
        assert_eq!(total.cost_nanos, 25_000);
        let mut sent = cells.dirty();
        sent.sort_by(|a, b| a.0.cmp(&b.0));
        let per_day: Vec<_> = sent.iter().map(|(b, c)| (b.day, c.requests)).collect();
        assert_eq!(per_day, [(10, 2_500), (11, 2_500)]);
    }

    #[test]
    fn a_shard_forgets_a_cell_its_worker_stopped_answering() {
        let cells = Cells::new(2);
        crate::upstream::set_worker(1);
        cells.add(bucket(10), &ONE);
        // Folded once: kept (zeroed) while the worker may answer it again.
        assert_eq!(cells.total("acme").requests, 1);
        assert_eq!(shard_entries(&cells), 1);
        cells.add(bucket(10), &ONE);
        cells.add(bucket(11), &ONE);
        assert_eq!(cells.total("acme").requests, 3);
        assert_eq!(shard_entries(&cells), 2);
        // Day 10 counted nothing since: dropped at the next fold, day 11
        // too after one more; the cumulative cells keep both.
        cells.add(bucket(11), &ONE);
        assert_eq!(cells.total("acme").requests, 4);
        assert_eq!(shard_entries(&cells), 1);
        assert_eq!(cells.total("acme").requests, 4);
        assert_eq!(shard_entries(&cells), 0);
        assert_eq!(cells.dirty().len(), 2);
    }

    #[test]
    fn a_cell_is_not_forgotten_while_a_shard_holds_its_count() {
        let cells = Cells::new(1);
        cells.add(bucket(1), &ONE);
        let sent = cells.dirty();
        // Counted after the report was cut, not folded yet, and old by the
        // time the report commits: still sent, and counted from where the
        // ledger stands (2, not 1).
        cells.add(bucket(1), &ONE);
        cells.committed(&sent, 50, 30);
        let again = cells.dirty();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.requests, 2);
    }
}
