#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::config::ClassConfig;
use tokio::time::Instant;

use super::gate::{retry_after, slots, take, usable_share, wait_until};
use super::{Capacity, DEFAULT_CLASS, ShedCounts, ShedReason};

fn class(name: &str, reserved: f64, queue_ms: u64) -> ClassConfig {
    ClassConfig {
        name: name.into(),
        reserved,
        queue_ms,
        slo: None,
    }
}

#[test]
fn each_class_may_use_what_the_classes_above_do_not_reserve() {
    let reserved = [0.3, 0.2, 0.0];
    assert_eq!(usable_share(&reserved, 0), 1.0);
    assert!((usable_share(&reserved, 1) - 0.7).abs() < 1e-9);
    assert!((usable_share(&reserved, 2) - 0.5).abs() < 1e-9);
    // Past the list: the last class.
    assert!((usable_share(&reserved, 9) - 0.5).abs() < 1e-9);
    // The last class's own reserve takes nothing from anyone.
    assert_eq!(usable_share(&[0.0, 0.4], 1), 1.0);
    assert_eq!(usable_share(&[], 3), 1.0);
}

#[test]
fn reserves_round_up_and_the_first_class_gets_everything() {
    assert_eq!(slots(4, 0.5), 2);
    assert_eq!(slots(3, 0.5), 1, "the reserve holds 2 of 3");
    assert_eq!(slots(4, 1.0), 4);
    assert_eq!(slots(10, 0.7), 7);
    assert_eq!(slots(1, 0.5), 0);
    assert_eq!(slots(4, 0.0), 0);
}

#[test]
fn hostile_shares_stay_within_the_capacity() {
    assert_eq!(slots(4, f64::NAN), 0);
    assert_eq!(slots(4, -1.0), 0);
    assert_eq!(slots(4, f64::INFINITY), 4);
    assert_eq!(slots(usize::MAX, 0.5), usize::MAX / 2 + 1);
    assert_eq!(usable_share(&[f64::NAN, 0.5], 1), 1.0);
    assert_eq!(usable_share(&[2.0, 0.0], 1), 0.0);
    assert_eq!(usable_share(&[-1.0, 0.0], 1), 1.0);
}

#[test]
fn a_slot_is_taken_only_below_the_limit_and_given_back() {
    let count = AtomicUsize::new(0);
    assert!(take(&count, 2));
    assert!(take(&count, 2));
    assert!(!take(&count, 2), "full");
    assert_eq!(count.load(Ordering::Relaxed), 2, "a refusal takes nothing");
    // A higher class's limit still fits.
    assert!(take(&count, 4));
    count.fetch_sub(1, Ordering::Relaxed);
    count.fetch_sub(1, Ordering::Relaxed);
    assert!(take(&count, 2), "a released slot is free again");
    assert!(!take(&AtomicUsize::new(0), 0), "a class with no share");
}

#[test]
fn eight_free_then_two_pro_on_four_slots() {
    // The case: max_concurrency 4, pro reserving half.
    let capacity = Capacity::new(&[class("pro", 0.5, 0), class("free", 0.0, 0)]);
    let (pro, free) = (capacity.rank(Some("pro")), capacity.rank(None));
    let count = AtomicUsize::new(0);
    let free_limit = slots(4, capacity.class(free).share);
    let pro_limit = slots(4, capacity.class(pro).share);
    let admitted_free = (0..8).filter(|_| take(&count, free_limit)).count();
    assert_eq!(admitted_free, 2, "free fills its share; 6 are shed");
    let admitted_pro = (0..2).filter(|_| take(&count, pro_limit)).count();
    assert_eq!(admitted_pro, 2, "both pro requests find room at once");
    assert!(!take(&count, pro_limit), "and the upstream is full");
}

#[test]
fn waits_are_the_queue_never_past_the_deadline() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    assert_eq!(wait_until(t0, ms(0), t0 + ms(5_000)), None);
    assert_eq!(wait_until(t0, ms(200), t0 + ms(5_000)), Some(t0 + ms(200)));
    assert_eq!(
        wait_until(t0, ms(9_000), t0 + ms(5_000)),
        Some(t0 + ms(5_000))
    );
    assert_eq!(wait_until(t0, ms(200), t0), None, "no time left");
    assert_eq!(retry_after(ms(0)), Duration::from_secs(1));
    assert_eq!(retry_after(ms(1_500)), Duration::from_secs(2));
}

#[test]
fn keys_without_a_known_class_are_in_the_last() {
    let capacity = Capacity::new(&[class("pro", 0.5, 0), class("free", 0.0, 250)]);
    assert_eq!(capacity.rank(Some("pro")), 0);
    assert_eq!(capacity.rank(Some("gold")), 1);
    assert_eq!(capacity.rank(None), 1);
    assert_eq!(&*capacity.class(1).name, "free");
    assert_eq!(capacity.class(7).queue, Duration::from_millis(250));
    assert_eq!(capacity.node_limit(1_000, 1), 500);
    assert_eq!(capacity.node_limit(1_000, 0), 1_000);
}

#[test]
fn without_classes_everyone_may_use_everything() {
    let capacity = Capacity::default();
    assert_eq!(capacity.classes().len(), 1);
    assert_eq!(&*capacity.class(0).name, DEFAULT_CLASS);
    assert_eq!(capacity.rank(Some("pro")), 0);
    assert_eq!(capacity.node_limit(64, 0), 64);
    assert_eq!(capacity.class(0).queue, Duration::ZERO);
}

#[test]
fn shed_counts_keep_going_across_a_new_class_list() {
    let counts = ShedCounts::default();
    let (pro, free) = (std::sync::Arc::from("pro"), std::sync::Arc::from("free"));
    counts.set_classes([&pro, &free]);
    counts.shed(1, ShedReason::UpstreamCapacity);
    counts.shed(1, ShedReason::UpstreamCapacity);
    counts.shed(9, ShedReason::NodeInFlight);
    assert_eq!(counts.count(1, ShedReason::UpstreamCapacity), 2);
    assert_eq!(
        counts.count(1, ShedReason::NodeInFlight),
        1,
        "past the list: the last"
    );
    counts.set_classes([&free]);
    assert_eq!(counts.count(0, ShedReason::UpstreamCapacity), 2);
}

#[test]
fn an_accounts_rpm_is_split_evenly_and_divided_among_classes() {
    use super::rpm::allowance;
    assert_eq!(allowance(600, 3, 1.0), 200.0);
    assert_eq!(allowance(600, 3, 0.5), 100.0);
    assert_eq!(allowance(600, 0, 1.0), 600.0, "no members known: this node");
    assert_eq!(allowance(2, 5, 1.0), 1.0, "at least one per node");
    assert_eq!(allowance(600, 3, 0.0), 0.0);
    assert_eq!(allowance(600, 3, f64::NAN), 0.0);
}

#[test]
fn rpm_windows_admit_up_to_the_allowance_per_minute() {
    let windows = super::rpm::RpmWindows::default();
    let id: std::sync::Arc<str> = "a".into();
    let t = 10 * 60_000;
    assert!(windows.fits(&id, t, 2.0));
    assert!(windows.take(&id, t, 2.0));
    assert!(windows.take(&id, t + 1, 2.0));
    assert!(!windows.fits(&id, t + 2, 2.0));
    assert!(!windows.take(&id, t + 2, 2.0), "full for the minute");
    assert!(
        windows.take(&id, t + 3, 4.0),
        "a class with more may still send"
    );
    // Two minutes on, the window has slid past them.
    assert!(windows.take(&id, t + 2 * 60_000, 2.0));
    let other: std::sync::Arc<str> = "b".into();
    assert!(windows.take(&other, t, 1.0), "each upstream its own window");
}
