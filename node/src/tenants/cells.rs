//! This node's usage since it started, per key, day, model and upstream:
//! cumulative counters, each remembering what the cluster has committed of
//! it, so a report carries only the cells that changed since, and carries
//! them again until one commits.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use proto::tenancy::{Counters, MAX_REPORT_CELLS, UsageBucket};

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    counters: Counters,
    committed: Counters,
}

/// The cumulative cells of this boot.
#[derive(Debug, Default)]
pub struct Cells {
    cells: Mutex<HashMap<UsageBucket, Cell>>,
}

impl Cells {
    fn lock(&self) -> MutexGuard<'_, HashMap<UsageBucket, Cell>> {
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one answered request to its cell.
    pub fn add(&self, cell: UsageBucket, one: &Counters) {
        self.lock().entry(cell).or_default().counters.add(one);
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

    fn bucket(day: u32) -> UsageBucket {
        UsageBucket {
            key: "acme".into(),
            day,
            model: "fast".into(),
            upstream: "a".into(),
        }
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
