//! The recorder: one task that owns every upstream's windows and breakers.
//!
//! [`Recorder`] is the pure core: samples and the time (milliseconds on the
//! caller's clock) go in, [`Effect`]s come out, the way a [`Breaker`]
//! returns a [`Change`]; it writes nothing shared. The task around it
//! ([`spawn_recorder`]) drains the data plane's queues on its publish tick,
//! feeds the core, and applies its effects ([`apply`]): a window summary
//! into an upstream's [`Live`], a circuit change into its atomics, its
//! Prometheus counter and the log. Every report interval it also cuts a
//! [`HealthReport`] of all windows for the cluster.
//!
//! Beside each upstream's long window the recorder keeps a short one (the
//! last second) and a count of its samples that fades with age
//! ([`Freshness`]). When the short window's level differs plainly from the
//! long one's ([`blend::changed`]: a brownout starting or ending) the long
//! window forgets its times, so the router judges the upstream as it is
//! now within about a second rather than after the window's 30 s.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::health::{HealthReport, UpstreamWindow};
use tokio::sync::watch;

use super::blend::{self, Blend, Freshness};
use super::breaker::{Breaker, BreakerPolicy, Change, Circuit};
use super::live::Live;
use super::window::{WindowSummary, Windows};
use super::{HealthSink, Outcome, Queued, Queues, Told};

/// Slots of the short window: four of 250 ms, the last second.
const RECENT_SLOTS: usize = 4;
/// Length of one slot of the short window, in milliseconds.
const RECENT_SLOT_MS: u64 = 250;

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

/// What the recorder asks its shell to do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Publish a fresh window summary for the router and the admin API.
    Publish {
        /// Where.
        live: Arc<Live>,
        /// The summary.
        summary: WindowSummary,
        /// The own samples behind it, fading with age.
        freshness: Freshness,
    },
    /// An upstream's circuit changed.
    Circuit {
        /// Whose.
        live: Arc<Live>,
        /// How.
        change: Change,
    },
}

/// One upstream as the recorder tracks it.
struct Tracked {
    windows: Windows,
    /// The last second, to tell when the upstream's level changed.
    recent: Windows,
    /// This node's samples of it, fading with age.
    freshness: Freshness,
    /// Samples arrived since the last tick: only then can its level have
    /// changed.
    fresh: bool,
    breaker: Breaker,
    /// The registry's state of the upstream: a different one for the same
    /// id means the upstream left the routing table and came back.
    live: Arc<Live>,
}

/// The recorder's state between ticks; the async loop only feeds it time
/// and samples, and applies what it returns.
pub struct Recorder {
    settings: RecorderSettings,
    /// How own samples fade, and when a change of level is believed.
    blend: Blend,
    empty: Windows,
    tracked: HashMap<Arc<str>, Tracked>,
    last_publish: u64,
}

impl Recorder {
    /// A recorder that has seen nothing yet.
    pub fn new(settings: RecorderSettings) -> Self {
        let empty = Windows::new(settings.slots, settings.slot.as_millis() as u64);
        Self {
            settings,
            blend: Blend::default(),
            empty,
            tracked: HashMap::new(),
            last_publish: 0,
        }
    }

    /// Records a batch of samples and feeds each to its upstream's breaker;
    /// returns the circuit changes. A sample of an upstream that has left
    /// the routing table is not recorded.
    pub fn ingest(&mut self, now_ms: u64, batch: &mut Vec<Queued>) -> Vec<Effect> {
        let mut effects = Vec::new();
        let half_life = self.blend.half_life_ms;
        for (live, told) in batch.drain(..) {
            if live.retired() {
                continue;
            }
            let fresh = || Tracked {
                windows: self.empty.clone(),
                recent: Windows::new(RECENT_SLOTS, RECENT_SLOT_MS),
                freshness: Freshness::default(),
                fresh: false,
                breaker: Breaker::default(),
                live: live.clone(),
            };
            let t = match self.tracked.entry(live.id.clone()) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    if !Arc::ptr_eq(&e.get().live, &live) {
                        e.insert(fresh());
                    }
                    e.into_mut()
                }
                std::collections::hash_map::Entry::Vacant(e) => e.insert(fresh()),
            };
            t.fresh = true;
            let sample = match told {
                Told::FirstByte(ttfb) => {
                    t.windows.first_byte(now_ms, ttfb);
                    t.recent.first_byte(now_ms, ttfb);
                    t.freshness.add(now_ms, half_life);
                    continue;
                }
                Told::Ended(sample) => sample,
            };
            t.windows.record(now_ms, sample);
            t.recent.record(now_ms, sample);
            // What the windows time (see `Windows::record`) is fresh news.
            if sample.ttfb.is_some() && !matches!(sample.outcome, Outcome::Error | Outcome::Broken)
            {
                t.freshness.add(now_ms, half_life);
            }
            let policy = &self.settings.breaker;
            let change = match sample.outcome {
                Outcome::Broken => t.breaker.on_broken(now_ms, policy),
                Outcome::Error | Outcome::Timeout => t.breaker.on_result(now_ms, true, policy),
                Outcome::Success | Outcome::ClientError => {
                    t.breaker.on_result(now_ms, false, policy)
                }
            };
            if let Some(change) = change {
                effects.push(t.changed(change));
            }
        }
        effects
    }

    /// Forgets upstreams that left the routing table, advances the
    /// breakers, and republishes the summaries when samples arrived
    /// (`dirty`) or a slot has passed, so old samples age out.
    pub fn tick(&mut self, now_ms: u64, dirty: bool) -> Vec<Effect> {
        self.tracked.retain(|_, t| !t.live.retired());
        let mut effects = Vec::new();
        for t in self.tracked.values_mut() {
            if let Some(change) = t.breaker.on_tick(now_ms, &self.settings.breaker) {
                effects.push(t.changed(change));
            }
        }
        let slot_ms = self.settings.slot.as_millis() as u64;
        if dirty || now_ms.saturating_sub(self.last_publish) >= slot_ms {
            for t in self.tracked.values_mut() {
                t.follow_level(now_ms, &self.blend);
                effects.push(Effect::Publish {
                    live: t.live.clone(),
                    summary: t.windows.summary(now_ms),
                    freshness: t.freshness,
                });
            }
            self.last_publish = now_ms;
        }
        effects
    }

    /// This node's window of every upstream it sent to, for the cluster,
    /// and what is left of the cooldowns its own answers asked for. The
    /// reporter numbers it.
    pub fn report(&self, now_ms: u64, unix_ms: u64) -> HealthReport {
        let upstreams: BTreeMap<String, UpstreamWindow> = self
            .tracked
            .iter()
            .filter_map(|(id, t)| Some((id.to_string(), t.windows.report(now_ms)?)))
            .collect();
        let cooldowns = self
            .tracked
            .iter()
            .map(|(id, t)| (id.to_string(), t.live.cooldown.own_left_ms(now_ms)))
            .filter(|(_, left)| *left > 0)
            .collect();
        HealthReport {
            seq: 0,
            region: self.settings.region.clone(),
            at_unix_ms: unix_ms,
            window_ms: self.empty.span_ms(),
            upstreams,
            cooldowns,
        }
    }
}

impl Tracked {
    /// The effect of a circuit change; a closed circuit also forgets the
    /// failures that opened it.
    fn changed(&mut self, change: Change) -> Effect {
        if change == Change::Closed {
            self.windows.clear();
            self.recent.clear();
        }
        Effect::Circuit {
            live: self.live.clone(),
            change,
        }
    }
}

impl Tracked {
    /// When the last second's level differs plainly from the long window's
    /// ([`blend::changed`]), the long window forgets its times but for the
    /// newest quarter second's (the samples that showed the change: a
    /// window left empty would leave the first-byte timeout to the route's
    /// ceiling, and a stalled upstream would hold requests that long), and
    /// the short window forgets its samples, so that the next comparison is
    /// between the new level and itself rather than the same change seen
    /// again.
    fn follow_level(&mut self, now_ms: u64, policy: &Blend) {
        if !std::mem::take(&mut self.fresh) {
            return;
        }
        let recent = self.recent.ttfb(now_ms);
        if recent.count == 0 {
            return;
        }
        let long = self.windows.ttfb(now_ms);
        if blend::changed(&long, &recent, policy) {
            tracing::info!(upstream = %self.live.id, was_p50_ms = long.p50, now_p50_ms = recent.p50,
                samples = recent.count, "upstream's time to first byte changed: older times forgotten");
            self.windows.forget_latency();
            self.windows.keep_newest(now_ms, &self.recent);
            self.recent.clear();
        }
    }
}

/// Carries out one effect of the recorder.
pub fn apply(effect: Effect) {
    match effect {
        Effect::Publish {
            live,
            summary,
            freshness,
        } => {
            live.publish_window(summary, freshness);
        }
        Effect::Circuit { live, change } => {
            let id = &live.id;
            live.metrics.circuit_changed(usize::from(
                match change {
                    Change::Opened { .. } => Circuit::Open,
                    Change::Probe => Circuit::HalfOpen,
                    Change::Closed => Circuit::Closed,
                }
                .as_u8(),
            ));
            match change {
                Change::Opened { for_ms } => {
                    tracing::warn!(upstream = %id, ejection_ms = for_ms, "circuit opened: upstream ejected");
                    live.set_circuit(Circuit::Open, false);
                }
                Change::Probe => {
                    tracing::info!(upstream = %id, "circuit half-open: sending a probe");
                    live.set_circuit(Circuit::HalfOpen, true);
                }
                Change::Closed => {
                    tracing::info!(upstream = %id, "circuit closed: probe succeeded");
                    live.set_circuit(Circuit::Closed, false);
                }
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
    // The cooldowns' clock, so a report reads what is left of them on the
    // clock they were started on.
    let now_ms = super::cooldown::now_ms;
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
        // A cooldown that started since the last tick goes out now. Read
        // before the drain: the data plane queues the answer's sample
        // before it raises the flag, so the report holds its upstream.
        let urgent = queues.urgent.swap(false, Ordering::SeqCst);
        queues.drain(&mut batch, &mut spare);
        drop(queues);
        let now = now_ms();
        let dirty = !batch.is_empty();
        recorder.ingest(now, &mut batch).into_iter().for_each(apply);
        recorder.tick(now, dirty).into_iter().for_each(apply);
        if urgent || now.saturating_sub(last_report) >= report_ms {
            last_report = now;
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            reports.send_replace(Some(Arc::new(recorder.report(now, unix_ms))));
        }
    }
}

#[cfg(test)]
mod tests;
