//! Watches the cluster's own view of itself while a case runs: every node's
//! term and leader, and the age of every member's health report as each
//! node judges it. A WAN case is judged on these as much as on requests:
//! an election after the first one, or a health report that stops being
//! committed, is an outage of the control plane even when every request
//! is still answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster::LocalCluster;

/// How often each node is asked.
const EVERY: Duration = Duration::from_millis(500);

/// One node's answer at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds from the start of the load.
    pub t_s: f64,
    /// The node asked.
    pub node: u64,
    /// Its term.
    pub term: u64,
    /// The leader it names.
    pub leader: Option<u64>,
    /// The oldest report of another member it still holds, in ms.
    pub oldest_report_ms: Option<u64>,
}

/// Polls every running node until `end`; returns what it saw.
pub async fn run(cluster: Arc<LocalCluster>, start: Instant, end: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < end {
        tick.tick().await;
        let t_s = Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64();
        for id in cluster.up() {
            let Some(view) = cluster.view(id).await else {
                continue;
            };
            let oldest_report_ms = match cluster.admin(id) {
                Some(admin) => oldest_report(&admin, id).await,
                None => None,
            };
            samples.push(Sample {
                t_s,
                node: id,
                term: view.term,
                leader: view.leader,
                oldest_report_ms,
            });
        }
    }
    samples
}

async fn oldest_report(admin: &harness::admin::Admin, own: u64) -> Option<u64> {
    let reply = admin.health(Duration::from_secs(1)).await.ok()?;
    let answer: proto::api::admin::HealthAnswer = serde_json::from_slice(&reply.body).ok()?;
    answer
        .reports
        .iter()
        .filter(|(id, _)| **id != own)
        .map(|(_, r)| r.age_ms)
        .max()
}

/// What the samples say about the control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RaftReport {
    /// Samples taken.
    pub samples: usize,
    /// The highest term any node held when the load began.
    pub first_term: u64,
    /// The highest term seen during the run.
    pub last_term: u64,
    /// Term changes during the run, as the highest term seen grew: each is
    /// at least one election.
    pub term_changes: u64,
    /// Seconds (from the start of the load) at which the highest term grew.
    pub term_change_at_s: Vec<f64>,
    /// The oldest health report of another member any node held, in ms,
    /// per node.
    pub max_report_age_ms: BTreeMap<u64, u64>,
}

impl RaftReport {
    /// Summarises the samples (taken in time order).
    pub fn of(samples: &[Sample]) -> Self {
        let mut report = Self {
            samples: samples.len(),
            ..Self::default()
        };
        let mut highest: Option<u64> = None;
        for s in samples {
            match highest {
                None => {
                    highest = Some(s.term);
                    report.first_term = s.term;
                }
                Some(h) if s.term > h => {
                    highest = Some(s.term);
                    report.term_changes += 1;
                    report.term_change_at_s.push((s.t_s * 10.0).round() / 10.0);
                }
                Some(_) => {}
            }
            if let Some(age) = s.oldest_report_ms {
                let max = report.max_report_age_ms.entry(s.node).or_insert(0);
                *max = (*max).max(age);
            }
        }
        report.last_term = highest.unwrap_or(0);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, node: u64, term: u64, age: Option<u64>) -> Sample {
        Sample {
            t_s,
            node,
            term,
            leader: Some(1),
            oldest_report_ms: age,
        }
    }

    #[test]
    fn term_changes_count_each_rise_of_the_highest_term_once() {
        let samples = [
            sample(0.0, 1, 3, Some(900)),
            sample(0.0, 2, 3, Some(1200)),
            sample(0.5, 1, 3, Some(400)),
            // n2 campaigns, then n1 follows: one rise, seen twice.
            sample(1.0, 2, 4, None),
            sample(1.0, 1, 4, Some(2500)),
            sample(1.5, 3, 6, Some(100)),
            sample(2.0, 1, 5, None),
        ];
        let report = RaftReport::of(&samples);
        assert_eq!(report.first_term, 3);
        assert_eq!(report.last_term, 6);
        assert_eq!(report.term_changes, 2);
        assert_eq!(report.term_change_at_s, vec![1.0, 1.5]);
        assert_eq!(report.max_report_age_ms[&1], 2500);
        assert_eq!(report.max_report_age_ms[&2], 1200);
        assert_eq!(report.max_report_age_ms[&3], 100);
        assert_eq!(RaftReport::of(&[]), RaftReport::default());
    }
}
