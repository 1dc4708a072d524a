#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use openraft::StoredMembership;
use proto::state::{ClusterState, KeyRecord, NodeInfo};
use proto::tenancy::share::FLOOR;
use proto::tenancy::{Counters, TenantReport};

use super::*;

const INTERVAL: Duration = Duration::from_secs(1);
const T0: u64 = 1_000 * MINUTE_MS;

fn applied(state: ClusterState) -> Arc<Applied> {
    applied_at(state, None)
}

/// `state` as applied up to log index `index`.
fn applied_at(state: ClusterState, index: Option<u64>) -> Arc<Applied> {
    Arc::new(Applied {
        state,
        last_applied: index
            .map(|i| openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i)),
        membership: StoredMembership::default(),
    })
}

fn state(limits: KeyLimits, nodes: &[u64]) -> ClusterState {
    let mut s = ClusterState::default();
    s.keys.insert(
        "acme".into(),
        KeyRecord {
            name: "acme".into(),
            sha256: "00".repeat(32),
            limits: limits.clone(),
        },
    );
    s.keys.insert(
        "free".into(),
        KeyRecord {
            name: "free".into(),
            sha256: "11".repeat(32),
            limits: KeyLimits::default(),
        },
    );
    if let Some(opening) = limits.credits_nanos {
        s.tenancy.open("acme", opening);
    }
    for id in nodes {
        s.nodes.insert(
            *id,
            NodeInfo {
                admin_addr: String::new(),
                region: format!("r{id}"),
            },
        );
    }
    s
}

fn tenants(state: ClusterState) -> (Arc<Tenants>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let t = Tenants::new(1, 42, INTERVAL, metrics.clone(), applied(state), 2);
    (t, metrics)
}

fn used(tokens: u64, cost_nanos: u64) -> Counters {
    Counters {
        requests: 1,
        input_tokens: tokens / 2,
        output_tokens: tokens - tokens / 2,
        cost_nanos,
    }
}

#[test]
fn the_allowlist_then_the_requests_decide() {
    let limits = KeyLimits {
        models: Some(vec!["fast".into(), "deepseek/*".into()]),
        rpm: Some(2),
        ..KeyLimits::default()
    };
    let (t, metrics) = tenants(state(limits, &[1]));
    let acme = t.key("acme").unwrap();
    assert_eq!(acme.admit("big", T0), Err(Refusal::ModelNotAllowed));
    assert_eq!(acme.admit("*", T0), Err(Refusal::ModelNotAllowed));
    acme.admit("fast", T0).unwrap();
    acme.admit("deepseek/chat", T0 + 1).unwrap();
    let Err(Refusal::Requests { limit, retry_after }) = acme.admit("fast", T0 + 2) else {
        panic!("the third request of 2 rpm");
    };
    assert_eq!(limit, 2);
    assert!(retry_after > Duration::ZERO);
    let headers = acme.headers(T0 + 2);
    let requests = headers.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining), (2, 0));
    assert!(headers.tokens.is_none());
    // A minute on the previous window weighs less: at 3/4 of the next
    // window, 2 × 1/4 counted, one more fits.
    acme.admit("fast", T0 + MINUTE_MS + MINUTE_MS * 3 / 4)
        .unwrap();
    let m = metrics.key(&Arc::from("acme"));
    assert_eq!(m.outcomes(KeyOutcome::Admitted), 3);
    assert_eq!(m.outcomes(KeyOutcome::ModelNotAllowed), 2);
    assert_eq!(m.outcomes(KeyOutcome::RateLimited), 1);
    // A key without limits is admitted at once, and has no headers.
    let free = t.key("free").unwrap();
    assert!(!free.is_rate_limited());
    free.admit("anything", T0).unwrap();
}

#[test]
fn tokens_are_debited_after_the_answer_and_refuse_once_spent() {
    let limits = KeyLimits {
        rpm: Some(100),
        tpm: Some(1_000),
        ..KeyLimits::default()
    };
    let (t, _) = tenants(state(limits, &[1]));
    let acme = t.key("acme").unwrap();
    acme.admit("fast", T0).unwrap();
    acme.admit("fast", T0).unwrap();
    // Both answers land after both were admitted: the overshoot is what
    // was in flight.
    acme.spent(T0 + 1, &used(800, 0));
    acme.spent(T0 + 2, &used(800, 0));
    let Err(Refusal::Tokens { limit, retry_after }) = acme.admit("fast", T0 + 3) else {
        panic!("over tpm");
    };
    assert_eq!(limit, 1_000);
    assert!(retry_after >= Duration::from_secs(1));
    let h = acme.headers(T0 + 3);
    assert_eq!(
        h.requests.unwrap().remaining,
        98,
        "the refused request was taken back"
    );
    assert_eq!(h.tokens.unwrap().remaining, 0);
}

#[test]
fn credits_run_out_and_a_top_up_lets_the_key_go_on() {
    let limits = KeyLimits {
        credits_nanos: Some(1_000),
        ..KeyLimits::default()
    };
    let mut s = state(limits, &[1]);
    let (t, metrics) = tenants(s.clone());
    let acme = t.key("acme").unwrap();
    acme.admit("fast", T0).unwrap();
    t.answered("acme", "fast", "a", used(10, 600));
    acme.admit("fast", T0).unwrap();
    t.answered("acme", "fast", "a", used(10, 600));
    assert_eq!(acme.admit("fast", T0), Err(Refusal::Credits));
    // The report commits: the ledger holds the spending, the balance is
    // below zero by what was in flight (200).
    let report = t.next_report(T0, 1, 30, false).unwrap();
    s.tenancy.report(1, &report).unwrap();
    assert_eq!(s.tenancy.credits["acme"].balance_nanos(), -200);
    t.rebuild(applied(s.clone()), T0);
    assert_eq!(
        t.key("acme").unwrap().admit("fast", T0),
        Err(Refusal::Credits)
    );
    s.tenancy.top_up("acme", "t-1", 10_000).unwrap();
    t.rebuild(applied(s.clone()), T0);
    t.key("acme").unwrap().admit("fast", T0).unwrap();
    let m = metrics.key(&Arc::from("acme"));
    assert_eq!(m.outcomes(KeyOutcome::InsufficientQuota), 2);
}

/// An upstream reports absurd usage (`u64::MAX` tokens, so a cost that
/// saturates): the key's meters saturate rather than wrap, so the key is
/// refused for credits and its token window is full, not emptied.
#[test]
fn absurd_usage_from_an_upstream_exhausts_the_key_rather_than_wrapping() {
    let limits = KeyLimits {
        credits_nanos: Some(1_000),
        tpm: Some(1_000_000),
        ..KeyLimits::default()
    };
    let s = state(limits, &[1]);
    let (t, _metrics) = tenants(s.clone());
    let acme = t.key("acme").unwrap();
    acme.admit("fast", T0).unwrap();
    t.answered("acme", "fast", "a", used(10, 600));
    acme.admit("fast", T0).unwrap();
    t.answered("acme", "fast", "a", used(u64::MAX, u64::MAX));
    assert_eq!(acme.admit("fast", T0), Err(Refusal::Credits));
}

#[test]
fn counters_survive_rebuilds_and_deleted_keys_go() {
    let limits = KeyLimits {
        rpm: Some(1),
        ..KeyLimits::default()
    };
    let mut s = state(limits, &[1]);
    let (t, metrics) = tenants(s.clone());
    t.key("acme").unwrap().admit("fast", T0).unwrap();
    t.rebuild(applied(s.clone()), T0);
    assert!(t.key("acme").unwrap().admit("fast", T0).is_err());
    s.keys.remove("free");
    t.rebuild(applied(s), T0);
    assert!(t.key("free").is_none());
    assert!(!metrics.keys.lock().unwrap().contains_key("free"));
}

/// Two tasks rebuild (the routing table's follower and this module's): one
/// holding an older state must not undo the other's newer one.
#[test]
fn an_older_state_never_replaces_a_newer_one() {
    let at = |state: ClusterState, index: u64| applied_at(state, Some(index));
    let (t, _) = tenants(ClusterState::default());
    assert!(t.key("acme").is_none());
    let s = state(KeyLimits::default(), &[1]);
    t.rebuild(at(s.clone(), 5), T0);
    assert!(t.key("acme").is_some());
    t.rebuild(at(ClusterState::default(), 4), T0);
    assert!(t.key("acme").is_some(), "index 4 came after 5");
    // The same index again: the periodic rebuild, which must go on.
    let mut without = s;
    without.keys.remove("acme");
    t.rebuild(at(without, 5), T0);
    assert!(t.key("acme").is_none());
}

/// The table is swapped after the tenants are rebuilt, so for a moment
/// after a key is deleted the table still admits it: that key is refused,
/// not served with no limit.
#[test]
fn a_key_being_deleted_is_refused_not_served_unlimited() {
    let limits = KeyLimits {
        rpm: Some(1),
        ..KeyLimits::default()
    };
    let mut s = state(limits, &[1]);
    let (t, _) = tenants(s.clone());
    assert!(t.admitted("acme").unwrap().is_rate_limited());
    assert!(
        t.admitted("free").is_ok(),
        "a key without limits has a state"
    );
    s.keys.remove("acme");
    t.rebuild(applied(s), T0);
    let refused = t.admitted("acme").unwrap_err();
    assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
    assert!(!refused.retryable());
    assert!(t.admitted("free").is_ok());
}

fn demand_report(seq: u64, demand: u64) -> TenantReport {
    TenantReport {
        boot: 5,
        seq,
        usage_days: 30,
        demand: BTreeMap::from([("acme".to_owned(), demand)]),
        usage: Vec::new(),
    }
}

#[test]
fn shares_follow_demand_and_a_cut_off_node_keeps_its_floor() {
    let limits = KeyLimits {
        rpm: Some(900),
        ..KeyLimits::default()
    };
    let mut s = state(limits, &[1, 2, 3]);
    s.tenancy.report(1, &demand_report(1, 800)).unwrap();
    s.tenancy.report(2, &demand_report(1, 200)).unwrap();
    let (t, _) = tenants(s.clone());
    let busy = FLOOR / 3.0 + 0.9 * 0.8;
    assert!((t.key("acme").unwrap().plan.share - busy).abs() < 1e-9);
    // Reports start failing at T0: the last share holds for
    // SILENT_INTERVALS intervals, then the floor.
    t.reported(None, T0, 30);
    t.reported(None, T0 + 3_000, 30);
    t.rebuild(applied(s.clone()), T0 + 5_000);
    assert!((t.key("acme").unwrap().plan.share - busy).abs() < 1e-9);
    let after = T0 + SILENT_INTERVALS * 1_000 + 1;
    t.rebuild(applied(s.clone()), after);
    let floor = t.key("acme").unwrap();
    assert!((floor.plan.share - FLOOR / 3.0).abs() < 1e-9);
    assert!(
        (floor.plan.rpm.unwrap() - 30.0).abs() < 1e-9,
        "never zero, never all"
    );
    // A report commits again: the share by demand is back.
    t.reported(Some(&demand_report(2, 1)), after, 30);
    t.rebuild(applied(s), after);
    assert!((t.key("acme").unwrap().plan.share - busy).abs() < 1e-9);
}

#[test]
fn reports_carry_demand_and_cells_until_committed() {
    let limits = KeyLimits {
        rpm: Some(600),
        ..KeyLimits::default()
    };
    let (t, _) = tenants(state(limits, &[1]));
    assert!(
        t.next_report(T0, 1, 30, false).is_none(),
        "idle: nothing to say"
    );
    for _ in 0..5 {
        t.key("acme").unwrap().admit("fast", T0).unwrap();
    }
    // Unlimited keys count usage too, and have no demand.
    t.answered("free", "fast", "a", used(4, 7));
    let r = t.next_report(T0, 1, 30, false).unwrap();
    assert_eq!((r.boot, r.seq, r.usage_days), (42, 1, 30));
    assert_eq!(
        r.demand,
        BTreeMap::from([("acme".to_owned(), 30)]),
        "5 in 10 s"
    );
    assert_eq!(r.usage.len(), 1);
    assert_eq!(r.usage[0].0.key, "free");
    t.reported(Some(&r), T0, 30);
    assert!(t.next_report(T0, 2, 30, true).unwrap().usage.is_empty());
    // Demand gone: one more report says so, then nothing.
    let later = T0 + 3 * DEMAND_WINDOW_MS;
    let last = t.next_report(later, 2, 30, true).unwrap();
    assert!(last.demand.is_empty());
    assert!(t.next_report(later, 3, 30, false).is_none());
    assert_eq!(t.local_usage("free").cost_nanos, 7);
}

const RPM: u64 = 600;

/// Three nodes asked 3× a key's rpm together, unevenly (60 %, 30 %, 10 %),
/// each reporting every second and rebuilding from the same applied
/// state, node 3's reports failing over `cut` (in 100 ms steps): what each
/// node admitted in each minute. `stagger`: each node reports every 3 s,
/// a second after the one before, and every node rebuilds after each
/// report, so for a while one node's demand is known and the others' not.
fn hammer(minutes: usize, cut: std::ops::Range<u64>, stagger: bool) -> Vec<[u64; 3]> {
    let limits = KeyLimits {
        rpm: Some(RPM),
        ..KeyLimits::default()
    };
    let mut s = state(limits, &[1, 2, 3]);
    let metrics = Arc::new(Metrics::default());
    let nodes: Vec<Arc<Tenants>> = (1..=3)
        .map(|id| {
            Tenants::new(
                id,
                100 + id,
                INTERVAL,
                metrics.clone(),
                applied(s.clone()),
                1,
            )
        })
        .collect();
    // Requests per 100 ms step, per node: 3 × 600 per minute in all.
    let asked = [18, 9, 3];
    let mut admitted = vec![[0u64; 3]; minutes];
    let mut seq = 0;
    let mut cut_off_view = applied(s.clone());
    for step in 0..(minutes as u64 * 600) {
        let now = T0 + step * 100;
        let minute = ((now - T0) / MINUTE_MS) as usize;
        for (i, node) in nodes.iter().enumerate() {
            let key = node.key("acme").unwrap();
            for _ in 0..asked[i] {
                if key.admit("fast", now).is_ok() {
                    admitted[minute][i] += 1;
                }
            }
        }
        if stagger {
            let slot = step % 30;
            if slot % 10 != 0 {
                continue;
            }
            let node = &nodes[(slot / 10) as usize];
            seq += 1;
            let report = node.next_report(now, seq, 30, true).unwrap();
            s.tenancy.report(node.node, &report).unwrap();
            node.reported(Some(&report), now, 30);
            let current = applied(s.clone());
            for node in &nodes {
                node.rebuild(current.clone(), now);
            }
            continue;
        }
        if step % 10 == 9 {
            seq += 1;
            let cut_now = cut.contains(&step);
            for node in &nodes {
                let report = node.next_report(now, seq, 30, true).unwrap();
                if cut_now && node.node == 3 {
                    node.reported(None, now, 30);
                } else {
                    s.tenancy.report(node.node, &report).unwrap();
                    node.reported(Some(&report), now, 30);
                }
            }
            let current = applied(s.clone());
            if !cut_now {
                cut_off_view = current.clone();
            }
            for node in &nodes {
                // The cut-off node sees nothing new, only time passing.
                let view = if node.node == 3 {
                    &cut_off_view
                } else {
                    &current
                };
                node.rebuild(view.clone(), now);
            }
        }
    }
    admitted
}

/// Checks every minute of a [`hammer`] run: at most `RPM` plus `over`,
/// and from the second minute on at least 90 % of it.
fn within_the_limit(admitted: &[[u64; 3]], over: u64) {
    for (minute, per_node) in admitted.iter().enumerate() {
        let total: u64 = per_node.iter().sum();
        eprintln!("minute {minute}: {per_node:?} = {total} of {RPM}");
        assert!(
            total <= RPM + over,
            "minute {minute}: {per_node:?} = {total} of {RPM}"
        );
        if minute > 0 {
            assert!(total >= RPM * 9 / 10, "minute {minute}: {per_node:?}");
        }
    }
}

/// Three minutes of [`hammer`]: what the cluster admits in each minute
/// stays within 10 % of the limit (the goal), and near it.
#[test]
fn three_nodes_hammered_together_admit_about_the_limit() {
    within_the_limit(&hammer(3, 0..0, false), RPM / 10);
}

/// The same with node 3 cut off for 30 s (steps 300 to 600): it keeps its
/// last share for `SILENT_INTERVALS` intervals, then its floor, while the
/// others, once they see it silent, split the rest; every minute stays
/// within 10 % of the limit, before, during and after.
#[test]
fn a_cut_off_node_keeps_the_cluster_within_the_limit() {
    let admitted = hammer(3, 300..600, false);
    within_the_limit(&admitted, RPM / 10);
    assert!(
        admitted.iter().all(|per_node| per_node[2] > 0),
        "never zero for the cut-off node"
    );
}

/// Reports that land one node at a time (the first reporter's share jumps
/// to most of the limit until the others' land, which the chaos run
/// `tenants-partition` measured as +13 % in its first minute): a share
/// rises past an even split only at the next minute, so every minute stays
/// within 2 % of the limit (702 of 600 without it).
#[test]
fn staggered_reports_do_not_let_a_rising_share_overshoot() {
    within_the_limit(&hammer(3, 0..0, true), RPM / 50);
}
