//! The slots of one upstream with a `max_concurrency`, counted per class,
//! so each class's reserve is used by that class first
//! ([`gate::classes_fit`]); the total is the upstream's own in-flight
//! counter. Lock-free: a class slot is counted first, then checked, and
//! given back when the check fails; two requests racing for the last slot
//! may both give it back (the request goes on to its next target, as for
//! a full one), never both keep it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use proto::config::MAX_CLASSES;
use tokio::sync::Notify;

use super::gate;

/// Slots in flight to one upstream, by class rank.
#[derive(Debug)]
pub struct ClassCounts {
    by_rank: Box<[AtomicUsize]>,
}

impl ClassCounts {
    fn new(classes: usize) -> Self {
        Self {
            by_rank: (0..classes.clamp(1, MAX_CLASSES))
                .map(|_| AtomicUsize::new(0))
                .collect(),
        }
    }

    fn rank(&self, rank: usize) -> usize {
        rank.min(self.by_rank.len() - 1)
    }

    /// The counts as of now, plus `extra` at `rank`.
    fn read(&self, rank: usize, extra: usize) -> [usize; MAX_CLASSES] {
        let mut counts = [0; MAX_CLASSES];
        for (c, n) in counts.iter_mut().zip(self.by_rank.iter()) {
            *c = n.load(Ordering::SeqCst);
        }
        counts[self.rank(rank)] += extra;
        counts
    }

    /// Whether one more slot of the class at `rank` fits the classes'
    /// limits (`limit(m)`: the slots class `m` may fill).
    pub fn room(&self, rank: usize, limit: impl Fn(usize) -> usize) -> bool {
        let counts = self.read(rank, 1);
        gate::classes_fit(&counts[..self.by_rank.len()], self.rank(rank), limit)
    }

    /// Takes a slot of the class at `rank` if it fits; `freed` is told when
    /// it is given back.
    pub fn take(
        self: &Arc<Self>,
        rank: usize,
        limit: impl Fn(usize) -> usize,
        freed: Arc<Notify>,
    ) -> Option<Held> {
        let rank = self.rank(rank);
        self.by_rank[rank].fetch_add(1, Ordering::SeqCst);
        // Given back on drop, should the check fail.
        let held = Held {
            counts: self.clone(),
            rank,
            freed,
        };
        let counts = self.read(rank, 0);
        gate::classes_fit(&counts[..self.by_rank.len()], rank, limit).then_some(held)
    }

    /// Slots in flight of the class at `rank`.
    pub fn of(&self, rank: usize) -> usize {
        self.by_rank[self.rank(rank)].load(Ordering::SeqCst)
    }
}

/// One class slot, given back (and the waiters told) when dropped.
#[derive(Debug)]
pub struct Held {
    counts: Arc<ClassCounts>,
    rank: usize,
    freed: Arc<Notify>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counts.by_rank[self.rank].fetch_sub(1, Ordering::SeqCst);
        self.freed.notify_waiters();
    }
}

/// The class counts of every upstream with a capacity, by id; kept across
/// configuration changes.
#[derive(Debug, Default)]
pub struct Slots {
    by_upstream: ArcSwap<HashMap<Arc<str>, Arc<ClassCounts>>>,
}

impl Slots {
    /// The counts of upstream `id` for `classes` classes, made on first use.
    pub fn of(&self, id: &Arc<str>, classes: usize) -> Arc<ClassCounts> {
        if let Some(c) = self.by_upstream.load().get(id) {
            return c.clone();
        }
        self.by_upstream.rcu(|old| {
            let mut map = HashMap::clone(old);
            map.entry(id.clone())
                .or_insert_with(|| Arc::new(ClassCounts::new(classes)));
            map
        });
        self.by_upstream
            .load()
            .get(id)
            .cloned()
            .unwrap_or_else(|| Arc::new(ClassCounts::new(classes)))
    }
}
