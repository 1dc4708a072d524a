#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::config::ClassConfig;
use tokio::time::Instant;

use super::gate::{classes_fit, retry_after, slots, take, usable_share, wait_until};
use super::{Capacity, DEFAULT_CLASS};

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
fn a_reserve_is_used_by_its_class_first() {
    // 10 slots: pro (rank 0) may fill 10, team (rank 1) 7, free (rank 2) 5.
    let limit = |m: usize| [10, 7, 5][m];
    // Counts by rank, the candidate counted in.
    assert!(classes_fit(&[0, 0, 5], 2, limit), "free's 5th");
    assert!(!classes_fit(&[0, 0, 6], 2, limit), "free's 6th");
    assert!(!classes_fit(&[0, 3, 5], 2, limit), "team and free past 7");
    assert!(classes_fit(&[0, 2, 5], 1, limit), "team fills to 7");
    assert!(!classes_fit(&[0, 3, 5], 1, limit), "team past 7 with free");
    assert!(
        classes_fit(&[5, 0, 5], 0, limit),
        "pro is checked on the total only"
    );
    // Pro holding slots does not count against free's 5.
    assert!(classes_fit(&[5, 0, 5], 2, limit));
    // A rank past the list is the last class.
    assert!(!classes_fit(&[0, 0, 6], 9, limit));
    assert!(classes_fit(&[], 0, limit));
}

#[test]
fn class_slots_are_given_back_when_dropped_and_wake_the_queue() {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let slots = super::slots::Slots::default();
    let id: Arc<str> = "a".into();
    let counts = slots.of(&id, 2);
    assert!(Arc::ptr_eq(&counts, &slots.of(&id, 2)), "one per upstream");
    let limit = |m: usize| [4, 2][m];
    let freed = Arc::new(Notify::new());
    let a = counts.take(1, limit, freed.clone()).unwrap();
    let b = counts.take(1, limit, freed.clone()).unwrap();
    assert!(!counts.room(1, limit));
    assert!(counts.take(1, limit, freed.clone()).is_none());
    assert_eq!(counts.of(1), 2, "a refused take gives its count back");
    assert!(counts.room(0, limit), "pro has its own");
    let waiting = freed.notified();
    tokio::pin!(waiting);
    waiting.as_mut().enable();
    drop(a);
    assert_eq!(counts.of(1), 1);
    assert!(counts.room(1, limit));
    // The release woke the waiter: it resolves at once.
    let woke = futures_now(waiting);
    assert!(woke);
    drop(b);
    assert_eq!(counts.of(1), 0);
}

/// Whether a future is ready on its first poll.
fn futures_now(f: impl std::future::Future<Output = ()>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    f.as_mut().poll(&mut cx).is_ready()
}

#[test]
fn eight_free_then_two_pro_on_four_slots() {
    // The case: max_concurrency 4, pro reserving half.
    let capacity = Capacity::new(&[class("pro", 0.5, 0), class("free", 0.0, 0)]);
    let (pro, free) = (capacity.rank(Some("pro")), capacity.rank(None));
    let slots = super::slots::Slots::default();
    let counts = slots.of(&"a".into(), 2);
    let total = AtomicUsize::new(0);
    let limit = |m: usize| slots_of(&capacity, m);
    let freed = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut held = Vec::new();
    let mut admit = |rank: usize| match counts.take(rank, limit, freed.clone()) {
        Some(h) if take(&total, 4) => {
            held.push(h);
            true
        }
        _ => false,
    };
    let admitted_free = (0..8).filter(|_| admit(free)).count();
    assert_eq!(admitted_free, 2, "free fills its share; 6 are shed");
    let admitted_pro = (0..2).filter(|_| admit(pro)).count();
    assert_eq!(admitted_pro, 2, "both pro requests find room at once");
    assert!(!admit(pro), "and the upstream is full");
}

fn slots_of(capacity: &Capacity, rank: usize) -> usize {
    slots(4, capacity.class(rank).share)
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
