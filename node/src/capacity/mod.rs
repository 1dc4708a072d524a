//! Upstream capacity and priority classes on the data plane.
//!
//! An upstream with `max_concurrency` takes at most that many attempts in
//! flight from this node. The `[[classes]]` (in priority order) divide every
//! capacity: a class's `reserved` share may be used only by it and the
//! classes above it, so the class at rank `r` may fill `1 − Σ reserved`
//! of the classes above it ([`gate::usable_share`]); the first class may
//! fill all of it. A reserve is used by its class first: the classes at
//! rank `m` and below together never hold more than class `m` may fill
//! ([`gate::classes_fit`]), so they never take a slot from the reserves
//! above them. With `max_concurrency = 4` and pro reserving 0.5, free
//! requests fill at most 2 slots and pro requests the other 2 at least, and
//! all 4 while free holds none.
//!
//! A target at capacity for a request's class is not eligible for it: the
//! plan leaves it out, so the request goes to the next target or tier
//! first, and is shed (429 `overloaded` with `Retry-After`) only when none
//! is left. A class with `queue_ms` waits that long for a slot to free
//! first, never past the request's deadline ([`gate::wait_until`]).
//!
//! The node's own `proxy.max_in_flight` is divided the same way, so a full
//! node sheds the lowest class first: with pro reserving 0.5 and a
//! `max_in_flight` of 1,000, free requests are shed once 500 requests are
//! in flight and pro ones only at 1,000. That head-room is the reserve of
//! the classes above: each class above the last may use the slots the
//! classes below it may not.
//!
//! An upstream's `rpm` (the provider account's, shared by all nodes) is
//! divided the same way: each node sends at most its part of it ([`rpm`]),
//! and each class its share of that part.
//!
//! The decisions are pure ([`gate`]); the slots are counted per class
//! ([`slots`]) and in the upstream's own in-flight counter
//! (`meridian_upstream_in_flight`), taken atomically ([`gate::take`]) and
//! released by a drop guard (`routing::InFlight`, holding a [`Slot`]) on
//! every path (answered, failed, timed out, the client gone mid-stream),
//! which wakes the requests waiting in a class's queue.

pub mod gate;
pub mod rpm;
pub mod slots;
#[cfg(test)]
mod tests;

pub use slots::Held;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::config::{ClassConfig, class_rank};
use tokio::sync::Notify;

use rpm::RpmWindows;
use slots::Slots;

/// An upstream as the gate sees it: its id, its limits, and its in-flight
/// counter (`routing::Upstream::gated`).
#[derive(Debug, Clone, Copy)]
pub struct Gated<'a> {
    /// Its id.
    pub id: &'a Arc<str>,
    /// Its `max_concurrency`.
    pub max_concurrency: Option<u32>,
    /// Its account's `rpm`.
    pub rpm: Option<u64>,
    /// Attempts in flight to it from this node.
    pub in_flight: &'a AtomicUsize,
}

/// One attempt counted in its upstream's in-flight counter, with its class
/// slot when the upstream has a capacity. Whoever holds it gives the count
/// back (`routing::InFlight`); the class slot goes back when it drops.
#[derive(Debug)]
pub struct Slot {
    _held: Option<Held>,
}

/// The class every key is in when no `[[classes]]` are configured.
pub const DEFAULT_CLASS: &str = "default";

/// One class as the data plane uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// Its name, for the metrics' labels.
    pub name: Arc<str>,
    /// The share of any capacity it may fill.
    pub share: f64,
    /// How long its requests may wait for a slot.
    pub queue: Duration,
}

/// What an upstream's `rpm` needs to know of the moment a request is
/// planned: the wall clock, and how many members share the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// Unix milliseconds.
    pub now_ms: u64,
    /// The cluster's members (at least one).
    pub members: usize,
}

/// The classes, and what tells waiting requests that a slot is free.
#[derive(Debug)]
pub struct Capacity {
    classes: Vec<Class>,
    configured: Vec<ClassConfig>,
    freed: Arc<Notify>,
    rpm: RpmWindows,
    slots: Slots,
}

impl Default for Capacity {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Capacity {
    /// The classes of `[[classes]]`, in priority order; none: one class
    /// ([`DEFAULT_CLASS`]) that may use everything.
    pub fn new(classes: &[ClassConfig]) -> Self {
        let reserved: Vec<f64> = classes.iter().map(|c| c.reserved).collect();
        let mut built: Vec<Class> = classes
            .iter()
            .enumerate()
            .map(|(rank, c)| Class {
                name: Arc::from(c.name.as_str()),
                share: gate::usable_share(&reserved, rank),
                queue: Duration::from_millis(c.queue_ms.min(proto::config::MAX_QUEUE_MS)),
            })
            .collect();
        if built.is_empty() {
            built.push(Class {
                name: Arc::from(DEFAULT_CLASS),
                share: 1.0,
                queue: Duration::ZERO,
            });
        }
        Self {
            classes: built,
            configured: classes.to_vec(),
            freed: Arc::new(Notify::new()),
            rpm: RpmWindows::default(),
            slots: Slots::default(),
        }
    }

    /// The rank (0 = served first) of a key naming `class`: the last class
    /// for none or an unknown one.
    pub fn rank(&self, class: Option<&str>) -> usize {
        class_rank(&self.configured, class)
    }

    /// The class at `rank` (the last for a rank past the list).
    pub fn class(&self, rank: usize) -> &Class {
        let last = self.classes.len() - 1;
        &self.classes[rank.min(last)]
    }

    /// Every class, in priority order.
    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// The requests in flight on this node beside which one more of the
    /// class at `rank` is admitted: its share of `max_in_flight`.
    pub fn node_limit(&self, max_in_flight: usize, rank: usize) -> usize {
        gate::slots(max_in_flight, self.class(rank).share)
    }

    /// The slots of a capacity of `capacity` the class at `rank` may fill.
    fn limit(&self, capacity: usize) -> impl Fn(usize) -> usize + '_ {
        move |rank| gate::slots(capacity, self.class(rank).share)
    }

    /// This node's per-minute part of `upstream`'s `rpm` for the class at
    /// `rank`; `None` when it has no `rpm`.
    fn rpm_allowance(&self, upstream: Gated<'_>, rank: usize, at: At) -> Option<f64> {
        let rpm = upstream.rpm?;
        Some(rpm::allowance(rpm, at.members, self.class(rank).share))
    }

    /// Whether `upstream` has a slot and a request of its `rpm` the class
    /// at `rank` may use now (the plan leaves it out otherwise).
    pub fn has_room(&self, upstream: Gated<'_>, rank: usize, at: At) -> bool {
        let slot = upstream.max_concurrency.is_none_or(|capacity| {
            let capacity = capacity as usize;
            gate::fits(upstream.in_flight.load(Ordering::Acquire), capacity)
                && self
                    .slots
                    .of(upstream.id, self.classes.len())
                    .room(rank, self.limit(capacity))
        });
        slot && self
            .rpm_allowance(upstream, rank, at)
            .is_none_or(|allowance| self.rpm.fits(upstream.id, at.now_ms, allowance))
    }

    /// Counts one attempt in `upstream`'s in-flight counter, with a slot
    /// of its capacity for the class at `rank` and one request of its
    /// `rpm`; `None`, and nothing counted, when the class may not use what
    /// is left of either.
    pub fn permit(&self, upstream: Gated<'_>, rank: usize, at: At) -> Option<Slot> {
        let slot = match upstream.max_concurrency {
            None => {
                upstream.in_flight.fetch_add(1, Ordering::AcqRel);
                Slot { _held: None }
            }
            Some(capacity) => {
                let capacity = capacity as usize;
                let held = self.slots.of(upstream.id, self.classes.len()).take(
                    rank,
                    self.limit(capacity),
                    self.freed.clone(),
                )?;
                // The class slot goes back if the total is full.
                if !gate::take(upstream.in_flight, capacity) {
                    return None;
                }
                Slot { _held: Some(held) }
            }
        };
        match self.rpm_allowance(upstream, rank, at) {
            Some(allowance) if !self.rpm.take(upstream.id, at.now_ms, allowance) => {
                upstream.in_flight.fetch_sub(1, Ordering::AcqRel);
                drop(slot);
                None
            }
            _ => Some(slot),
        }
    }

    /// Told each time a slot of an upstream with a capacity is released.
    pub fn freed(&self) -> &Notify {
        &self.freed
    }
}
