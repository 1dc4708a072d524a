//! Health that stays local, end to end but without a socket or a clock: a
//! simulated node sends requests to a tier of two upstreams on a fixed
//! clock, its recorder takes their samples and publishes into their live
//! health, and each request is planned the way `Route::plan_among` plans
//! it (blended estimates, avoided targets, latency probes). The figures
//! the issue asks for are asserted on the requests' first picks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::probe_avoided;
use crate::health::recorder::{Recorder, RecorderSettings, apply};
use crate::health::{BreakerPolicy, Circuit, Live, Outcome, Quantiles, Registry, Sample, Told};
use crate::metrics::Metrics;
use crate::select::{self, Policy, TargetStats};

/// The recorder's publish tick, as a node runs it.
const TICK_MS: u64 = 50;
/// Where the simulated clock starts (0 reads as "never probed").
const START_MS: u64 = 1_000;

struct Sim {
    recorder: Recorder,
    lives: Vec<Arc<Live>>,
    /// Samples not yet told: (when, upstream, what).
    pending: Vec<(u64, usize, Told)>,
    /// Attempts running: (until, upstream).
    running: Vec<(u64, usize)>,
    now: u64,
    last_tick: u64,
    policy: Policy,
    rng: SmallRng,
    /// Each request's first pick: (when, upstream).
    picks: Vec<(u64, usize)>,
    _registry: Registry,
}

impl Sim {
    fn new() -> Self {
        let (registry, metrics) = (Registry::default(), Metrics::default());
        let mut rebuild = registry.rebuild(&metrics);
        let lives = ["a", "b"]
            .iter()
            .map(|id| rebuild.live(&Arc::from(*id)))
            .collect();
        rebuild.publish();
        let recorder = Recorder::new(RecorderSettings {
            slots: 6,
            slot: Duration::from_millis(5_000),
            publish_every: Duration::from_millis(TICK_MS),
            report_every: Duration::from_millis(1_000),
            region: "r3".into(),
            breaker: BreakerPolicy {
                failures: 5,
                ejection_ms: 1_000,
                max_ejection_ms: 8_000,
            },
            workers: 1,
        });
        Self {
            recorder,
            lives,
            pending: Vec::new(),
            running: Vec::new(),
            now: START_MS,
            last_tick: START_MS,
            policy: Policy::default(),
            rng: SmallRng::seed_from_u64(7),
            picks: Vec::new(),
            _registry: registry,
        }
    }

    /// What the other regions say of upstream `i`.
    fn shared(&self, i: usize, p99: f64) {
        let q = Quantiles {
            count: 1_500,
            p50: p99 / 2.0,
            p90: p99,
            p95: p99,
            p99,
            p999: p99,
        };
        self.lives[i].publish_shared(Some(q));
    }

    /// The recorder's tick: samples due by now are told, summaries published.
    fn tick(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| p.0 <= now);
        self.pending = later;
        let mut batch: Vec<(Arc<Live>, Told)> = due
            .into_iter()
            .map(|(_, i, told)| (self.lives[i].clone(), told))
            .collect();
        let dirty = !batch.is_empty();
        self.recorder
            .ingest(now, &mut batch)
            .into_iter()
            .for_each(apply);
        self.recorder.tick(now, dirty).into_iter().for_each(apply);
        self.running.retain(|r| r.0 > now);
        for (i, live) in self.lives.iter().enumerate() {
            let n = self.running.iter().filter(|r| r.1 == i).count();
            live.in_flight.store(n, Ordering::Relaxed);
        }
        self.last_tick = now;
    }

    /// One request now, planned as `Route::plan_among` plans it; the
    /// upstream it goes to answers after `ttfb(upstream, now)` ms.
    fn request(&mut self, stream: bool, ttfb: &impl Fn(usize, u64) -> u64) {
        let now = self.now;
        let mut stats = vec![
            self.lives
                .iter()
                .map(|live| TargetStats {
                    usable: true,
                    p99_ms: live.ttfb_estimate(now, &self.policy.blend).map(|q| q.p99),
                    in_flight: live.in_flight.load(Ordering::Relaxed),
                    error_rate: 0.0,
                    attempts: live.summary.load().attempts,
                    circuit: Circuit::Closed,
                    probe: false,
                })
                .collect::<Vec<_>>(),
        ];
        let lives = self.lives.clone();
        probe_avoided(&mut stats, &self.policy, now, |_, i| &lives[i]);
        let (_, i) = select::plan(&stats, &self.policy, 2, &mut self.rng)[0];
        self.picks.push((now, i));
        let first = ttfb(i, now);
        let ms = Duration::from_millis;
        if stream {
            let end = first + 300;
            self.pending
                .push((now + first, i, Told::FirstByte(ms(first))));
            let sample = Sample {
                outcome: Outcome::Success,
                ttfb: None,
                total: Some(ms(end)),
            };
            self.pending.push((now + end, i, Told::Ended(sample)));
            self.running.push((now + end, i));
        } else {
            let sample = Sample {
                outcome: Outcome::Success,
                ttfb: Some(ms(first)),
                total: Some(ms(first + 10)),
            };
            self.pending.push((now + first, i, Told::Ended(sample)));
            self.running.push((now + first, i));
        }
    }

    /// `rate` requests a second for `secs` seconds.
    fn run(&mut self, rate: f64, secs: u64, stream: bool, ttfb: impl Fn(usize, u64) -> u64) {
        let every = (1_000.0 / rate) as u64;
        let end = self.now + secs * 1_000;
        let mut next = self.now;
        while self.now < end {
            if self.now >= next {
                self.request(stream, &ttfb);
                next += every;
            }
            self.now += 1;
            if self.now >= self.last_tick + TICK_MS {
                self.tick();
            }
        }
    }

    /// Share of the first picks in `[from, to)` (ms from the start) that
    /// went to upstream `i`, and how many picks there were.
    fn share(&self, i: usize, from: u64, to: u64) -> (f64, usize) {
        let window: Vec<_> = self
            .picks
            .iter()
            .filter(|p| p.0 >= START_MS + from && p.0 < START_MS + to)
            .collect();
        let hits = window.iter().filter(|p| p.1 == i).count();
        (hits as f64 / window.len().max(1) as f64, window.len())
    }
}

const A: usize = 0;
const B: usize = 1;

/// The grey failure seen from a quiet region: 0.5 req/s, its own samples
/// say `a` answers in 20 ms, the cluster's figure (another region's
/// samples) says 270 ms. With three own samples it stays on `a`, and over
/// a minute it keeps ≥ 90% there (the 20-sample cliff moved it all to `b`).
#[test]
fn a_quiet_region_with_three_fast_samples_stays_on_the_upstream_fast_for_it() {
    let mut sim = Sim::new();
    sim.shared(A, 20.0);
    sim.shared(B, 45.0);
    let here = |i: usize, _| if i == A { 20 } else { 45 };
    sim.run(0.5, 6, false, here);
    assert_eq!(sim.lives[A].summary.load().ttfb_ms.count, 3);
    // Now the cluster says a is slow: another region's grey failure.
    sim.shared(A, 270.0);
    let blended = sim.lives[A]
        .ttfb_estimate(sim.now, &sim.policy.blend)
        .unwrap();
    assert!(blended.p99 < 45.0, "{blended:?}");
    sim.run(0.5, 60, false, here);
    let (on_a, n) = sim.share(A, 6_000, 66_000);
    eprintln!("quiet region: {:.0}% of {n} on a", on_a * 100.0);
    assert!(on_a >= 0.9, "{on_a}");
}

/// The grey failure at 0.5, 2 and 50 req/s: each region was on `a`, fast
/// for it, when the cluster's figure of `a` turns slow (another region's
/// samples); each keeps ≥ 90% of its requests on `a`.
#[test]
fn regions_at_any_rate_stay_on_the_upstream_fast_for_them() {
    for rate in [0.5, 2.0, 50.0] {
        let mut sim = Sim::new();
        sim.shared(A, 20.0);
        sim.shared(B, 45.0);
        let here = |i: usize, _| if i == A { 20 } else { 45 };
        sim.run(rate, 10, false, here);
        sim.shared(A, 270.0);
        sim.run(rate, 60, false, here);
        let (on_a, n) = sim.share(A, 10_000, 70_000);
        eprintln!("{rate} req/s: {:.1}% of {n} on a", on_a * 100.0);
        assert!(on_a >= 0.9, "{rate} req/s: {on_a}");
    }
}

/// A brownout this node measures itself, on streams: `a` goes from 20 ms
/// to 250 ms for 20 s. Within a second of it ≥ 95% of requests are off
/// `a`; once `a` is fast again, it has its share back within 5 s.
#[test]
fn a_local_brownout_on_streams_moves_traffic_within_a_second_and_back_within_five() {
    let mut sim = Sim::new();
    sim.shared(A, 20.0);
    sim.shared(B, 45.0);
    let world = |i: usize, t: u64| match i {
        A if (START_MS + 10_000..START_MS + 30_000).contains(&t) => 250,
        A => 20,
        _ => 45,
    };
    sim.run(50.0, 30, true, world);
    // The long window forgot the times before the brownout: without that,
    // its 30 s of fast answers would hold its median down for 30 s more.
    let window = sim.lives[A].summary.load().ttfb_ms;
    assert!(window.p50 >= 200.0, "{window:?}");
    sim.run(50.0, 15, true, world);
    let (before, _) = sim.share(A, 5_000, 10_000);
    let (during, n) = sim.share(A, 11_000, 30_000);
    eprintln!(
        "brownout: {:.1}% on a before, {:.1}% of {n} from 1 s after it starts",
        before * 100.0,
        during * 100.0
    );
    assert!(during <= 0.05, "{during}");
    // Recovery: the first second from which a holds at least half of
    // its share before the brownout, and keeps it.
    let back = (30_000..40_000)
        .step_by(250)
        .find(|&t| {
            (t..45_000)
                .step_by(1_000)
                .all(|s| sim.share(A, s, s + 1_000).0 >= before / 2.0)
        })
        .expect("a never won its share back");
    eprintln!(
        "recovery: a back to ≥ half its share {} ms after the brownout ended",
        back - 30_000
    );
    assert!(back - 30_000 <= 5_000, "{back}");
}

/// A target several times slower than another of its tier keeps no steady
/// share: only its probes, about 1% at any rate.
#[test]
fn a_degraded_upstream_gets_only_its_probes() {
    for rate in [0.5, 2.0, 50.0] {
        let mut sim = Sim::new();
        let secs = if rate < 1.0 { 400 } else { 60 };
        sim.run(rate, secs, false, |i, _| if i == A { 66 } else { 243 });
        let (on_b, n) = sim.share(B, 0, secs * 1_000);
        eprintln!("{rate} req/s: {:.2}% of {n} on the slow one", on_b * 100.0);
        assert!(on_b <= 0.015 + 1.0 / n as f64, "{rate} req/s: {on_b}");
    }
}
