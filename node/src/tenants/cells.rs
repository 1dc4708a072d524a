//! This node's usage since it started, per key, day, model and upstream:
//! cumulative counters, each remembering what the cluster has committed of
//! it, so a report carries only the cells that changed since, and carries
//! them again until one commits.

use std::hash::RandomState;
use std::sync::{Mutex, MutexGuard, PoisonError};

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

/// The cumulative cells of this boot.
#[derive(Debug, Default)]
pub struct Cells {
    cells: Mutex<CellMap>,
}

impl Cells {
    fn lock(&self) -> MutexGuard<'_, CellMap> {
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one answered request to its cell.
    pub fn add(&self, cell: BucketRef<'_>, one: &Counters) {
        let mut cells = self.lock();
        match cells.get_mut(&cell) {
            Some(found) => found.counters.add(one),
            None => cells.entry(cell.to_bucket()).or_default().counters.add(one),
        }
    }

    /// The cells not committed as they stand, at most
    /// [`MAX_REPORT_CELLS`] of them.
    pub fn dirty(&self) -> Vec<(UsageBucket, Counters)> {
        self.lock()
            .iter()
            .filter(|(_, c)| c.counters != c.committed)
            .take(MAX_REPORT_CELLS)
            .map(|(b, c)| (b.clone(), c.counters))
            .collect()
    }

    /// `sent` was committed; cells older than `keep_days` before `today`
    /// with nothing left to send are forgotten, so the map stays bounded.
    pub fn committed(&self, sent: &[(UsageBucket, Counters)], today: u32, keep_days: u32) {
        let mut cells = self.lock();
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
        for (b, c) in self.lock().iter() {
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
        for (i, &one) in parts.iter().enumerate() {
            let borrowed = at(one);
            let owned = borrowed.to_bucket();
            assert_eq!(hasher.hash_one(borrowed), hasher.hash_one(&owned));
            for (j, &other) in parts.iter().enumerate() {
                let other = at(other).to_bucket();
                assert_eq!(borrowed.equivalent(&other), i == j, "{i} {j}");
            }
        }
        // Parts that only differ in where one ends and the next begins are
        // different cells.
        let cells = Cells::default();
        let one = Counters {
            requests: 1,
            ..Counters::default()
        };
        for part in [parts[0], parts[1], parts[0]] {
            cells.add(at(part), &one);
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
        let cells = Cells::default();
        let one = Counters {
            requests: 1,
            input_tokens: 3,
            output_tokens: 2,
            cost_nanos: 5,
        };
        cells.add(bucket(10), &one);
        let sent = cells.dirty();
        assert_eq!(sent.len(), 1);
        // Counted again while the report was in flight: still dirty after.
        cells.add(bucket(10), &one);
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
}
