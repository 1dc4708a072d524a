//! One class's recent requests: a ring of time slots, each with its
//! answered and failed counts and an HDR histogram of the answered ones'
//! latency, merged on read into the window's figures. Pure: every call
//! takes the time in milliseconds on the caller's clock.

use std::time::Duration;

use hdrhistogram::Histogram;
use proto::health::{MAX_MICROS, empty_histogram};

/// One slot of the ring.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// Which slot of time it holds (`now_ms / slot_ms`); a slot of an
    /// older time is stale and starts over when written.
    epoch: u64,
    answered: u64,
    failed: u64,
    /// Latency of the answered requests, in microseconds; made on first use.
    latency: Option<Histogram<u64>>,
}

/// What a class's window holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Requests answered.
    pub answered: u64,
    /// Requests that failed (no upstream's answer, or shed).
    pub failed: u64,
    /// p99 latency of the answered ones in milliseconds; `None` when none were.
    pub p99_ms: Option<f64>,
}

impl Counts {
    /// Requests in the window.
    pub fn requests(&self) -> u64 {
        self.answered + self.failed
    }
}

/// A ring of `slots` slots of `slot_ms` each: the window is the last
/// `slots × slot_ms` milliseconds (the current slot partly).
#[derive(Debug, Clone)]
pub struct Window {
    slot_ms: u64,
    slots: Vec<Slot>,
}

impl Window {
    /// An empty window of `slots` slots of `slot_ms` each (at least one of
    /// one millisecond).
    pub fn new(slots: usize, slot_ms: u64) -> Self {
        Self {
            slot_ms: slot_ms.max(1),
            slots: vec![Slot::default(); slots.max(1)],
        }
    }

    /// Records one request at `now_ms`: answered after `latency`, or
    /// failed (`None`).
    pub fn record(&mut self, now_ms: u64, latency: Option<Duration>) {
        let epoch = now_ms / self.slot_ms;
        let n = self.slots.len() as u64;
        let Some(slot) = self.slots.get_mut((epoch % n) as usize) else {
            return;
        };
        if slot.epoch != epoch {
            slot.epoch = epoch;
            slot.answered = 0;
            slot.failed = 0;
            if let Some(h) = &mut slot.latency {
                h.reset();
            }
        }
        match latency {
            Some(latency) => {
                slot.answered += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                let h = slot.latency.get_or_insert_with(empty_histogram);
                // Out of range only past ten minutes: counted at the top.
                let _ = h.record(micros.clamp(1, MAX_MICROS));
            }
            None => slot.failed += 1,
        }
    }

    /// The window's counts and p99 at `now_ms`.
    pub fn counts(&self, now_ms: u64) -> Counts {
        let epoch = now_ms / self.slot_ms;
        let n = self.slots.len() as u64;
        let mut counts = Counts {
            answered: 0,
            failed: 0,
            p99_ms: None,
        };
        let mut merged: Option<Histogram<u64>> = None;
        for slot in &self.slots {
            if slot.epoch > epoch || epoch - slot.epoch >= n {
                continue;
            }
            counts.answered += slot.answered;
            counts.failed += slot.failed;
            if let Some(h) = slot.latency.as_ref().filter(|h| !h.is_empty()) {
                // Same shape on both sides, so adding cannot fail.
                let _ = merged.get_or_insert_with(empty_histogram).add(h);
            }
        }
        counts.p99_ms = merged.map(|h| h.value_at_quantile(0.99) as f64 / 1_000.0);
        counts
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn counts_the_window_and_forgets_what_aged_out() {
        let mut w = Window::new(3, 1_000);
        assert_eq!(w.counts(0).requests(), 0);
        assert_eq!(w.counts(0).p99_ms, None);
        for i in 0..99 {
            w.record(100 + i, Some(Duration::from_millis(10)));
        }
        w.record(1_500, Some(Duration::from_millis(2_000)));
        w.record(1_600, None);
        let c = w.counts(2_999);
        assert_eq!((c.answered, c.failed), (100, 1));
        let p99 = c.p99_ms.unwrap();
        assert!((9.9..=10.1).contains(&p99), "{p99}");
        // The first slot ages out at 3 s, the second at 4 s.
        let c = w.counts(3_000);
        assert_eq!((c.answered, c.failed), (1, 1));
        assert!(c.p99_ms.unwrap() >= 1_990.0);
        // A slot reused for a later time starts over.
        w.record(4_100, None);
        let c = w.counts(4_100);
        assert_eq!((c.answered, c.failed, c.p99_ms), (0, 1, None));
    }
}
