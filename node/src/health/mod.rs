//! The health wing: what this node measures of each upstream, the circuit
//! breakers it drives, and the cluster's shared view.
//!
//! - [`window`]: rotating windows of latency histograms and outcome counts.
//! - [`breaker`]: one upstream's circuit breaker.
//! - [`cooldown`]: how long an upstream asked to be left alone
//!   (`Retry-After`), here and, through the reports, on every node.
//! - [`recorder`]: the task that owns the windows and breakers; its pure
//!   core returns [`recorder::Effect`]s, applied by a thin shell.
//! - [`live`]: the live state of one upstream (circuit, summary, shared
//!   estimate, attempts in flight) that a request reads without a lock.
//! - [`registry`]: every upstream's live state by id, kept across routing
//!   rebuilds; the routing table reads it.
//! - [`blend`]: how this node's own samples weigh against the cluster's
//!   figures, and when its newest samples say an upstream changed.
//! - [`peers`]: the members' reports as this node received them, checked
//!   and decoded once.
//! - [`board`]: every member's reports merged per upstream and region.
//! - [`sharing`]: this node's reports sent straight to every member, and
//!   the board rebuilt from everyone's.
//!
//! The data plane appends each sample to its own worker's queue (a lock no
//! other request thread takes, and no wakeup); one task drains the queues on
//! its publish tick, owns the histograms and the breakers, and publishes an
//! immutable [`WindowSummary`] into each upstream's `ArcSwap` and the circuit
//! state into its atomics, where the router reads them. (A channel woke the
//! recorder's thread once per request, which cost about a fifth of the
//! proxy's CPU: benches/README.md.) Every report interval it also cuts a
//! [`HealthReport`](proto::health::HealthReport) of all windows for the
//! cluster. [`Windows`] and [`Breaker`] are pure: every call takes the time
//! as milliseconds on the caller's clock, so tests drive them without
//! sleeping.

pub mod blend;
pub mod board;
pub mod breaker;
pub mod cooldown;
pub mod live;
pub mod peers;
pub mod recorder;
pub mod registry;
pub mod sharing;
pub mod window;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use board::HealthBoard;
pub use breaker::{Breaker, BreakerPolicy, Change, Circuit};
pub use live::Live;
pub use recorder::{RecorderSettings, spawn_recorder};
pub use registry::Registry;
pub use window::{Quantiles, WindowSummary, Windows, error_rate, quantiles};

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

impl Outcome {
    /// Its place in [`crate::metrics::OUTCOMES`], the label Prometheus
    /// counts it under.
    pub fn index(self) -> usize {
        match self {
            Self::Success => 0,
            Self::ClientError => 1,
            Self::Error => 2,
            Self::Timeout => 3,
            Self::Broken => 4,
        }
    }
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

/// What the data plane holds of an upstream when it reports a sample (the
/// routing table's `Upstream`): the sink needs only its live state, so the
/// health wing knows nothing of routing.
pub trait HasLive {
    /// The upstream's live state, from the [`Registry`].
    fn live(&self) -> &Arc<Live>;
}

impl HasLive for Arc<Live> {
    fn live(&self) -> &Arc<Live> {
        self
    }
}

/// What the data plane tells the recorder of one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Told {
    /// The attempt ended: its outcome, and its times when it has them.
    Ended(Sample),
    /// A stream's first chunk arrived after this long. Told at once, not
    /// when the stream ends (which may be minutes later), so a brownout
    /// seen on streams moves traffic as fast as one seen on plain answers.
    FirstByte(Duration),
}

/// A sample on its way to the recorder.
type Queued = (Arc<Live>, Told);

/// Samples waiting for the recorder, one queue per data-plane worker.
struct Queues {
    shards: Box<[Mutex<Vec<Queued>>]>,
    /// Set when a cooldown starts: the recorder cuts a report at its next
    /// tick instead of waiting for the report interval, so the other
    /// nodes learn of it within about one commit.
    urgent: AtomicBool,
}

/// Samples a queue holds between two drains before dropping new ones: far
/// more than a worker serves in one publish tick.
const QUEUE_CAP: usize = 65_536;

impl Queues {
    fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            urgent: AtomicBool::new(false),
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
    pub fn record(&self, upstream: &impl HasLive, sample: Sample) {
        let live = upstream.live();
        Self::count(live, &sample);
        self.queue(live, Told::Ended(sample));
    }

    /// A stream's first chunk arrived after `ttfb`: the recorder has it at
    /// its next tick, not when the stream ends.
    pub fn first_byte(&self, upstream: &impl HasLive, ttfb: Duration) {
        self.queue(upstream.live(), Told::FirstByte(ttfb));
    }

    /// A stream whose first byte was told ([`HealthSink::first_byte`])
    /// ended: Prometheus counts it with its time to first byte, the
    /// recorder its outcome and total (its first byte is not added twice).
    pub fn stream_ended(&self, upstream: &impl HasLive, sample: Sample) {
        let live = upstream.live();
        Self::count(live, &sample);
        self.queue(
            live,
            Told::Ended(Sample {
                ttfb: None,
                ..sample
            }),
        );
    }

    /// Prometheus counts every attempt here, where each is told once; an
    /// attempt that got no answer has no time to first byte to count.
    fn count(live: &Live, sample: &Sample) {
        let answered = matches!(sample.outcome, Outcome::Success | Outcome::ClientError);
        live.metrics
            .attempt(sample.outcome.index(), sample.ttfb.filter(|_| answered));
    }

    fn queue(&self, live: &Arc<Live>, told: Told) {
        let shards = &self.queues.shards;
        let shard = &shards[crate::upstream::worker() % shards.len()];
        let mut queue = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() < QUEUE_CAP {
            queue.push((live.clone(), told));
        } else {
            drop(queue);
            tracing::debug!(upstream = %live.id, "health queue full; sample dropped");
        }
    }

    /// The upstream answered with a `Retry-After` of `wait` (already read
    /// and capped, [`cooldown::requested`]): it is cooled on this node at
    /// once, and a cooldown that starts here is reported to the cluster
    /// at the recorder's next tick.
    pub fn cool(&self, upstream: &impl HasLive, wait: Duration) {
        let live = upstream.live();
        if live.cooldown.start(cooldown::now_ms(), wait) {
            tracing::warn!(upstream = %live.id, cooldown_ms = wait.as_millis() as u64,
                "upstream asked to be left alone (Retry-After): cooled on every node");
            self.queues.urgent.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::metrics::{CIRCUITS, Metrics, OUTCOMES};

    #[test]
    fn outcomes_and_circuits_count_under_their_own_labels() {
        for (outcome, label) in [
            (Outcome::Success, "success"),
            (Outcome::ClientError, "client_error"),
            (Outcome::Error, "error"),
            (Outcome::Timeout, "timeout"),
            (Outcome::Broken, "broken"),
        ] {
            assert_eq!(OUTCOMES[outcome.index()], label);
        }
        for (circuit, label) in [
            (Circuit::Closed, "closed"),
            (Circuit::Open, "open"),
            (Circuit::HalfOpen, "half_open"),
        ] {
            assert_eq!(CIRCUITS[usize::from(circuit.as_u8())], label);
        }
    }

    #[test]
    fn the_sink_counts_each_attempt_and_the_ttfb_of_answers_only() {
        let metrics = Metrics::default();
        let registry = Registry::default();
        let mut rebuild = registry.rebuild(&metrics);
        let live = rebuild.live(&Arc::from("a"));
        rebuild.publish();
        let sink = HealthSink {
            queues: Arc::new(Queues::new(1)),
        };
        let ttfb = Some(Duration::from_millis(5));
        for outcome in [Outcome::Success, Outcome::Error, Outcome::Timeout] {
            sink.record(
                &live,
                Sample {
                    outcome,
                    ttfb,
                    total: None,
                },
            );
        }
        assert_eq!(live.metrics.outcomes(Outcome::Error.index()), 1);
        assert_eq!(live.metrics.ttfb.count(), 1);
        let (mut batch, mut spare) = (Vec::new(), Vec::new());
        sink.queues.drain(&mut batch, &mut spare);
        assert_eq!(batch.len(), 3);
        assert!(Arc::ptr_eq(&batch[0].0, &live));

        // A stream: its first byte told at once, its end without it, and
        // Prometheus counts its time to first byte once.
        sink.first_byte(&live, Duration::from_millis(7));
        sink.stream_ended(
            &live,
            Sample {
                outcome: Outcome::Success,
                ttfb: Some(Duration::from_millis(7)),
                total: Some(Duration::from_millis(90)),
            },
        );
        assert_eq!(live.metrics.ttfb.count(), 2);
        batch.clear();
        sink.queues.drain(&mut batch, &mut spare);
        assert_eq!(batch[0].1, Told::FirstByte(Duration::from_millis(7)));
        assert_eq!(
            batch[1].1,
            Told::Ended(Sample {
                outcome: Outcome::Success,
                ttfb: None,
                total: Some(Duration::from_millis(90)),
            })
        );
    }
}
