//! The control plane's checks: elections during the run, how fast config
//! writes were acknowledged, and how old health reports got.

use serde::Serialize;

use super::Check;
use crate::case::SlaSpec;
use crate::oracle::{WriteRecord, WriteResult};
use crate::runner::observe::RaftReport;

/// How fast config writes were acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteTimes {
    /// Writes sent.
    pub sent: usize,
    /// Acknowledged (200).
    pub acked: usize,
    /// Median time to the acknowledgement, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest acknowledgement, ms.
    pub max_ms: f64,
}

impl WriteTimes {
    /// Over every write that was sent (a write never sent is left out).
    pub fn of(writes: &[WriteRecord]) -> Self {
        let sent: Vec<&WriteRecord> = writes
            .iter()
            .filter(|w| !matches!(w.result, WriteResult::NotSent(_)))
            .collect();
        let mut acked: Vec<f64> = sent
            .iter()
            .filter(|w| w.result == WriteResult::Acked)
            .map(|w| w.latency_us as f64 / 1000.0)
            .collect();
        acked.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if acked.is_empty() {
                return 0.0;
            }
            let i = ((acked.len() as f64 * q).ceil() as usize).clamp(1, acked.len()) - 1;
            acked[i]
        };
        Self {
            sent: sent.len(),
            acked: acked.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: acked.last().copied().unwrap_or(0.0),
        }
    }

    /// Share of the writes sent that were acknowledged within `ms`.
    pub fn share_within(writes: &[WriteRecord], ms: f64) -> (usize, usize) {
        let sent = writes
            .iter()
            .filter(|w| !matches!(w.result, WriteResult::NotSent(_)));
        let (mut within, mut all) = (0, 0);
        for w in sent {
            all += 1;
            if w.result == WriteResult::Acked && (w.latency_us as f64) / 1000.0 <= ms {
                within += 1;
            }
        }
        (within, all)
    }
}

/// The checks the case's SLA asks of the control plane.
pub fn checks(sla: &SlaSpec, raft: &RaftReport, writes: &[WriteRecord]) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(max) = sla.max_term_changes {
        checks.push(Check {
            name: "elections".into(),
            ok: raft.samples > 0 && raft.term_changes <= max,
            detail: format!(
                "the highest term rose {} times (target at most {max}), term {} -> {}, at {:?} s; {} samples",
                raft.term_changes,
                raft.first_term,
                raft.last_term,
                raft.term_change_at_s,
                raft.samples
            ),
        });
    }
    if let Some(ms) = sla.write_commit_ms {
        let (within, all) = WriteTimes::share_within(writes, ms);
        let share = if all == 0 {
            0.0
        } else {
            within as f64 / all as f64
        };
        checks.push(Check {
            name: "config writes committed in time".into(),
            ok: all > 0 && share >= sla.write_commit_share,
            detail: format!(
                "{within} of {all} writes acknowledged within {ms} ms ({:.2}%, target {:.2}%)",
                share * 100.0,
                sla.write_commit_share * 100.0
            ),
        });
    }
    if let Some(max) = sla.max_report_age_ms {
        let worst = raft.max_report_age_ms.values().copied().max();
        checks.push(Check {
            name: "health reports fresh".into(),
            ok: worst.is_some_and(|w| w <= max),
            detail: format!(
                "oldest report of another member held, per node: {:?} ms (target at most {max} ms)",
                raft.max_report_age_ms
            ),
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::oracle::Target;

    fn write(latency_ms: u64, result: WriteResult) -> WriteRecord {
        WriteRecord {
            seq: 1,
            target: Target::Route,
            key: "k".into(),
            value: "v".into(),
            node: 1,
            t_us: 0,
            latency_us: latency_ms * 1000,
            result,
        }
    }

    #[test]
    fn write_shares_count_every_sent_write() {
        let writes = [
            write(100, WriteResult::Acked),
            write(1900, WriteResult::Acked),
            write(2500, WriteResult::Acked),
            write(8000, WriteResult::Ambiguous("503".into())),
            write(0, WriteResult::NotSent("down".into())),
        ];
        assert_eq!(WriteTimes::share_within(&writes, 2000.0), (2, 4));
        let times = WriteTimes::of(&writes);
        assert_eq!((times.sent, times.acked), (4, 3));
        assert_eq!(times.p50_ms, 1900.0);
        assert_eq!(times.max_ms, 2500.0);
        let sla = SlaSpec {
            write_commit_ms: Some(2000.0),
            max_term_changes: Some(0),
            max_report_age_ms: Some(3000),
            ..SlaSpec::default()
        };
        let raft = RaftReport {
            samples: 10,
            term_changes: 1,
            max_report_age_ms: [(1, 2000)].into_iter().collect(),
            ..RaftReport::default()
        };
        let checks = checks(&sla, &raft, &writes);
        let ok: Vec<(String, bool)> = checks.iter().map(|c| (c.name.clone(), c.ok)).collect();
        assert_eq!(
            ok,
            vec![
                ("elections".to_owned(), false),
                ("config writes committed in time".to_owned(), false),
                ("health reports fresh".to_owned(), true)
            ]
        );
        // Nothing asked, nothing judged.
        assert!(super::checks(&SlaSpec::default(), &raft, &writes).is_empty());
    }
}
