//! Per-upstream latency and outcome windows on this node.
//!
//! The data plane appends each sample to its own worker's queue (a lock no
//! other request thread takes, and no wakeup); one task drains the queues on
//! its publish tick, owns the histograms and publishes an immutable
//! [`WindowSummary`] into each upstream's `ArcSwap`, where the router reads
//! it. (A channel woke the recorder's thread once per request, which cost
//! about a fifth of the proxy's CPU: benches/README.md.) [`Windows`] is pure: every call takes the time
//! as milliseconds on the caller's clock, so tests drive it without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::routing::Upstream;

/// How one attempt at an upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer, fully relayed.
    Success,
    /// A 4xx the client caused (not the upstream's fault), passed through.
    ClientError,
    /// Connect error, 5xx, 429, a cut body: the upstream failed.
    Error,
    /// No first byte within the timeout.
    Timeout,
}

/// One attempt's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// How it ended.
    pub outcome: Outcome,
    /// Time to the first byte (a stream's first chunk); for a timeout, the timeout.
    pub ttfb: Option<Duration>,
    /// Time to the end of the answer.
    pub total: Option<Duration>,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Samples behind the figures.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// What the router and the admin API see of one upstream's recent window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WindowSummary {
    /// Span of the window in seconds.
    pub window_s: u64,
    /// Attempts in the window.
    pub attempts: u64,
    /// 2xx answers.
    pub successes: u64,
    /// Client-caused 4xx answers passed through.
    pub client_errors: u64,
    /// Upstream failures.
    pub errors: u64,
    /// First-byte timeouts.
    pub timeouts: u64,
    /// (errors + timeouts) / attempts, 0 when there were none.
    pub error_rate: f64,
    /// Time to first byte.
    pub ttfb_ms: Quantiles,
    /// Total time.
    pub total_ms: Quantiles,
}

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

/// Highest latency a histogram tracks: ten minutes, in microseconds.
const MAX_MICROS: u64 = 600_000_000;

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
    /// `slots` slots of `slot_ms` each (e.g. 6 × 5000 ms). Histograms keep
    /// two significant digits: 1% precision is plenty to rank upstreams and
    /// keeps each a few KiB.
    pub fn new(slots: usize, slot_ms: u64) -> Result<Self, hdrhistogram::CreationError> {
        let template = Histogram::new_with_bounds(1, MAX_MICROS, 2)?;
        Ok(Self {
            slot_ms: slot_ms.max(1),
            slots: (0..slots.max(1))
                .map(|_| Slot::new(u64::MAX, &template))
                .collect(),
        })
    }

    fn epoch(&self, now_ms: u64) -> u64 {
        now_ms / self.slot_ms
    }

    /// Adds a sample taken at `now_ms`.
    pub fn record(&mut self, now_ms: u64, sample: Sample) {
        let epoch = self.epoch(now_ms);
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % n) as usize];
        if slot.epoch != epoch {
            slot.reset(epoch);
        }
        let micros = |d: Duration| (d.as_micros() as u64).clamp(1, MAX_MICROS);
        match sample.outcome {
            Outcome::Success => slot.successes += 1,
            Outcome::ClientError => slot.client_errors += 1,
            Outcome::Error => slot.errors += 1,
            Outcome::Timeout => slot.timeouts += 1,
        }
        // Fast failures (a refused connect) say nothing about how quickly the
        // upstream answers, and would make a dead upstream look fast.
        if sample.outcome != Outcome::Error {
            if let Some(ttfb) = sample.ttfb {
                slot.ttfb.saturating_record(micros(ttfb));
            }
            if let Some(total) = sample.total {
                slot.total.saturating_record(micros(total));
            }
        }
    }

    /// The summary of every slot still inside the window at `now_ms`.
    pub fn summary(&self, now_ms: u64) -> WindowSummary {
        let epoch = self.epoch(now_ms);
        let n = self.slots.len() as u64;
        let live = || {
            self.slots
                .iter()
                .filter(move |s| s.epoch != u64::MAX && s.epoch <= epoch && epoch - s.epoch < n)
        };
        let mut ttfb = Histogram::new_from(&self.slots[0].ttfb);
        let mut total = Histogram::new_from(&self.slots[0].total);
        let mut out = WindowSummary {
            window_s: n * self.slot_ms / 1000,
            ..WindowSummary::default()
        };
        for slot in live() {
            // Same bounds on both sides, so adding cannot fail.
            let _ = ttfb.add(&slot.ttfb);
            let _ = total.add(&slot.total);
            out.successes += slot.successes;
            out.client_errors += slot.client_errors;
            out.errors += slot.errors;
            out.timeouts += slot.timeouts;
        }
        out.attempts = out.successes + out.client_errors + out.errors + out.timeouts;
        if out.attempts > 0 {
            out.error_rate = (out.errors + out.timeouts) as f64 / out.attempts as f64;
        }
        out.ttfb_ms = quantiles(&ttfb);
        out.total_ms = quantiles(&total);
        out
    }
}

fn quantiles(h: &Histogram<u64>) -> Quantiles {
    if h.is_empty() {
        return Quantiles::default();
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Quantiles {
        count: h.len(),
        p50: ms(0.50),
        p90: ms(0.90),
        p99: ms(0.99),
        p999: ms(0.999),
    }
}

/// A sample on its way to the recorder.
type Queued = (Arc<Upstream>, Sample);

/// Samples waiting for the recorder, one queue per data-plane worker.
struct Queues {
    shards: Box<[Mutex<Vec<Queued>>]>,
}

/// Samples a queue holds between two drains before dropping new ones: far
/// more than a worker serves in one publish tick.
const QUEUE_CAP: usize = 65_536;

impl Queues {
    fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// Moves every queued sample into `into`. Each queue is swapped for an
    /// empty buffer that already has capacity, so the lock is held only for
    /// the swap and the queues rarely reallocate.
    fn drain(&self, into: &mut Vec<Queued>, spare: &mut Vec<Queued>) {
        for shard in &self.shards {
            spare.clear();
            std::mem::swap(
                &mut *shard.lock().unwrap_or_else(PoisonError::into_inner),
                spare,
            );
            into.append(spare);
        }
    }
}

/// Where the data plane sends samples; cloning is cheap.
#[derive(Clone)]
pub struct HealthSink {
    queues: Arc<Queues>,
}

impl HealthSink {
    /// Queues a sample on this worker's queue. If the recorder is behind by
    /// a whole queue, the sample is dropped rather than making a request wait.
    pub fn record(&self, upstream: &Arc<Upstream>, sample: Sample) {
        let shards = &self.queues.shards;
        let shard = &shards[crate::upstream::worker() % shards.len()];
        let mut queue = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() < QUEUE_CAP {
            queue.push((upstream.clone(), sample));
        } else {
            drop(queue);
            tracing::debug!(upstream = %upstream.id, "health queue full; sample dropped");
        }
    }
}

/// How the recorder slices time.
#[derive(Debug, Clone, Copy)]
pub struct WindowShape {
    /// Number of slots.
    pub slots: usize,
    /// Length of one slot.
    pub slot: Duration,
    /// How often summaries are republished when samples arrived.
    pub publish_every: Duration,
}

impl Default for WindowShape {
    fn default() -> Self {
        Self {
            slots: 6,
            slot: Duration::from_secs(5),
            publish_every: Duration::from_millis(100),
        }
    }
}

/// Starts the task that owns every upstream's windows. It ends once every
/// [`HealthSink`] is gone.
pub fn spawn_recorder(shape: WindowShape) -> HealthSink {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queues = Arc::new(Queues::new(workers));
    let weak = Arc::downgrade(&queues);
    tokio::spawn(record_loop(weak, shape));
    HealthSink { queues }
}

async fn record_loop(queues: Weak<Queues>, shape: WindowShape) {
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut windows: HashMap<Arc<str>, (Windows, Arc<Upstream>)> = HashMap::new();
    let mut tick = tokio::time::interval(shape.publish_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut batch, mut spare) = (Vec::new(), Vec::new());
    let mut last_publish = 0u64;
    let slot_ms = shape.slot.as_millis() as u64;
    let empty = match Windows::new(shape.slots, slot_ms) {
        Ok(empty) => empty,
        Err(e) => {
            tracing::error!(error = %e, "cannot size the health histograms; health windows are off");
            return;
        }
    };
    loop {
        tick.tick().await;
        let Some(queues) = queues.upgrade() else {
            break;
        };
        queues.drain(&mut batch, &mut spare);
        drop(queues);
        let now = now_ms();
        let dirty = !batch.is_empty();
        for (upstream, sample) in batch.drain(..) {
            let entry = windows
                .entry(upstream.id.clone())
                .or_insert_with(|| (empty.clone(), upstream.clone()));
            // A rebuilt routing table brings a new `Upstream`; publish to it.
            if !Arc::ptr_eq(&entry.1, &upstream) {
                entry.1 = upstream;
            }
            entry.0.record(now, sample);
        }
        // Publish while samples arrive, and at least once a slot so that an
        // idle upstream's old samples age out.
        if dirty || now.saturating_sub(last_publish) >= slot_ms {
            for (w, upstream) in windows.values() {
                upstream.live.summary.store(Arc::new(w.summary(now)));
            }
            last_publish = now;
        }
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
        let mut w = Windows::new(6, 5_000).unwrap();
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
        let mut w = Windows::new(6, 5_000).unwrap();
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
    fn errors_count_but_do_not_look_fast() {
        let mut w = Windows::new(6, 5_000).unwrap();
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
