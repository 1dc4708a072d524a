//! Per-upstream latency and outcome windows on this node, and the circuit
//! breakers they drive.
//!
//! The data plane appends each sample to its own worker's queue (a lock no
//! other request thread takes, and no wakeup); one task drains the queues on
//! its publish tick, owns the histograms and the breakers, and publishes an
//! immutable [`WindowSummary`] into each upstream's `ArcSwap` and the circuit
//! state into its atomics, where the router reads them. (A channel woke the
//! recorder's thread once per request, which cost about a fifth of the
//! proxy's CPU: benches/README.md.) Every report interval it also cuts a
//! [`HealthReport`] of all windows for the cluster. [`Windows`] and
//! [`Breaker`] are pure: every call takes the time as milliseconds on the
//! caller's clock, so tests drive them without sleeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use proto::health::{HealthReport, MAX_MICROS, UpstreamWindow, empty_histogram, encode_histogram};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerPolicy, Change, Circuit};
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
    /// The upstream failed after part of the answer had reached the client
    /// (a stream cut mid-way): no failover can undo it.
    Broken,
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
    /// 95th percentile (the hedging delay).
    pub p95: f64,
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

    /// Every slot still inside the window at `now_ms`, added into one.
    fn merged(&self, now_ms: u64) -> Slot {
        let epoch = self.epoch(now_ms);
        let n = self.slots.len() as u64;
        let mut out = Slot::new(epoch, &self.slots[0].ttfb);
        let live = self
            .slots
            .iter()
            .filter(|s| s.epoch != u64::MAX && s.epoch <= epoch && epoch - s.epoch < n);
        for slot in live {
            out.add(slot);
        }
        out
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
        // Prometheus counts every attempt here, where each is told once.
        upstream.metrics.attempt(&sample);
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

/// What the recorder needs to know: how it slices time, how often it
/// publishes and reports, and when circuits open.
#[derive(Debug, Clone)]
pub struct RecorderSettings {
    /// Slots in a window.
    pub slots: usize,
    /// Length of one slot.
    pub slot: Duration,
    /// How often queued samples are drained and summaries republished.
    pub publish_every: Duration,
    /// How often a health report is cut for the cluster.
    pub report_every: Duration,
    /// This node's region, carried in its reports.
    pub region: String,
    /// When circuits open and for how long.
    pub breaker: BreakerPolicy,
    /// Data-plane workers, one sample queue each (built by
    /// `crate::settings::Settings` from the node's file).
    pub workers: usize,
}

/// One upstream as the recorder tracks it.
struct Tracked {
    windows: Windows,
    breaker: Breaker,
    /// Where to publish; a rebuilt routing table brings a new `Upstream`.
    upstream: Arc<Upstream>,
}

/// The recorder's state between ticks; the async loop only feeds it time
/// and samples.
struct Recorder {
    settings: RecorderSettings,
    empty: Windows,
    tracked: HashMap<Arc<str>, Tracked>,
    last_publish: u64,
}

impl Recorder {
    fn new(settings: RecorderSettings) -> Self {
        let empty = Windows::new(settings.slots, settings.slot.as_millis() as u64);
        Self {
            settings,
            empty,
            tracked: HashMap::new(),
            last_publish: 0,
        }
    }

    /// Records a batch of samples and feeds each to its upstream's breaker.
    fn ingest(&mut self, now_ms: u64, batch: &mut Vec<Queued>) {
        for (upstream, sample) in batch.drain(..) {
            let t = self
                .tracked
                .entry(upstream.id.clone())
                .or_insert_with(|| Tracked {
                    windows: self.empty.clone(),
                    breaker: Breaker::default(),
                    upstream: upstream.clone(),
                });
            if !Arc::ptr_eq(&t.upstream, &upstream) {
                t.upstream = upstream;
                t.upstream
                    .live
                    .set_circuit(t.breaker.circuit(), /* probe */ false);
            }
            t.windows.record(now_ms, sample);
            let policy = &self.settings.breaker;
            let change = match sample.outcome {
                Outcome::Broken => t.breaker.on_broken(now_ms, policy),
                Outcome::Error | Outcome::Timeout => t.breaker.on_result(now_ms, true, policy),
                Outcome::Success | Outcome::ClientError => {
                    t.breaker.on_result(now_ms, false, policy)
                }
            };
            if let Some(change) = change {
                t.changed(change);
            }
        }
    }

    /// Advances the breakers and republishes the summaries when samples
    /// arrived (`dirty`) or a slot has passed, so old samples age out.
    fn tick(&mut self, now_ms: u64, dirty: bool) {
        for t in self.tracked.values_mut() {
            if let Some(change) = t.breaker.on_tick(now_ms, &self.settings.breaker) {
                t.changed(change);
            }
        }
        let slot_ms = self.settings.slot.as_millis() as u64;
        if dirty || now_ms.saturating_sub(self.last_publish) >= slot_ms {
            for t in self.tracked.values() {
                t.upstream
                    .live
                    .summary
                    .store(Arc::new(t.windows.summary(now_ms)));
            }
            self.last_publish = now_ms;
        }
    }

    /// This node's window of every upstream it sent to, for the cluster.
    /// The reporter numbers it.
    fn report(&self, now_ms: u64, unix_ms: u64) -> HealthReport {
        let upstreams: BTreeMap<String, UpstreamWindow> = self
            .tracked
            .iter()
            .filter_map(|(id, t)| Some((id.to_string(), t.windows.report(now_ms)?)))
            .collect();
        HealthReport {
            seq: 0,
            region: self.settings.region.clone(),
            at_unix_ms: unix_ms,
            window_ms: self.empty.span_ms(),
            upstreams,
        }
    }
}

impl Tracked {
    fn changed(&mut self, change: Change) {
        let id = &self.upstream.id;
        self.upstream.metrics.circuit_changed(match change {
            Change::Opened { .. } => Circuit::Open,
            Change::Probe => Circuit::HalfOpen,
            Change::Closed => Circuit::Closed,
        });
        match change {
            Change::Opened { for_ms } => {
                tracing::warn!(upstream = %id, ejection_ms = for_ms, "circuit opened: upstream ejected");
                self.upstream.live.set_circuit(Circuit::Open, false);
            }
            Change::Probe => {
                tracing::info!(upstream = %id, "circuit half-open: sending a probe");
                self.upstream.live.set_circuit(Circuit::HalfOpen, true);
            }
            Change::Closed => {
                tracing::info!(upstream = %id, "circuit closed: probe succeeded");
                self.windows.clear();
                self.upstream.live.set_circuit(Circuit::Closed, false);
            }
        }
    }
}

/// Starts the task that owns every upstream's windows and breakers. It
/// ends once every [`HealthSink`] is gone. The receiver sees each health
/// report as it is cut.
pub fn spawn_recorder(
    settings: RecorderSettings,
) -> (HealthSink, watch::Receiver<Option<Arc<HealthReport>>>) {
    let queues = Arc::new(Queues::new(settings.workers.max(1)));
    let weak = Arc::downgrade(&queues);
    let (reports, receiver) = watch::channel(None);
    tokio::spawn(record_loop(weak, Recorder::new(settings), reports));
    (HealthSink { queues }, receiver)
}

async fn record_loop(
    queues: Weak<Queues>,
    mut recorder: Recorder,
    reports: watch::Sender<Option<Arc<HealthReport>>>,
) {
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut tick = tokio::time::interval(recorder.settings.publish_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let report_ms = recorder.settings.report_every.as_millis() as u64;
    let mut last_report = 0u64;
    let (mut batch, mut spare) = (Vec::new(), Vec::new());
    loop {
        tick.tick().await;
        let Some(queues) = queues.upgrade() else {
            break;
        };
        queues.drain(&mut batch, &mut spare);
        drop(queues);
        let now = now_ms();
        let dirty = !batch.is_empty();
        recorder.ingest(now, &mut batch);
        recorder.tick(now, dirty);
        if now.saturating_sub(last_report) >= report_ms {
            last_report = now;
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            reports.send_replace(Some(Arc::new(recorder.report(now, unix_ms))));
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
