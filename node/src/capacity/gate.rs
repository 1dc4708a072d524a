//! The capacity decisions, pure: how many of a capacity's slots a class may
//! fill, whether one more request of it fits, and how long it may wait for
//! one. No clock, no socket, no shared state: the caller passes the counts
//! and the instants it read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The share (0 to 1) of any capacity the class at `rank` may fill: all of
/// it but what the classes above it reserve. `reserved` lists the classes'
/// reserved shares in priority order; a rank past the list is the last
/// class's.
pub fn usable_share(reserved: &[f64], rank: usize) -> f64 {
    let above: f64 = reserved
        .iter()
        .take(rank.min(reserved.len().saturating_sub(1)))
        .filter(|r| r.is_finite())
        .map(|r| r.clamp(0.0, 1.0))
        .sum();
    (1.0 - above).clamp(0.0, 1.0)
}

/// The slots of a `capacity` a class with `share` may fill. A reserve
/// rounds up, so the classes below it get the whole slots left: with 3
/// slots and half of them reserved, the reserve holds 2 and the rest 1.
/// A share of 1 is the whole capacity.
pub fn slots(capacity: usize, share: f64) -> usize {
    if share >= 1.0 {
        return capacity;
    }
    // NaN and anything not above zero: nothing.
    if share.is_nan() || share <= 0.0 {
        return 0;
    }
    // The epsilon keeps 4 × 0.5 at 2 whatever the float rounding.
    let slots = (capacity as f64 * share + 1e-9).floor();
    (slots as usize).min(capacity)
}

/// Whether one more request fits beside `in_flight` under `limit`.
pub fn fits(in_flight: usize, limit: usize) -> bool {
    in_flight < limit
}

/// Takes one of `limit` slots counted in `count`, atomically: false, and
/// the count untouched, when they are all taken.
pub fn take(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            fits(n, limit).then_some(n + 1)
        })
        .is_ok()
}

/// Until when a request that started at `started` may wait for capacity:
/// its class's `queue`, never past its `deadline`; `None` when it may not
/// wait at all (a queue of 0, or no time left).
pub fn wait_until(started: Instant, queue: Duration, deadline: Instant) -> Option<Instant> {
    if queue.is_zero() {
        return None;
    }
    let until = started.checked_add(queue).unwrap_or(deadline).min(deadline);
    (until > started).then_some(until)
}

/// How long a shed client is told to wait (`Retry-After`): the class's
/// queue rounded up to a second, at least one.
pub fn retry_after(queue: Duration) -> Duration {
    Duration::from_secs(queue.as_secs_f64().ceil().max(1.0) as u64)
}

/// Whether the slots in flight, by class (`counts`, by rank, the candidate
/// of class `rank` counted in), leave every class its reserve: for each
/// rank `m` from 1 to `rank`, the classes at `m` and below hold at most
/// `limit(m)` slots, the slots class `m` may fill. The whole capacity
/// (`m` = 0) is the upstream's own counter's ([`take`]).
///
/// So a class's reserve is used by that class first: with 10 slots and pro
/// reserving half, free holds at most 5 whatever pro holds, and pro may
/// fill the rest; pro is never left fewer than its 5 by free.
pub fn classes_fit(counts: &[usize], rank: usize, limit: impl Fn(usize) -> usize) -> bool {
    let rank = rank.min(counts.len().saturating_sub(1));
    let mut suffix: usize = counts.iter().skip(rank + 1).sum();
    for m in (1..=rank).rev() {
        suffix = suffix.saturating_add(counts.get(m).copied().unwrap_or(0));
        if suffix > limit(m) {
            return false;
        }
    }
    true
}
