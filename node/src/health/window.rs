//! One upstream's recent history on this node: rotating time slots of
//! latency histograms and outcome counts ([`Windows`]), and what the router
//! and the admin API read of them ([`WindowSummary`]). Pure: every call
//! takes the time as milliseconds on the caller's clock, so tests drive a
//! window without sleeping.

use std::time::Duration;

use hdrhistogram::Histogram;
use proto::health::{MAX_MICROS, UpstreamWindow, empty_histogram, encode_histogram};

use super::{Outcome, Sample};

/// Latency quantiles in milliseconds, as the admin API writes them.
pub use proto::api::admin::Quantiles;
/// What the router and the admin API see of one upstream's recent window:
/// the admin API's own wire shape, so the answer is this value as it is.
pub use proto::api::admin::WindowView as WindowSummary;

#[derive(Clone)]
struct Slot {
    epoch: u64,
    ttfb: Histogram<u64>,
    total: Histogram<u64>,
    successes: u64,
    client_errors: u64,
    errors: u64,
    timeouts: u64,
}

impl Slot {
    fn new(epoch: u64, template: &Histogram<u64>) -> Self {
        Self {
            epoch,
            ttfb: Histogram::new_from(template),
            total: Histogram::new_from(template),
            successes: 0,
            client_errors: 0,
            errors: 0,
            timeouts: 0,
        }
    }

    /// Adds another slot's samples and counts into this one.
    fn add(&mut self, other: &Slot) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.ttfb.add(&other.ttfb);
        let _ = self.total.add(&other.total);
        self.successes += other.successes;
        self.client_errors += other.client_errors;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
    }

    fn attempts(&self) -> u64 {
        self.successes + self.client_errors + self.errors + self.timeouts
    }

    fn reset(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.ttfb.reset();
        self.total.reset();
        self.successes = 0;
        self.client_errors = 0;
        self.errors = 0;
        self.timeouts = 0;
    }
}

/// Rotating time slots of histograms and counts for one upstream: the last
/// `slots × slot_ms` of history, aged out a slot at a time.
#[derive(Clone)]
pub struct Windows {
    slot_ms: u64,
    slots: Vec<Slot>,
}

impl Windows {
    /// `slots` slots of `slot_ms` each (e.g. 6 × 5000 ms), with histograms
    /// of the shape health reports carry.
    pub fn new(slots: usize, slot_ms: u64) -> Self {
        let template = empty_histogram();
        Self {
            slot_ms: slot_ms.max(1),
            slots: (0..slots.max(1))
                .map(|_| Slot::new(u64::MAX, &template))
                .collect(),
        }
    }

    /// How much history a window holds, in milliseconds.
    pub fn span_ms(&self) -> u64 {
        self.slots.len() as u64 * self.slot_ms
    }

    /// Forgets every sample: after a circuit closes, the failures that
    /// opened it no longer describe the upstream.
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.reset(u64::MAX);
        }
    }

    /// Forgets every latency sample but keeps the outcome counts: the
    /// upstream's level changed ([`super::blend::changed`]), so the old
    /// times describe an upstream that no longer is, while its errors
    /// still count towards its error rate.
    pub fn forget_latency(&mut self) {
        for slot in &mut self.slots {
            slot.ttfb.reset();
            slot.total.reset();
        }
    }

    /// Adds the times to first byte of `other`'s slot of `now_ms` (the
    /// newest) into this window's slot of `now_ms`: what is kept of the
    /// newest samples when the rest is forgotten.
    pub fn keep_newest(&mut self, now_ms: u64, other: &Windows) {
        let epoch = other.epoch(now_ms);
        let n = other.slots.len() as u64;
        let newest = &other.slots[(epoch % n) as usize];
        if newest.epoch == epoch {
            // Same bounds on both sides, so adding cannot fail.
            let _ = self.slot(now_ms).ttfb.add(&newest.ttfb);
        }
    }

    fn epoch(&self, now_ms: u64) -> u64 {
        now_ms / self.slot_ms
    }

    /// Adds a sample taken at `now_ms`.
    pub fn record(&mut self, now_ms: u64, sample: Sample) {
        let slot = self.slot(now_ms);
        let micros = |d: Duration| (d.as_micros() as u64).clamp(1, MAX_MICROS);
        match sample.outcome {
            Outcome::Success => slot.successes += 1,
            Outcome::ClientError => slot.client_errors += 1,
            Outcome::Error | Outcome::Broken => slot.errors += 1,
            Outcome::Timeout => slot.timeouts += 1,
        }
        // Fast failures (a refused connect) say nothing about how quickly the
        // upstream answers, and would make a dead upstream look fast.
        if !matches!(sample.outcome, Outcome::Error | Outcome::Broken) {
            if let Some(ttfb) = sample.ttfb {
                slot.ttfb.saturating_record(micros(ttfb));
            }
            if let Some(total) = sample.total {
                slot.total.saturating_record(micros(total));
            }
        }
    }

    /// Adds the first byte of a stream, taken at `now_ms`, as it arrives:
    /// a stream may run for minutes, and its first byte says how fast the
    /// upstream is now. Its outcome and total are added when it ends, by
    /// [`Windows::record`] with no `ttfb`.
    pub fn first_byte(&mut self, now_ms: u64, ttfb: Duration) {
        let slot = self.slot(now_ms);
        slot.ttfb
            .saturating_record((ttfb.as_micros() as u64).clamp(1, MAX_MICROS));
    }

    /// The slot of `now_ms`, emptied first if it held an older epoch.
    fn slot(&mut self, now_ms: u64) -> &mut Slot {
        let epoch = self.epoch(now_ms);
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % n) as usize];
        if slot.epoch != epoch {
            slot.reset(epoch);
        }
        slot
    }

    /// Every slot still inside the window at `now_ms`, added into one.
    fn merged(&self, now_ms: u64) -> Slot {
        let mut out = Slot::new(self.epoch(now_ms), &self.slots[0].ttfb);
        for slot in self.live(now_ms) {
            out.add(slot);
        }
        out
    }

    /// The time-to-first-byte quantiles of every slot still inside the
    /// window at `now_ms`.
    pub fn ttfb(&self, now_ms: u64) -> Quantiles {
        let mut out = Histogram::new_from(&self.slots[0].ttfb);
        for slot in self.live(now_ms) {
            // Same bounds on both sides, so adding cannot fail.
            let _ = out.add(&slot.ttfb);
        }
        quantiles(&out)
    }

    /// The slots still inside the window at `now_ms`.
    fn live(&self, now_ms: u64) -> impl Iterator<Item = &Slot> {
        let epoch = self.epoch(now_ms);
        let n = self.slots.len() as u64;
        self.slots
            .iter()
            .filter(move |s| s.epoch != u64::MAX && s.epoch <= epoch && epoch - s.epoch < n)
    }

    /// The summary of every slot still inside the window at `now_ms`.
    pub fn summary(&self, now_ms: u64) -> WindowSummary {
        let m = self.merged(now_ms);
        let attempts = m.attempts();
        WindowSummary {
            window_s: self.span_ms() / 1000,
            attempts,
            successes: m.successes,
            client_errors: m.client_errors,
            errors: m.errors,
            timeouts: m.timeouts,
            error_rate: error_rate(m.errors + m.timeouts, attempts),
            ttfb_ms: quantiles(&m.ttfb),
            total_ms: quantiles(&m.total),
        }
    }

    /// The window as a health report carries it; `None` when it holds no
    /// attempt (or its histograms cannot be encoded, which is logged).
    pub fn report(&self, now_ms: u64) -> Option<UpstreamWindow> {
        let m = self.merged(now_ms);
        let window = UpstreamWindow {
            successes: m.successes,
            client_errors: m.client_errors,
            errors: m.errors,
            timeouts: m.timeouts,
            ttfb: encode_histogram(&m.ttfb)
                .map_err(|e| tracing::error!(error = %e, "health report left out"))
                .ok()?,
            total: encode_histogram(&m.total)
                .map_err(|e| tracing::error!(error = %e, "health report left out"))
                .ok()?,
        };
        (window.attempts() > 0).then_some(window)
    }
}

/// Failed attempts (errors and timeouts) as a share of all attempts; 0
/// when there were none.
pub fn error_rate(failed: u64, attempts: u64) -> f64 {
    if attempts == 0 {
        0.0
    } else {
        failed as f64 / attempts as f64
    }
}

/// The quantiles of a histogram of microseconds, in milliseconds.
pub fn quantiles(h: &Histogram<u64>) -> Quantiles {
    if h.is_empty() {
        return Quantiles::default();
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Quantiles {
        count: h.len(),
        p50: ms(0.50),
        p90: ms(0.90),
        p95: ms(0.95),
        p99: ms(0.99),
        p999: ms(0.999),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn ok(ms: u64) -> Sample {
        Sample {
            outcome: Outcome::Success,
            ttfb: Some(Duration::from_millis(ms)),
            total: Some(Duration::from_millis(ms * 2)),
        }
    }

    #[test]
    fn quantiles_follow_samples() {
        let mut w = Windows::new(6, 5_000);
        for i in 1..=1000 {
            w.record(1_000, ok(i));
        }
        let s = w.summary(1_000);
        assert_eq!(s.attempts, 1000);
        assert_eq!(s.ttfb_ms.count, 1000);
        assert!((s.ttfb_ms.p50 - 500.0).abs() <= 5.0, "{s:?}");
        assert!((s.ttfb_ms.p99 - 990.0).abs() <= 10.0, "{s:?}");
        assert!((s.total_ms.p99 - 1980.0).abs() <= 20.0, "{s:?}");
        assert_eq!(s.window_s, 30);
    }

    #[test]
    fn old_slots_age_out() {
        let mut w = Windows::new(6, 5_000);
        w.record(0, ok(900));
        w.record(29_999, ok(10));
        assert_eq!(w.summary(29_999).attempts, 2);
        // At 30 s the first slot (epoch 0) has left the window.
        let s = w.summary(30_000);
        assert_eq!(s.attempts, 1);
        assert!(s.ttfb_ms.p99 < 11.0);
        // A slot reused for a new epoch starts empty.
        w.record(30_001, ok(20));
        assert_eq!(w.summary(30_001).attempts, 2);
        assert_eq!(w.summary(100_000).attempts, 0);
    }

    #[test]
    fn a_streams_first_byte_counts_at_once_and_its_end_adds_no_second() {
        let mut w = Windows::new(6, 5_000);
        w.first_byte(0, Duration::from_millis(250));
        let s = w.summary(0);
        assert_eq!((s.attempts, s.ttfb_ms.count), (0, 1));
        assert!(s.ttfb_ms.p50 >= 249.0);
        w.record(
            900,
            Sample {
                ttfb: None,
                ..ok(250)
            },
        );
        let s = w.summary(900);
        assert_eq!((s.attempts, s.ttfb_ms.count, s.total_ms.count), (1, 1, 1));
    }

    #[test]
    fn forgetting_latency_keeps_the_outcomes() {
        let mut w = Windows::new(6, 5_000);
        w.record(0, ok(20));
        w.record(
            0,
            Sample {
                outcome: Outcome::Error,
                ttfb: None,
                total: None,
            },
        );
        w.forget_latency();
        let s = w.summary(0);
        assert_eq!((s.attempts, s.errors, s.ttfb_ms.count), (2, 1, 0));
        assert_eq!(w.ttfb(0).count, 0);
        // The newest quarter second of a short window is kept.
        let mut recent = Windows::new(4, 250);
        recent.record(0, ok(900));
        recent.record(300, ok(200));
        w.keep_newest(300, &recent);
        let q = w.ttfb(300);
        assert_eq!(q.count, 1);
        assert!(q.p99 < 210.0, "{q:?}");
    }

    #[test]
    fn errors_count_but_do_not_look_fast() {
        let mut w = Windows::new(6, 5_000);
        w.record(0, ok(100));
        for _ in 0..3 {
            w.record(
                0,
                Sample {
                    outcome: Outcome::Error,
                    ttfb: Some(Duration::from_millis(1)),
                    total: None,
                },
            );
        }
        w.record(
            0,
            Sample {
                outcome: Outcome::Timeout,
                ttfb: Some(Duration::from_millis(2_000)),
                total: None,
            },
        );
        let s = w.summary(0);
        assert_eq!((s.successes, s.errors, s.timeouts), (1, 3, 1));
        assert!((s.error_rate - 0.8).abs() < 1e-9);
        assert_eq!(s.ttfb_ms.count, 2);
        assert!(
            s.ttfb_ms.p50 >= 99.0,
            "refused connects must not pull p50 down"
        );
        assert!(s.ttfb_ms.p99 >= 1990.0, "timeouts count at the timeout");
    }
}
