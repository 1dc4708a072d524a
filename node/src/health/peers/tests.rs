#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proto::health::{empty_histogram, encode_histogram};

use super::*;

fn window(ms: &[u64]) -> UpstreamWindow {
    let mut h = empty_histogram();
    for v in ms {
        h.record(v * 1_000).unwrap();
    }
    UpstreamWindow {
        successes: ms.len() as u64,
        ttfb: encode_histogram(&h).unwrap(),
        total: encode_histogram(&h).unwrap(),
        ..UpstreamWindow::default()
    }
}

fn report(seq: u64) -> HealthReport {
    HealthReport {
        seq,
        region: "eu".into(),
        window_ms: 30_000,
        upstreams: BTreeMap::from([("a".to_string(), window(&[10, 20, 30]))]),
        ..HealthReport::default()
    }
}

#[test]
fn a_report_is_decoded_once_on_arrival() {
    let r = Received::decode(report(4), 1_000).unwrap();
    assert_eq!((r.seq, r.region.as_str(), r.at_ms), (4, "eu", 1_000));
    let (id, w) = &r.upstreams[0];
    assert_eq!(&**id, "a");
    assert_eq!(w.ttfb.count(), 3);
    assert_eq!(w.total.count(), 3);
    assert_eq!(r.undecodable, 0);
    assert_eq!(r.age(1_500), (500, false));
    assert_eq!(r.age(31_001), (30_001, true));
    // A clock that reads earlier than the arrival: age 0, not a wrap.
    assert_eq!(r.age(0), (0, false));
}

#[test]
fn a_histogram_that_does_not_decode_is_counted_and_left_out() {
    let mut bad = report(1);
    let w = bad.upstreams.get_mut("a").unwrap();
    w.ttfb = b"not a histogram".to_vec();
    // A DEFLATE header claiming more than the body holds.
    w.total = vec![0x1c, 0x84, 0x93, 0x14, 0xff, 0xff, 0xff, 0xff, 1, 2];
    let r = Received::decode(bad, 0).unwrap();
    assert_eq!(r.undecodable, 2);
    assert!(r.upstreams[0].1.ttfb.is_empty());
    assert_eq!(r.upstreams[0].1.successes, 3);
}

#[test]
fn hostile_shapes_are_refused() {
    assert_eq!(check(&report(1)), Ok(()));
    let mut r = report(1);
    r.window_ms = 0;
    assert!(matches!(check(&r), Err(Rejected::Malformed(_))));
    r.window_ms = u64::MAX;
    let e = check(&r).unwrap_err();
    assert!(e.to_string().contains("window_ms"), "{e}");
    let mut r = report(1);
    r.region = "eu\nforged=1".into();
    assert!(check(&r).is_err());
    r.region = "x".repeat(MAX_REGION + 1);
    assert!(check(&r).is_err());
    let mut r = report(1);
    r.upstreams = (0..=MAX_UPSTREAMS)
        .map(|i| (i.to_string(), UpstreamWindow::default()))
        .collect();
    assert!(check(&r).is_err());
    let mut r = report(1);
    r.cooldowns = (0..=MAX_UPSTREAMS).map(|i| (i.to_string(), 1)).collect();
    assert!(check(&r).is_err());
    // Upstream ids become labels: no line breaks, nothing huge.
    for id in ["a\nmeridian_forged 1", &"u".repeat(MAX_REGION + 1)] {
        let mut r = report(1);
        r.upstreams
            .insert(id.to_string(), UpstreamWindow::default());
        let e = check(&r).unwrap_err().to_string();
        assert!(e.contains("upstream id"), "{e}");
        assert!(!e.contains('\n'), "the refusal repeats the line break: {e}");
        let mut r = report(1);
        r.cooldowns.insert(id.to_string(), 5);
        assert!(check(&r).is_err());
    }
}

#[test]
fn only_a_newer_report_replaces_one_within_its_window() {
    let held = Received::decode(report(10), 1_000).unwrap();
    assert!(replaces(None, 0, 0));
    assert!(replaces(Some(&held), 11, 1_001));
    assert!(!replaces(Some(&held), 10, 1_001), "a duplicate");
    assert!(!replaces(Some(&held), 9, 1_001), "a late one");
    // Past its window, anything from the member replaces it: a restarted
    // member whose clock went back is not shut out.
    assert!(replaces(Some(&held), 1, 31_001));
}

#[test]
fn the_store_keeps_each_members_newest_and_forgets_removed_members() {
    let reports = Reports::default();
    let mut seen = reports.subscribe();
    reports.take(2, report(5), 100).unwrap();
    assert!(seen.has_changed().unwrap());
    assert_eq!(seen.borrow_and_update()[&2].seq, 5);
    assert_eq!(
        reports.take(2, report(4), 200),
        Err(Rejected::Old { seq: 4, held: 5 })
    );
    assert!(
        !seen.has_changed().unwrap(),
        "a refused report changes nothing"
    );
    let mut hostile = report(6);
    hostile.window_ms = 0;
    assert!(reports.take(2, hostile, 300).is_err());
    assert_eq!(seen.borrow()[&2].seq, 5);
    reports.take(3, report(1), 300).unwrap();
    reports.take(2, report(6), 400).unwrap();
    {
        let held = seen.borrow_and_update();
        assert_eq!((held[&2].seq, held[&2].at_ms), (6, 400));
        assert_eq!(held.len(), 2);
    }
    reports.retain(|id| id != 3);
    assert!(seen.has_changed().unwrap());
    assert_eq!(
        seen.borrow_and_update().keys().copied().collect::<Vec<_>>(),
        [2]
    );
    reports.retain(|_| true);
    assert!(
        !seen.has_changed().unwrap(),
        "nothing removed, nothing told"
    );
}

#[test]
fn the_sink_files_under_the_callers_id_and_says_why_not() {
    let reports = Arc::new(Reports::default());
    let sink = reports.sink();
    sink(7, report(3)).unwrap();
    assert_eq!(reports.subscribe().borrow()[&7].seq, 3);
    let e = sink(7, report(2)).unwrap_err();
    assert!(e.contains("not newer"), "{e}");
}

#[test]
fn buckets_merge_exactly_what_the_encoded_histogram_holds() {
    // A spread of latencies, as a busy upstream's window has.
    let mut h = empty_histogram();
    for i in 1..=5_000u64 {
        h.record(i * 7_919 % 3_000_000 + 1).unwrap();
    }
    let encoded = encode_histogram(&h).unwrap();
    let mut direct = empty_histogram();
    proto::health::add_encoded(&mut direct, &encoded).unwrap();
    let buckets = Buckets::of(&proto::health::decode_histogram(&encoded).unwrap().unwrap());
    let mut merged = None;
    buckets.add_to(&mut merged);
    buckets.add_to(&mut merged);
    let merged = merged.unwrap();
    direct.add(direct.clone()).unwrap();
    assert_eq!(merged.len(), direct.len());
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(
            merged.value_at_quantile(q),
            direct.value_at_quantile(q),
            "q {q}"
        );
    }
    // Spread evenly over 1 µs to 3 s, the samples fill about a quarter of
    // the shape's 3,072 counters; a real window, bunched around its median,
    // fills far fewer.
    assert!(buckets.len() < 1_000, "{} buckets", buckets.len());
    assert_eq!(buckets.count(), 5_000);
    // Nothing recorded: nothing added, not even an empty histogram.
    let mut none = None;
    Buckets::default().add_to(&mut none);
    assert!(none.is_none());
}

/// A report whose histograms would hold more buckets than the budget is
/// refused whole, and the one held from that member stays: a member cannot
/// make every receiver hold a gigabyte with a report of a megabyte or two.
#[test]
fn a_report_over_the_bucket_budget_is_refused() {
    // One histogram spread over many buckets, sent for many upstreams.
    let mut h = empty_histogram();
    let mut v = 1u64;
    while v < 60_000_000 {
        h.record(v).unwrap();
        v += v / 64 + 1;
    }
    let per = Buckets::of(&h).len();
    assert!(per > 300, "{per}");
    let spread = UpstreamWindow {
        successes: 1,
        ttfb: encode_histogram(&h).unwrap(),
        total: encode_histogram(&h).unwrap(),
        ..UpstreamWindow::default()
    };
    let many = |seq, n: usize| HealthReport {
        seq,
        region: "eu".into(),
        window_ms: 30_000,
        upstreams: (0..n).map(|i| (format!("u{i}"), spread.clone())).collect(),
        ..HealthReport::default()
    };
    let within = MAX_REPORT_BUCKETS / (2 * per);
    let reports = Reports::default();
    reports.take(7, many(1, within), 0).unwrap();
    let over = many(2, within + 1);
    assert!(check(&over).is_ok(), "the shape alone is fine");
    let refused = reports.take(7, over, 0).unwrap_err();
    assert!(
        matches!(&refused, Rejected::Malformed(m) if m.contains("buckets")),
        "{refused}"
    );
    // The report held before is still the one held.
    assert_eq!(reports.subscribe().borrow()[&7].seq, 1);
}
