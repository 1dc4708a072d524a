#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::health::Sample;
use crate::health::registry::Registry;
use crate::metrics::Metrics;

fn settings() -> RecorderSettings {
    RecorderSettings {
        slots: 6,
        slot: Duration::from_millis(5_000),
        publish_every: Duration::from_millis(50),
        report_every: Duration::from_millis(1_000),
        region: "us".into(),
        breaker: BreakerPolicy {
            failures: 3,
            ejection_ms: 1_000,
            max_ejection_ms: 8_000,
        },
        workers: 1,
    }
}

fn sample(outcome: Outcome) -> Told {
    Told::Ended(Sample {
        outcome,
        ttfb: Some(Duration::from_millis(10)),
        total: Some(Duration::from_millis(20)),
    })
}

fn table(registry: &Registry, metrics: &Metrics, ids: &[&str]) -> Vec<Arc<Live>> {
    let mut rebuild = registry.rebuild(metrics);
    let lives = ids.iter().map(|id| rebuild.live(&Arc::from(*id))).collect();
    rebuild.publish();
    lives
}

fn circuits(effects: &[Effect]) -> Vec<(String, Change)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Circuit { live, change } => Some((live.id.to_string(), *change)),
            Effect::Publish { .. } => None,
        })
        .collect()
}

fn published(effects: &[Effect]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish { live, summary, .. } => Some((live.id.to_string(), summary.attempts)),
            Effect::Circuit { .. } => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn failures_open_the_circuit_and_a_good_probe_closes_it_with_a_clean_window() {
    let (registry, metrics) = (Registry::default(), Metrics::default());
    let a = table(&registry, &metrics, &["a"]).remove(0);
    let mut r = Recorder::new(settings());
    let mut batch: Vec<Queued> = (0..3)
        .map(|_| (a.clone(), sample(Outcome::Error)))
        .collect();
    let effects = r.ingest(0, &mut batch);
    assert!(batch.is_empty());
    assert_eq!(
        circuits(&effects),
        vec![("a".into(), Change::Opened { for_ms: 1_000 })]
    );
    assert_eq!(a.circuit(), Circuit::Closed, "the core writes nothing");
    effects.into_iter().for_each(apply);
    assert_eq!(a.circuit(), Circuit::Open);
    assert_eq!(
        a.metrics
            .circuit_changes(usize::from(Circuit::Open.as_u8())),
        1
    );

    let effects = r.tick(1_000, false);
    assert_eq!(circuits(&effects), vec![("a".into(), Change::Probe)]);
    effects.into_iter().for_each(apply);
    assert!(a.probe_ready());

    let effects = r.ingest(1_100, &mut vec![(a.clone(), sample(Outcome::Success))]);
    assert_eq!(circuits(&effects), vec![("a".into(), Change::Closed)]);
    effects.into_iter().for_each(apply);
    assert_eq!(a.circuit(), Circuit::Closed);
    assert_eq!(
        published(&r.tick(1_100, true)),
        vec![("a".into(), 0)],
        "the failures that opened the circuit are forgotten"
    );
}

#[test]
fn summaries_are_published_when_samples_arrive_or_a_slot_passes() {
    let (registry, metrics) = (Registry::default(), Metrics::default());
    let lives = table(&registry, &metrics, &["a", "b"]);
    let mut r = Recorder::new(settings());
    let mut batch = vec![
        (lives[0].clone(), sample(Outcome::Success)),
        (lives[1].clone(), sample(Outcome::ClientError)),
        (lives[1].clone(), sample(Outcome::Success)),
    ];
    assert!(r.ingest(10, &mut batch).is_empty());
    let effects = r.tick(10, true);
    assert_eq!(published(&effects), vec![("a".into(), 1), ("b".into(), 2)]);
    effects.into_iter().for_each(apply);
    assert_eq!(lives[1].summary.load().client_errors, 1);
    assert!(r.tick(20, false).is_empty(), "nothing new, no slot passed");
    assert_eq!(published(&r.tick(5_010, false)).len(), 2);
}

#[test]
fn a_removed_upstream_is_forgotten_and_a_re_added_one_starts_fresh() {
    let (registry, metrics) = (Registry::default(), Metrics::default());
    let first = table(&registry, &metrics, &["a", "b"]);
    let mut r = Recorder::new(settings());
    let mut batch = vec![
        (first[0].clone(), sample(Outcome::Success)),
        (first[1].clone(), sample(Outcome::Error)),
        (first[1].clone(), sample(Outcome::Error)),
    ];
    r.ingest(0, &mut batch);
    assert_eq!(r.report(0, 0).upstreams.len(), 2);

    // The upstream leaves the table: its window is no longer reported,
    // and a late sample of it is not recorded.
    table(&registry, &metrics, &["a"]);
    assert_eq!(published(&r.tick(1, true)), vec![("a".into(), 1)]);
    r.ingest(2, &mut vec![(first[1].clone(), sample(Outcome::Error))]);
    let report = r.report(2, 0);
    assert_eq!(report.upstreams.keys().collect::<Vec<_>>(), vec!["a"]);

    // Back again: a fresh window and breaker (one more failure does not
    // open the circuit, as it would have with the two before).
    let again = table(&registry, &metrics, &["a", "b"]);
    let effects = r.ingest(3, &mut vec![(again[1].clone(), sample(Outcome::Error))]);
    assert!(circuits(&effects).is_empty());
    assert_eq!(
        published(&r.tick(3, true)),
        vec![("a".into(), 1), ("b".into(), 1)]
    );
}

#[test]
fn a_rebuilt_table_keeps_the_windows_and_the_circuit() {
    let (registry, metrics) = (Registry::default(), Metrics::default());
    let first = table(&registry, &metrics, &["a"]);
    let mut r = Recorder::new(settings());
    let mut batch: Vec<Queued> = (0..2)
        .map(|_| (first[0].clone(), sample(Outcome::Error)))
        .collect();
    r.ingest(0, &mut batch);
    let second = table(&registry, &metrics, &["a"]);
    let effects = r.ingest(1, &mut vec![(second[0].clone(), sample(Outcome::Timeout))]);
    assert_eq!(
        circuits(&effects),
        vec![("a".into(), Change::Opened { for_ms: 1_000 })],
        "the third failure in a row opens it, across the rebuild"
    );
    assert_eq!(published(&r.tick(1, true)), vec![("a".into(), 3)]);
}

#[test]
fn reports_carry_every_window_with_attempts() {
    let (registry, metrics) = (Registry::default(), Metrics::default());
    let lives = table(&registry, &metrics, &["a", "b"]);
    let mut r = Recorder::new(settings());
    r.ingest(0, &mut vec![(lives[0].clone(), sample(Outcome::Success))]);
    let report = r.report(0, 42);
    assert_eq!(report.region, "us");
    assert_eq!(report.at_unix_ms, 42);
    assert_eq!(report.window_ms, 30_000);
    assert_eq!(report.upstreams["a"].successes, 1);
    assert_eq!(
        r.report(40_000, 0).upstreams.len(),
        0,
        "aged out of the window"
    );
}
