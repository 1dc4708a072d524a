//! The report of a run: the figures (JSON), a page for people (Markdown),
//! a chart of success ratio and p99 per second with the fault windows
//! shaded (SVG), and the verdict against the case's SLA.

pub mod markdown;
pub mod raft;
pub mod stats;
pub mod svg;
pub mod tenants_md;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::case::{Case, SlaSpec};
use crate::oracle::OracleReport;
use crate::runner::schedule::{Restart, Window};
use crate::tenants::TenantsReport;
use stats::{Outcome, RequestRecord, Second, Totals};

/// One check of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// Everything a run produced, as written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The case.
    pub case: String,
    /// What it proves.
    pub description: String,
    /// When it started, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// Load duration, seconds.
    pub duration_s: f64,
    /// Whole run including setup and checks, seconds.
    pub wall_s: f64,
    /// Nodes.
    pub nodes: usize,
    /// Offered load, requests per second.
    pub rate: f64,
    /// Share of streamed requests.
    pub stream_share: f64,
    /// The target.
    pub sla: SlaSpec,
    /// Every request.
    pub totals: Totals,
    /// By client region (`n1`…).
    pub by_region: BTreeMap<String, Totals>,
    /// By kind (plain, stream).
    pub by_kind: BTreeMap<String, Totals>,
    /// Successful requests by upstream that answered.
    pub by_upstream: BTreeMap<String, u64>,
    /// Requests by `x-meridian-attempts`.
    pub attempts: BTreeMap<u32, u64>,
    /// Failed requests that were in flight on a node when it was SIGKILLed.
    pub killed_in_flight: u64,
    /// Requests a client had to send to another node (own node refused).
    pub client_failovers: u64,
    /// Requests answered by a node of another region.
    pub served_elsewhere: u64,
    /// Per second.
    pub seconds: Vec<Second>,
    /// Fault windows.
    pub windows: Vec<Window>,
    /// Stops and restarts.
    pub restarts: Vec<Restart>,
    /// Faults not carried out, and why.
    pub skipped: Vec<String>,
    /// The lost-write oracle.
    pub oracle: OracleReport,
    /// Exit status of each node at the final SIGTERM.
    pub shutdown: Vec<(u64, String)>,
    /// Panic lines found in the node logs.
    pub panics: Vec<String>,
    /// The first failed requests, to find in the node logs by id.
    pub failed_sample: Vec<RequestRecord>,
    /// A tenants case's keys: admissions per minute, windows, credits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenants: Option<TenantsReport>,
    /// The control plane as the nodes saw it: terms and report ages.
    pub raft: crate::runner::observe::RaftReport,
    /// How fast config writes were acknowledged.
    pub write_times: raft::WriteTimes,
    /// The checks.
    pub checks: Vec<Check>,
    /// `pass` or `fail`.
    pub verdict: String,
}

/// The inputs of a report.
pub struct Inputs<'a> {
    /// The case run.
    pub case: &'a Case,
    /// Start time, Unix seconds.
    pub started_unix_s: u64,
    /// Whole run, seconds.
    pub wall_s: f64,
    /// Every request.
    pub records: &'a [RequestRecord],
    /// Fault windows.
    pub windows: Vec<Window>,
    /// Restarts.
    pub restarts: Vec<Restart>,
    /// Skipped faults.
    pub skipped: Vec<String>,
    /// The oracle's verdict.
    pub oracle: OracleReport,
    /// Final exit statuses.
    pub shutdown: Vec<(u64, String)>,
    /// Panics in node logs.
    pub panics: Vec<String>,
    /// A tenants case's figures and checks.
    pub tenants: Option<TenantsReport>,
    /// What the observer saw of terms and report ages.
    pub raft: crate::runner::observe::RaftReport,
    /// Every config write.
    pub writes: &'a [crate::oracle::WriteRecord],
}

/// Judges a run against its SLA: the success ratio over every request (any
/// non-2xx, broken or late answer counts against it), the p99 if the case
/// sets one, the oracle, the restarts, panics, and that every fault was
/// carried out.
pub fn judge(
    sla: &SlaSpec,
    totals: &Totals,
    killed_in_flight: u64,
    oracle: &OracleReport,
    restarts: &[Restart],
    skipped: &[String],
    panics: &[String],
) -> Vec<Check> {
    let answered = totals.ok + totals.limited;
    let failed = totals.requests - answered;
    let mut checks = vec![if sla.forgive_killed_in_flight {
        let counted = totals.requests - killed_in_flight;
        let ratio = stats::ratio(answered, counted);
        Check {
            name: "success ratio".into(),
            ok: counted > 0 && ratio >= sla.success_ratio,
            detail: format!(
                "{:.4}% of {counted} requests (target {:.2}%), leaving out {killed_in_flight} in flight on SIGKILLed nodes; {} failed in all ({:.4}% of {})",
                ratio * 100.0,
                sla.success_ratio * 100.0,
                failed,
                totals.success_ratio * 100.0,
                totals.requests
            ),
        }
    } else {
        Check {
            name: "success ratio".into(),
            ok: totals.requests > 0 && totals.success_ratio >= sla.success_ratio,
            detail: format!(
                "{:.4}% of {} requests (target {:.2}%); {failed} failed, of which {killed_in_flight} were in flight on a SIGKILLed node",
                totals.success_ratio * 100.0,
                totals.requests,
                sla.success_ratio * 100.0,
            ),
        }
    }];
    if let Some(target) = sla.p99_ms {
        checks.push(Check {
            name: "p99 latency".into(),
            ok: totals.latency.p99_ms <= target,
            detail: format!("{:.1} ms (target {target} ms)", totals.latency.p99_ms),
        });
    }
    let lost_nodes: usize = oracle.lost.iter().map(|l| l.nodes.len()).sum();
    checks.push(Check {
        name: "no acknowledged write lost".into(),
        ok: oracle.ok,
        detail: format!(
            "{} writes, {} acknowledged, {} lost ({} node copies), {} phantom, {} duplicate, register {}, unreadable nodes {:?}",
            oracle.writes,
            oracle.acked,
            oracle.lost.len(),
            lost_nodes,
            oracle.phantom.len(),
            oracle.duplicates.len(),
            match &oracle.register {
                None => "not written".to_owned(),
                Some(r) if r.ok => "ok".to_owned(),
                Some(r) => r.problem.clone().unwrap_or_default(),
            },
            oracle.unreadable
        ),
    });
    let ready = restarts
        .iter()
        .filter(|r| r.ready_after_s.is_some())
        .count();
    if !restarts.is_empty() || sla.min_restarts.is_some() {
        let min = sla.min_restarts.unwrap_or(0) as usize;
        let slowest = restarts
            .iter()
            .filter_map(|r| r.ready_after_s)
            .fold(0.0_f64, f64::max);
        checks.push(Check {
            name: "every restarted node ready".into(),
            ok: ready == restarts.len() && ready >= min,
            detail: format!(
                "{ready} of {} restarts ready (at least {min} required), slowest {slowest:.2} s",
                restarts.len()
            ),
        });
    }
    checks.push(Check {
        name: "every fault carried out".into(),
        ok: skipped.is_empty(),
        detail: if skipped.is_empty() {
            "yes".into()
        } else {
            skipped.join("; ")
        },
    });
    checks.push(Check {
        name: "no node panicked".into(),
        ok: panics.is_empty(),
        detail: format!("{} panic lines in the node logs", panics.len()),
    });
    checks
}

impl RunReport {
    /// Computes the figures and the verdict.
    pub fn build(inputs: Inputs<'_>) -> RunReport {
        let Inputs {
            case,
            started_unix_s,
            wall_s,
            records,
            windows,
            restarts,
            skipped,
            oracle,
            shutdown,
            panics,
            tenants,
            raft,
            writes,
        } = inputs;
        let totals = Totals::of(records);
        let by_region = stats::grouped(records, |r| format!("n{}", r.region));
        let by_kind = stats::grouped(records, |r| format!("{:?}", r.kind).to_lowercase());
        let mut by_upstream = BTreeMap::new();
        let mut attempts = BTreeMap::new();
        for r in records {
            if r.outcome == Outcome::Ok {
                *by_upstream
                    .entry(r.upstream.clone().unwrap_or_else(|| "?".into()))
                    .or_insert(0) += 1;
            }
            if let Some(a) = r.attempts {
                *attempts.entry(a).or_insert(0) += 1;
            }
        }
        let killed_in_flight = records.iter().filter(|r| r.killed_in_flight).count() as u64;
        let mut checks = judge(
            &case.sla,
            &totals,
            killed_in_flight,
            &oracle,
            &restarts,
            &skipped,
            &panics,
        );
        checks.extend(tenants.iter().flat_map(|t| t.checks.iter().cloned()));
        checks.extend(raft::checks(&case.sla, &raft, writes));
        let write_times = raft::WriteTimes::of(writes);
        let verdict = if checks.iter().all(|c| c.ok) {
            "pass"
        } else {
            "fail"
        };
        RunReport {
            case: case.name.clone(),
            description: case.description.clone(),
            started_unix_s,
            duration_s: case.duration.as_secs_f64(),
            wall_s,
            nodes: case.cluster.nodes,
            rate: case.offered_rate(),
            stream_share: case.load.stream_share,
            sla: case.sla.clone(),
            by_region,
            by_kind,
            by_upstream,
            attempts,
            killed_in_flight,
            client_failovers: records.iter().filter(|r| r.tries > 1).count() as u64,
            served_elsewhere: records
                .iter()
                .filter(|r| r.node.is_some_and(|n| n != r.region))
                .count() as u64,
            seconds: stats::per_second(records, case.duration.as_secs_f64().ceil() as u64),
            failed_sample: records
                .iter()
                .filter(|r| !r.outcome.answered())
                .take(30)
                .cloned()
                .collect(),
            totals,
            windows,
            restarts,
            skipped,
            oracle,
            shutdown,
            panics,
            tenants,
            raft,
            write_times,
            checks,
            verdict: verdict.to_owned(),
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// Writes `report.json`, `report.md` and `chart.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("chart.svg"), svg::chart(self))?;
        std::fs::write(dir.join("report.md"), markdown::page(self))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::case::Signal;

    fn totals(requests: u64, ok: u64, p99_ms: f64) -> Totals {
        Totals {
            requests,
            ok,
            success_ratio: stats::ratio(ok, requests),
            latency: stats::Quantiles {
                p99_ms,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ok_oracle() -> OracleReport {
        OracleReport {
            ok: true,
            ..Default::default()
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn ratio_at_the_target_passes_just_below_fails() {
        let sla = SlaSpec::default();
        let pass = judge(
            &sla,
            &totals(10_000, 9_990, 50.0),
            0,
            &ok_oracle(),
            &[],
            &[],
            &[],
        );
        assert!(failed(&pass).is_empty(), "{pass:?}");
        let fail = judge(
            &sla,
            &totals(10_000, 9_989, 50.0),
            0,
            &ok_oracle(),
            &[],
            &[],
            &[],
        );
        assert_eq!(failed(&fail), vec!["success ratio"]);
        // No requests at all is not a pass.
        let none = judge(&sla, &totals(0, 0, 0.0), 0, &ok_oracle(), &[], &[], &[]);
        assert_eq!(failed(&none), vec!["success ratio"]);
    }

    #[test]
    fn killed_in_flight_are_forgiven_only_when_the_case_says_so() {
        let t = totals(1_000, 997, 50.0);
        let strict = judge(&SlaSpec::default(), &t, 2, &ok_oracle(), &[], &[], &[]);
        assert_eq!(failed(&strict), vec!["success ratio"]);
        let forgiving = SlaSpec {
            forgive_killed_in_flight: true,
            ..SlaSpec::default()
        };
        // 997 of 998: still below 99.9%.
        assert_eq!(
            failed(&judge(&forgiving, &t, 2, &ok_oracle(), &[], &[], &[])),
            vec!["success ratio"]
        );
        // 997 of 997.
        assert!(failed(&judge(&forgiving, &t, 3, &ok_oracle(), &[], &[], &[])).is_empty());
    }

    #[test]
    fn p99_oracle_restarts_skips_and_panics_each_fail_the_run() {
        let sla = SlaSpec {
            p99_ms: Some(100.0),
            min_restarts: Some(2),
            ..SlaSpec::default()
        };
        let t = totals(1_000, 1_000, 150.0);
        let restart = |ready: Option<f64>| Restart {
            node: 1,
            signal: Signal::Kill,
            was_leader: false,
            at_s: 1.0,
            exit: "signal: 9".into(),
            ready_after_s: ready,
            error: None,
        };
        let lost = OracleReport::default();
        let checks = judge(
            &sla,
            &t,
            0,
            &lost,
            &[restart(Some(0.1)), restart(None)],
            &["kill #1: no leader".into()],
            &["n1: panicked at x".into()],
        );
        assert_eq!(
            failed(&checks),
            vec![
                "p99 latency",
                "no acknowledged write lost",
                "every restarted node ready",
                "every fault carried out",
                "no node panicked"
            ]
        );
        // Too few restarts, all ready.
        let few = judge(
            &sla,
            &totals(10, 10, 1.0),
            0,
            &ok_oracle(),
            &[restart(Some(0.1))],
            &[],
            &[],
        );
        assert_eq!(failed(&few), vec!["every restarted node ready"]);
    }
}
