//! The lost-write oracle: from the config writes a run made (each with
//! its acknowledgement or failure) and what every node holds at the end,
//! decides whether an acknowledged write was lost, a node holds something
//! nobody wrote, or a value shows up twice. Pure, unit tested.
//!
//! Two kinds of writes are checked. Route writes each create a new route
//! `chaos-wN` whose provider model is `wN`: every acknowledged one must be
//! on every node, with that value. Register writes rewrite one upstream
//! (`chaos-reg`, its `region` is `vN`) one after the other: at the end all
//! nodes must agree, on a value that was written, no older than the last
//! acknowledged one (a later unacknowledged write may have won, an
//! earlier one may not).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Prefix of the routes the writer creates.
pub const ROUTE_PREFIX: &str = "chaos-w";
/// The upstream the register writes rewrite.
pub const REGISTER: &str = "chaos-reg";

/// Which object a write touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A new route `key`.
    Route,
    /// The register upstream.
    Register,
}

/// How a write ended, as the writer saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "detail")]
pub enum WriteResult {
    /// 200: committed and applied (it must never be lost).
    Acked,
    /// A 4xx: refused, nothing proposed.
    Rejected(u16),
    /// 5xx, timeout or a broken connection: it may or may not have been
    /// applied.
    Ambiguous(String),
    /// No connection to the node: nothing was sent.
    NotSent(String),
}

/// One config write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteRecord {
    /// Sequence number, unique in the run (the value is derived from it).
    pub seq: u64,
    /// Route or register.
    pub target: Target,
    /// The route's model, or the register's id.
    pub key: String,
    /// The value written (`wN` or `vN`).
    pub value: String,
    /// The node it was sent to.
    pub node: u64,
    /// When it was sent, microseconds from the start of the load.
    pub t_us: u64,
    /// How long until its answer, microseconds.
    pub latency_us: u64,
    /// How it ended.
    pub result: WriteResult,
}

/// What one node holds at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The node.
    pub node: u64,
    /// `chaos-w*` routes and their values; `None` if it could not be read.
    pub routes: Option<BTreeMap<String, String>>,
    /// The register's value (`None`: absent or unreadable).
    pub register: Option<String>,
    /// Why the node could not be read, if so.
    pub error: Option<String>,
}

/// An acknowledged write missing (or different) somewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    /// The key.
    pub key: String,
    /// The value acknowledged.
    pub value: String,
    /// Nodes without it, and what they hold instead (`None`: nothing).
    pub nodes: Vec<(u64, Option<String>)>,
}

/// The oracle's verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OracleReport {
    /// Writes made.
    pub writes: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Refused with a 4xx.
    pub rejected: u64,
    /// Failed in a way that leaves the outcome open.
    pub ambiguous: u64,
    /// Not sent (node down).
    pub not_sent: u64,
    /// Unacknowledged writes found applied (allowed; informative).
    pub applied_unacked: u64,
    /// Acknowledged route writes lost on at least one node.
    pub lost: Vec<Lost>,
    /// Keys or values on a node that no write produced.
    pub phantom: Vec<String>,
    /// Values found under two keys on one node.
    pub duplicates: Vec<String>,
    /// The register check: `None` when no register write was made.
    pub register: Option<RegisterCheck>,
    /// Nodes that could not be read at the end (their writes count as lost).
    pub unreadable: Vec<u64>,
    /// Whether every check passed.
    pub ok: bool,
}

/// The register's end state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RegisterCheck {
    /// Sequence of the last acknowledged register write.
    pub last_acked: Option<u64>,
    /// The value on each node.
    pub values: BTreeMap<u64, Option<String>>,
    /// Whether the end state is allowed.
    pub ok: bool,
    /// Why not, when not.
    pub problem: Option<String>,
}

/// Number in a value such as `w12` or `v7`.
fn seq_of(value: &str) -> Option<u64> {
    value.get(1..).and_then(|n| n.parse().ok())
}

/// Judges the run's writes against what the nodes hold.
pub fn check(writes: &[WriteRecord], observed: &[Observed]) -> OracleReport {
    let mut report = OracleReport {
        writes: writes.len() as u64,
        ..OracleReport::default()
    };
    for w in writes {
        match w.result {
            WriteResult::Acked => report.acked += 1,
            WriteResult::Rejected(_) => report.rejected += 1,
            WriteResult::Ambiguous(_) => report.ambiguous += 1,
            WriteResult::NotSent(_) => report.not_sent += 1,
        }
    }
    report.unreadable = observed
        .iter()
        .filter(|o| o.routes.is_none())
        .map(|o| o.node)
        .collect();

    // Route writes: key -> (value, acked).
    let routes: BTreeMap<&str, (&str, bool)> = writes
        .iter()
        .filter(|w| w.target == Target::Route)
        .map(|w| {
            (
                w.key.as_str(),
                (w.value.as_str(), w.result == WriteResult::Acked),
            )
        })
        .collect();
    let mut applied_unacked: BTreeSet<&str> = BTreeSet::new();
    for (key, (value, acked)) in &routes {
        let mut missing = Vec::new();
        for o in observed {
            let held = o.routes.as_ref().and_then(|r| r.get(*key));
            if *acked {
                if held.map(String::as_str) != Some(*value) {
                    missing.push((o.node, held.cloned()));
                }
            } else if held.is_some() {
                applied_unacked.insert(key);
            }
        }
        if !missing.is_empty() {
            report.lost.push(Lost {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
                nodes: missing,
            });
        }
    }
    report.applied_unacked = applied_unacked.len() as u64;
    for o in observed {
        let Some(held) = &o.routes else {
            continue;
        };
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (key, value) in held {
            match routes.get(key.as_str()) {
                None => report.phantom.push(format!(
                    "node {}: route {key} = {value} was never written",
                    o.node
                )),
                Some((written, _)) if written != value => report.phantom.push(format!(
                    "node {}: route {key} = {value}, but {written} was written",
                    o.node
                )),
                Some(_) => {}
            }
            if let Some(other) = seen.insert(value.as_str(), key.as_str()) {
                report
                    .duplicates
                    .push(format!("node {}: {value} under {other} and {key}", o.node));
            }
        }
    }

    // The register.
    let register: Vec<&WriteRecord> = writes
        .iter()
        .filter(|w| w.target == Target::Register)
        .collect();
    if !register.is_empty() {
        let written: BTreeSet<u64> = register.iter().map(|w| w.seq).collect();
        let last_acked = register
            .iter()
            .filter(|w| w.result == WriteResult::Acked)
            .map(|w| w.seq)
            .max();
        let values: BTreeMap<u64, Option<String>> = observed
            .iter()
            .map(|o| (o.node, o.register.clone()))
            .collect();
        let distinct: BTreeSet<&Option<String>> = values.values().collect();
        let problem = if distinct.len() > 1 {
            Some(format!("the nodes disagree: {values:?}"))
        } else {
            match distinct.into_iter().next().cloned().flatten() {
                None if last_acked.is_some() => Some("acknowledged, but absent".to_owned()),
                None => None,
                Some(v) => match seq_of(&v) {
                    Some(seq) if !written.contains(&seq) => Some(format!("{v} was never written")),
                    Some(seq) if last_acked.is_some_and(|a| seq < a) => Some(format!(
                        "{v} is older than the last acknowledged write v{}",
                        last_acked.unwrap_or(0)
                    )),
                    Some(_) => None,
                    None => Some(format!("{v:?} is not a value the writer uses")),
                },
            }
        };
        report.register = Some(RegisterCheck {
            last_acked,
            values,
            ok: problem.is_none(),
            problem,
        });
    }
    report.ok = report.lost.is_empty()
        && report.phantom.is_empty()
        && report.duplicates.is_empty()
        && report.unreadable.is_empty()
        && report.register.as_ref().is_none_or(|r| r.ok);
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn route(seq: u64, result: WriteResult) -> WriteRecord {
        WriteRecord {
            seq,
            target: Target::Route,
            key: format!("{ROUTE_PREFIX}{seq}"),
            value: format!("w{seq}"),
            node: 1,
            t_us: 0,
            latency_us: 0,
            result,
        }
    }

    fn reg(seq: u64, result: WriteResult) -> WriteRecord {
        WriteRecord {
            seq,
            target: Target::Register,
            key: REGISTER.into(),
            value: format!("v{seq}"),
            node: 2,
            t_us: 0,
            latency_us: 0,
            result,
        }
    }

    fn node(id: u64, routes: &[u64], register: Option<u64>) -> Observed {
        Observed {
            node: id,
            routes: Some(
                routes
                    .iter()
                    .map(|s| (format!("{ROUTE_PREFIX}{s}"), format!("w{s}")))
                    .collect(),
            ),
            register: register.map(|s| format!("v{s}")),
            error: None,
        }
    }

    fn amb() -> WriteResult {
        WriteResult::Ambiguous("timeout".into())
    }

    #[test]
    fn all_acked_everywhere_passes() {
        let writes = vec![
            route(1, WriteResult::Acked),
            route(2, amb()),
            reg(3, WriteResult::Acked),
        ];
        let seen = vec![node(1, &[1, 2], Some(3)), node(2, &[1], Some(3))];
        let r = check(&writes, &seen);
        assert!(r.ok, "{r:?}");
        assert_eq!((r.acked, r.ambiguous, r.applied_unacked), (2, 1, 1));
    }

    #[test]
    fn an_acked_write_missing_on_one_node_is_lost() {
        let writes = vec![route(1, WriteResult::Acked), route(2, WriteResult::Acked)];
        let seen = vec![
            node(1, &[1, 2], None),
            node(2, &[1], None),
            node(3, &[1, 2], None),
        ];
        let r = check(&writes, &seen);
        assert!(!r.ok);
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.lost[0].key, "chaos-w2");
        assert_eq!(r.lost[0].nodes, vec![(2, None)]);
    }

    #[test]
    fn an_unreadable_node_fails_the_check() {
        let writes = vec![route(1, WriteResult::Acked)];
        let mut down = node(2, &[], None);
        down.routes = None;
        down.error = Some("connection refused".into());
        let r = check(&writes, &[node(1, &[1], None), down]);
        assert!(!r.ok);
        assert_eq!(r.unreadable, vec![2]);
        assert_eq!(r.lost[0].nodes, vec![(2, None)]);
    }

    #[test]
    fn phantoms_and_wrong_values_are_reported() {
        let writes = vec![route(1, WriteResult::Acked)];
        let mut n = node(1, &[1, 9], None);
        let r = check(&writes, std::slice::from_ref(&n));
        assert!(!r.ok);
        assert_eq!(r.phantom.len(), 1, "{:?}", r.phantom);
        n.routes = Some(
            [("chaos-w1".to_owned(), "w5".to_owned())]
                .into_iter()
                .collect(),
        );
        let r = check(&writes, &[n]);
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.phantom.len(), 1);
    }

    #[test]
    fn a_value_under_two_keys_is_a_duplicate() {
        let writes = vec![route(1, amb()), route(2, WriteResult::Acked)];
        let mut n = node(1, &[2], None);
        if let Some(routes) = n.routes.as_mut() {
            routes.insert("chaos-w1".into(), "w2".into());
        }
        let r = check(&writes, &[n]);
        assert!(!r.ok);
        assert_eq!(r.duplicates.len(), 1, "{r:?}");
    }

    #[test]
    fn register_must_agree_and_not_go_back() {
        let writes = vec![
            reg(1, WriteResult::Acked),
            reg(2, WriteResult::Acked),
            reg(3, amb()),
        ];
        // A later unacknowledged write may win.
        assert!(check(&writes, &[node(1, &[], Some(3)), node(2, &[], Some(3))]).ok);
        assert!(check(&writes, &[node(1, &[], Some(2)), node(2, &[], Some(2))]).ok);
        // An older value means the last acknowledged write was lost.
        let r = check(&writes, &[node(1, &[], Some(1)), node(2, &[], Some(1))]);
        assert!(!r.ok);
        assert!(r.register.unwrap().problem.unwrap().contains("older"));
        // Disagreement.
        assert!(!check(&writes, &[node(1, &[], Some(2)), node(2, &[], Some(3))]).ok);
        // Absent though acknowledged.
        assert!(!check(&writes, &[node(1, &[], None)]).ok);
        // Never written.
        assert!(!check(&writes, &[node(1, &[], Some(7))]).ok);
    }

    #[test]
    fn unacked_register_may_be_absent() {
        let writes = vec![reg(1, amb())];
        assert!(check(&writes, &[node(1, &[], None)]).ok);
    }
}
