//! The figures and the oracle of a tenants case: for each key, what the
//! whole cluster admitted per wall-clock (UTC) minute, which the verdict
//! judges (the nodes' counters are per wall-clock minute, the previous
//! one weighed in as if evenly spread), and in the worst sliding 60 s,
//! reported beside it (requests and tokens) against its `rpm` and `tpm`, what each node
//! admitted during each fault window, and the credits ledger at the end
//! against what the clients saw: every acknowledged top-up present (a
//! retried id counted once) and no spend counted twice (the ledger's spend
//! at most the sum of the answers' `x-meridian-cost-usd`).
//!
//! Pure functions of the records, unit tested; the runner
//! ([`crate::runner::tenants`]) makes the top-ups and reads the ledgers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::case::TenantsSpec;
use crate::report::Check;
use crate::report::stats::{Outcome, RequestRecord};
use crate::runner::schedule::Window;

/// Tolerance of a comparison of USD amounts (the ledger counts nanodollars;
/// the admin API answers floats).
const USD_EPSILON: f64 = 1e-6;

/// How one top-up ended, over all its tries (same id each time).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "detail")]
pub enum TopupResult {
    /// 200: committed; `applied` false when the id had counted before (a
    /// retry of an earlier ambiguous try).
    Acked {
        /// Whether this answer added the amount.
        applied: bool,
    },
    /// A 4xx: nothing proposed.
    Rejected(u16),
    /// Every try ended without an answer saying (5xx, timeout, broken or
    /// refused connection): it may or may not have been applied.
    Ambiguous(String),
}

/// One top-up made beside the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopupRecord {
    /// Its id (the same on every try).
    pub id: String,
    /// The key.
    pub key: String,
    /// USD added.
    pub usd: f64,
    /// When it was first sent, microseconds from the start of the load.
    pub t_us: u64,
    /// Tries made.
    pub tries: u32,
    /// How it ended.
    pub result: TopupResult,
    /// Why each earlier try was not the last (status or error, short).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried_after: Vec<String>,
}

/// A key's credits as one node's admin API answered at the end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LedgerRead {
    /// The node read.
    pub node: u64,
    /// `balance_usd`.
    pub balance_usd: f64,
    /// `added_usd` (opening balance plus top-ups).
    pub added_usd: f64,
    /// `spent_usd`.
    pub spent_usd: f64,
}

/// A key's usage as the replicated ledger has it at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UsageRead {
    /// Requests.
    pub requests: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost, USD.
    pub cost_usd: f64,
}

/// One wall-clock (UTC) minute of a key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Minute {
    /// Its start, Unix seconds.
    pub unix_s: u64,
    /// Seconds of the load inside it (the first and last are partial).
    pub covered_s: f64,
    /// Requests admitted (answered 2xx) cluster-wide.
    pub requests: u64,
    /// Their tokens.
    pub tokens: u64,
}

/// What each node admitted for a key during one fault window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowFigures {
    /// The fault.
    pub label: String,
    /// Whom it hit.
    pub target: String,
    /// Start, seconds from the start of the load.
    pub start_s: f64,
    /// End.
    pub end_s: f64,
    /// Admitted requests by node (`n1`…), due within the window.
    pub admitted_by_node: BTreeMap<String, u64>,
    /// Admitted cluster-wide within the window.
    pub admitted: u64,
    /// `rpm` pro rata of the window's length (when the key has one).
    pub rpm_pro_rata: Option<f64>,
}

/// The credits of a key: the ledger at the end against the clients' view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditFigures {
    /// Opening balance (`credits_usd`).
    pub opening_usd: f64,
    /// Distinct top-up ids acknowledged, and their sum.
    pub acked_topups: u64,
    /// USD of the acknowledged top-ups.
    pub acked_usd: f64,
    /// Top-ups whose every try was ambiguous (may or may not count).
    pub ambiguous_topups: u64,
    /// USD of those.
    pub ambiguous_usd: f64,
    /// Sum of `x-meridian-cost-usd` of the answered requests.
    pub answered_cost_usd: f64,
    /// Each node's ledger.
    pub ledgers: Vec<LedgerRead>,
    /// Whether every node read holds the same ledger.
    pub nodes_agree: bool,
    /// `answered_cost_usd - spent_usd` of the first ledger: spend never
    /// reported (a killed process's last interval, by design).
    pub unreported_usd: Option<f64>,
    /// How far below zero the balance went (0 when it did not).
    pub overdraft_usd: Option<f64>,
}

/// The figures of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyFigures {
    /// The key.
    pub key: String,
    /// Its `rpm`.
    pub rpm: Option<u64>,
    /// Its `tpm`.
    pub tpm: Option<u64>,
    /// Requests sent with it.
    pub offered: u64,
    /// Answered 2xx.
    pub admitted: u64,
    /// Refused by its limits, by outcome name (`limited_429`…).
    pub refused: BTreeMap<String, u64>,
    /// Ended otherwise (errors, timeouts…).
    pub failed: u64,
    /// Admitted by node.
    pub admitted_by_node: BTreeMap<String, u64>,
    /// Per wall-clock minute.
    pub minutes: Vec<Minute>,
    /// The most requests admitted in one wall-clock minute.
    pub worst_clock_minute_requests: u64,
    /// The most requests admitted in any 60 s (sliding, by due time).
    pub worst_sliding_minute_requests: u64,
    /// The most tokens admitted in one wall-clock minute.
    pub worst_clock_minute_tokens: u64,
    /// The most tokens admitted in any 60 s.
    pub worst_sliding_minute_tokens: u64,
    /// The most requests admitted in any 60 s starting a minute or more
    /// into the load: the steady state, without the first minute's burst
    /// (the nodes' windows estimate the previous minute as evenly spread).
    pub steady_sliding_minute_requests: u64,
    /// The same for tokens.
    pub steady_sliding_minute_tokens: u64,
    /// During each fault window.
    pub windows: Vec<WindowFigures>,
    /// Credits, when the key has them.
    pub credits: Option<CreditFigures>,
    /// The replicated usage ledger's totals for the key.
    pub usage: Option<UsageRead>,
}

/// Every key's figures and the checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantsReport {
    /// How far over a limit a minute may go.
    pub slack: f64,
    /// When the load started, Unix milliseconds.
    pub load_start_unix_ms: u64,
    /// By key.
    pub keys: Vec<KeyFigures>,
    /// The top-ups made.
    pub topups: Vec<TopupRecord>,
    /// The checks (appended to the run's).
    pub checks: Vec<Check>,
}

/// What the report is computed from.
pub struct Inputs<'a> {
    /// The case's section.
    pub spec: &'a TenantsSpec,
    /// Every request.
    pub records: &'a [RequestRecord],
    /// Every top-up.
    pub topups: Vec<TopupRecord>,
    /// Each key's ledger on each node (keys with credits).
    pub ledgers: BTreeMap<String, Vec<LedgerRead>>,
    /// Each key's usage totals.
    pub usage: BTreeMap<String, UsageRead>,
    /// When the load started, Unix milliseconds.
    pub load_start_unix_ms: u64,
    /// How long the load ran, seconds.
    pub duration_s: f64,
    /// The fault windows.
    pub windows: &'a [Window],
}

/// The largest sum of `weight` over the events within any `span_ms`
/// (events sorted by time, ms).
pub fn worst_window(events: &[(u64, u64)], span_ms: u64) -> u64 {
    let (mut best, mut sum, mut lo) = (0, 0, 0);
    for hi in 0..events.len() {
        sum += events[hi].1;
        while events[hi].0 >= events[lo].0 + span_ms {
            sum -= events[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

/// Computes the figures and the checks.
pub fn report(inputs: Inputs<'_>) -> TenantsReport {
    let spec = inputs.spec;
    let mut keys = Vec::new();
    let mut checks = Vec::new();
    for k in &spec.keys {
        let mine: Vec<&RequestRecord> = inputs
            .records
            .iter()
            .filter(|r| r.key.as_deref() == Some(k.name.as_str()))
            .collect();
        let admitted: Vec<&RequestRecord> = mine
            .iter()
            .copied()
            .filter(|r| r.outcome == Outcome::Ok)
            .collect();
        let mut refused = BTreeMap::new();
        for r in &mine {
            if matches!(r.outcome, Outcome::Limited(_)) {
                *refused.entry(r.outcome.name()).or_insert(0) += 1;
            }
        }
        let mut by_node = BTreeMap::new();
        for r in &admitted {
            *by_node
                .entry(r.node.map_or("?".to_owned(), |n| format!("n{n}")))
                .or_insert(0) += 1;
        }
        let at_ms = |r: &RequestRecord| inputs.load_start_unix_ms + r.t_us / 1_000;
        let mut events: Vec<(u64, u64)> = admitted
            .iter()
            .map(|r| (at_ms(r), r.tokens.unwrap_or(0)))
            .collect();
        events.sort_unstable();
        let requests: Vec<(u64, u64)> = events.iter().map(|&(t, _)| (t, 1)).collect();
        let minutes = minutes_of(&events, inputs.load_start_unix_ms, inputs.duration_s);
        let windows = inputs
            .windows
            .iter()
            .map(|w| window_figures(w, &admitted, k.rpm))
            .collect();
        let answered_cost: u64 = mine.iter().filter_map(|r| r.cost_nanos).sum();
        let credits = k.credits_usd.map(|opening| {
            credit_figures(
                opening,
                &k.name,
                &inputs.topups,
                inputs.ledgers.get(&k.name).cloned().unwrap_or_default(),
                proto::tenancy::nanos_to_usd(i128::from(answered_cost)),
            )
        });
        let figures = KeyFigures {
            key: k.name.clone(),
            rpm: k.rpm,
            tpm: k.tpm,
            offered: mine.len() as u64,
            admitted: admitted.len() as u64,
            failed: mine.iter().filter(|r| !r.outcome.answered()).count() as u64,
            refused,
            admitted_by_node: by_node,
            worst_clock_minute_requests: minutes.iter().map(|m| m.requests).max().unwrap_or(0),
            worst_clock_minute_tokens: minutes.iter().map(|m| m.tokens).max().unwrap_or(0),
            worst_sliding_minute_requests: worst_window(&requests, 60_000),
            worst_sliding_minute_tokens: worst_window(&events, 60_000),
            steady_sliding_minute_requests: worst_window(
                &requests[steady(&requests, inputs.load_start_unix_ms)..],
                60_000,
            ),
            steady_sliding_minute_tokens: worst_window(
                &events[steady(&events, inputs.load_start_unix_ms)..],
                60_000,
            ),
            minutes,
            windows,
            credits,
            usage: inputs.usage.get(&k.name).copied(),
        };
        checks.extend(key_checks(&figures, spec.slack));
        keys.push(figures);
    }
    TenantsReport {
        slack: spec.slack,
        load_start_unix_ms: inputs.load_start_unix_ms,
        keys,
        topups: inputs.topups,
        checks,
    }
}

/// Index of the first event a minute or more into the load.
fn steady(events: &[(u64, u64)], start_ms: u64) -> usize {
    events.partition_point(|e| e.0 < start_ms + 60_000)
}

/// Requests and tokens per wall-clock minute of the load.
fn minutes_of(events: &[(u64, u64)], start_ms: u64, duration_s: f64) -> Vec<Minute> {
    let end_ms = start_ms + (duration_s * 1_000.0) as u64;
    let mut minutes = Vec::new();
    let mut m = start_ms / 60_000;
    while m * 60_000 < end_ms {
        let (lo, hi) = (m * 60_000, (m + 1) * 60_000);
        let inside: Vec<&(u64, u64)> = events.iter().filter(|e| e.0 >= lo && e.0 < hi).collect();
        minutes.push(Minute {
            unix_s: lo / 1_000,
            covered_s: (hi.min(end_ms) - lo.max(start_ms)) as f64 / 1_000.0,
            requests: inside.len() as u64,
            tokens: inside.iter().map(|e| e.1).sum(),
        });
        m += 1;
    }
    minutes
}

fn window_figures(w: &Window, admitted: &[&RequestRecord], rpm: Option<u64>) -> WindowFigures {
    let (lo, hi) = ((w.start_s * 1e6) as u64, (w.end_s * 1e6) as u64);
    let mut by_node = BTreeMap::new();
    let mut total = 0;
    for r in admitted.iter().filter(|r| r.t_us >= lo && r.t_us < hi) {
        total += 1;
        *by_node
            .entry(r.node.map_or("?".to_owned(), |n| format!("n{n}")))
            .or_insert(0) += 1;
    }
    WindowFigures {
        label: w.label.clone(),
        target: w.target.clone(),
        start_s: w.start_s,
        end_s: w.end_s,
        admitted_by_node: by_node,
        admitted: total,
        rpm_pro_rata: rpm.map(|rpm| rpm as f64 * (w.end_s - w.start_s) / 60.0),
    }
}

fn credit_figures(
    opening_usd: f64,
    key: &str,
    topups: &[TopupRecord],
    ledgers: Vec<LedgerRead>,
    answered_cost_usd: f64,
) -> CreditFigures {
    let mine: Vec<&TopupRecord> = topups.iter().filter(|t| t.key == key).collect();
    let acked: Vec<&&TopupRecord> = mine
        .iter()
        .filter(|t| matches!(t.result, TopupResult::Acked { .. }))
        .collect();
    let ambiguous: Vec<&&TopupRecord> = mine
        .iter()
        .filter(|t| matches!(t.result, TopupResult::Ambiguous(_)))
        .collect();
    let nodes_agree = ledgers.windows(2).all(|p| {
        (p[0].added_usd - p[1].added_usd).abs() < USD_EPSILON
            && (p[0].spent_usd - p[1].spent_usd).abs() < USD_EPSILON
    });
    let first = ledgers.first().copied();
    CreditFigures {
        opening_usd,
        acked_topups: acked.len() as u64,
        acked_usd: acked.iter().map(|t| t.usd).sum::<f64>() + 0.0,
        ambiguous_topups: ambiguous.len() as u64,
        ambiguous_usd: ambiguous.iter().map(|t| t.usd).sum::<f64>() + 0.0,
        answered_cost_usd,
        nodes_agree,
        unreported_usd: first.map(|l| answered_cost_usd - l.spent_usd),
        overdraft_usd: first.map(|l| (-l.balance_usd).max(0.0)),
        ledgers,
    }
}

fn key_checks(f: &KeyFigures, slack: f64) -> Vec<Check> {
    let mut checks = Vec::new();
    let name = &f.key;
    if let Some(rpm) = f.rpm {
        let bound = rpm as f64 * (1.0 + slack);
        checks.push(Check {
            name: format!(
                "{name}: requests per minute within rpm + {:.0} %",
                slack * 100.0
            ),
            ok: f.worst_clock_minute_requests as f64 <= bound,
            detail: format!(
                "worst wall-clock minute {}, rpm {rpm}, bound {bound:.0}; worst sliding 60 s {} (from the second minute on: {})",
                f.worst_clock_minute_requests, f.worst_sliding_minute_requests, f.steady_sliding_minute_requests
            ),
        });
    }
    if let Some(tpm) = f.tpm {
        let bound = tpm as f64 * (1.0 + slack);
        checks.push(Check {
            name: format!(
                "{name}: tokens per minute within tpm + {:.0} %",
                slack * 100.0
            ),
            ok: f.worst_clock_minute_tokens as f64 <= bound,
            detail: format!(
                "worst wall-clock minute {}, tpm {tpm}, bound {bound:.0}; worst sliding 60 s {} (from the second minute on: {})",
                f.worst_clock_minute_tokens, f.worst_sliding_minute_tokens, f.steady_sliding_minute_tokens
            ),
        });
    }
    if let Some(c) = &f.credits {
        let Some(first) = c.ledgers.first() else {
            checks.push(Check {
                name: format!("{name}: credits ledger read"),
                ok: false,
                detail: "no node answered the key's credits".into(),
            });
            return checks;
        };
        let floor = c.opening_usd + c.acked_usd;
        let ceiling = floor + c.ambiguous_usd;
        checks.push(Check {
            name: format!("{name}: no acknowledged top-up lost, none counted twice"),
            ok: c.nodes_agree
                && first.added_usd >= floor - USD_EPSILON
                && first.added_usd <= ceiling + USD_EPSILON,
            detail: format!(
                "added_usd {:.6} on every node: {}; opening {:.6} + {} acked top-ups {:.6} = {floor:.6}; {} ambiguous ({:.6}) may count",
                first.added_usd,
                c.nodes_agree,
                c.opening_usd,
                c.acked_topups,
                c.acked_usd,
                c.ambiguous_topups,
                c.ambiguous_usd
            ),
        });
        checks.push(Check {
            name: format!("{name}: no spend counted twice"),
            ok: first.spent_usd <= c.answered_cost_usd + USD_EPSILON,
            detail: format!(
                "spent_usd {:.6} <= answered x-meridian-cost-usd {:.6} (unreported {:.6}); balance {:.6}",
                first.spent_usd,
                c.answered_cost_usd,
                c.answered_cost_usd - first.spent_usd,
                first.balance_usd
            ),
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::case::tenants::KeySpec;
    use crate::report::stats::Kind;

    fn rec(key: &str, t_ms: u64, outcome: Outcome, tokens: u64, node: u64) -> RequestRecord {
        RequestRecord {
            t_us: t_ms * 1_000,
            region: node,
            node: Some(node),
            kind: Kind::Plain,
            outcome,
            latency_us: 1_000,
            ttfb_us: None,
            upstream: None,
            attempts: None,
            tries: 1,
            sent_to: Some(node),
            killed_in_flight: false,
            id: String::new(),
            key: Some(key.into()),
            tokens: Some(tokens),
            cost_nanos: (outcome == Outcome::Ok).then_some(1_000_000),
        }
    }

    fn spec(credits: Option<f64>) -> TenantsSpec {
        TenantsSpec {
            keys: vec![KeySpec {
                name: "k".into(),
                rate: 1.0,
                rpm: Some(10),
                tpm: Some(100),
                credits_usd: credits,
            }],
            slack: 0.1,
            prices: [0.1, 0.4],
            topups: None,
            settle_s: 0.0,
        }
    }

    fn run(
        spec: &TenantsSpec,
        records: &[RequestRecord],
        topups: Vec<TopupRecord>,
        ledger: Option<LedgerRead>,
    ) -> TenantsReport {
        report(Inputs {
            spec,
            records,
            topups,
            ledgers: ledger
                .map(|l| ("k".to_owned(), vec![l]))
                .into_iter()
                .collect(),
            usage: BTreeMap::new(),
            load_start_unix_ms: 120_000,
            duration_s: 120.0,
            windows: &[],
        })
    }

    #[test]
    fn sliding_windows_find_the_densest_minute() {
        let e = [(0, 1), (30_000, 1), (59_999, 1), (60_000, 1), (119_000, 1)];
        assert_eq!(worst_window(&e, 60_000), 3);
        assert_eq!(worst_window(&[], 60_000), 0);
        assert_eq!(worst_window(&[(5, 7), (6, 8)], 60_000), 15);
    }

    #[test]
    fn minutes_over_the_limit_fail_and_refusals_do_not_count() {
        let spec = spec(None);
        // Minute 1: 11 admitted at its end (rpm 10 + 10 %: passes), minute
        // 2: 12 at its start (fails); the sliding minute across them: 23.
        // Tokens: 5 each, at most 60 a wall-clock minute: within tpm.
        let mut records: Vec<RequestRecord> = (0..11)
            .map(|i| rec("k", 49_000 + i * 1_000, Outcome::Ok, 5, 1))
            .collect();
        records.extend((0..12).map(|i| rec("k", 60_000 + i * 1_000, Outcome::Ok, 5, 2)));
        records.push(rec("k", 50_000, Outcome::Limited(429), 0, 1));
        records.push(rec("other", 1, Outcome::Ok, 5, 1));
        let r = run(&spec, &records, Vec::new(), None);
        let k = &r.keys[0];
        assert_eq!((k.offered, k.admitted, k.failed), (24, 23, 0));
        assert_eq!(k.refused.get("limited_429"), Some(&1));
        assert_eq!(k.minutes.len(), 2);
        assert_eq!(k.minutes[0].requests, 11);
        assert_eq!(k.worst_clock_minute_requests, 12);
        assert_eq!(k.worst_clock_minute_tokens, 60);
        assert_eq!(k.worst_sliding_minute_requests, 11 + 12);
        let rpm = r.checks.iter().find(|c| c.name.contains("rpm")).unwrap();
        assert!(!rpm.ok, "{rpm:?}");
        let tpm = r.checks.iter().find(|c| c.name.contains("tpm")).unwrap();
        assert!(tpm.ok, "{tpm:?}");
        assert_eq!(k.worst_sliding_minute_tokens, 115);
        assert_eq!(k.steady_sliding_minute_requests, 12);
        assert_eq!(k.steady_sliding_minute_tokens, 60);
    }

    fn topup(id: &str, usd: f64, result: TopupResult) -> TopupRecord {
        TopupRecord {
            id: id.into(),
            key: "k".into(),
            usd,
            t_us: 0,
            tries: 1,
            result,
            retried_after: Vec::new(),
        }
    }

    #[test]
    fn a_lost_topup_or_a_double_spend_fails() {
        let spec = spec(Some(1.0));
        let records = vec![
            rec("k", 0, Outcome::Ok, 5, 1),
            rec("k", 1, Outcome::Ok, 5, 1),
        ];
        let topups = vec![
            topup("a", 2.0, TopupResult::Acked { applied: true }),
            topup("b", 3.0, TopupResult::Ambiguous("timeout".into())),
            topup("c", 5.0, TopupResult::Rejected(400)),
        ];
        let ledger = |added: f64, spent: f64| LedgerRead {
            node: 1,
            balance_usd: added - spent,
            added_usd: added,
            spent_usd: spent,
        };
        let verdict = |added, spent| {
            let r = run(&spec, &records, topups.clone(), Some(ledger(added, spent)));
            r.checks.iter().map(|c| c.ok).collect::<Vec<_>>()
        };
        // 1 + 2 acked, the ambiguous 3 may count; answered cost 0.002.
        assert_eq!(verdict(3.0, 0.002), [true, true, true, true]);
        assert_eq!(verdict(6.0, 0.001), [true, true, true, true]);
        assert_eq!(verdict(1.0, 0.002), [true, true, false, true]);
        assert_eq!(verdict(11.0, 0.002), [true, true, false, true]);
        assert_eq!(verdict(3.0, 0.003), [true, true, true, false]);
        let r = run(&spec, &records, topups, Some(ledger(3.0, 0.0015)));
        let c = r.keys[0].credits.as_ref().unwrap();
        assert!((c.unreported_usd.unwrap() - 0.0005).abs() < 1e-9);
        assert_eq!((c.acked_topups, c.ambiguous_topups), (1, 1));
    }
}
