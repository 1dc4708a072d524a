//! Service level per priority class: each class's requests on this node
//! over the health window (answered, failed, the answered ones' p99),
//! against the objective the class sets (`slo = { success, p99_ms }`), for
//! `/admin/v1/health`, `meridian status` and Prometheus.
//!
//! A request counts once, where the proxy finishes it
//! (`proxy::finish::class_done`): answered when an upstream's answer was
//! given (a stream once its first chunk was), failed when none was (every
//! target failed, was cooled or shed) or the node shed it at its
//! `max_in_flight`. Requests refused for the client's own mistake or its
//! key's limits before routing do not count: they say nothing of the
//! service. The latency is the one `meridian_request_duration` measures.
//!
//! Per class, cumulative counters are atomics and the window is a small
//! ring of HDR histograms ([`window`]) behind the class's own lock, held
//! for one record. [`sla`] is the arithmetic, pure.
//!
//! - [`window`]: one class's ring of slots.

pub mod window;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use proto::api::admin::{ClassSla, SloView};
use proto::config::{ClassConfig, SloConfig, class_rank};

use super::{counter, gauge};
pub use window::{Counts, Window};

/// Outcomes of a class's requests as labelled.
pub const CLASS_OUTCOMES: [&str; 2] = ["success", "error"];

/// One class's counters and window.
#[derive(Debug)]
struct Class {
    name: String,
    slo: Option<SloConfig>,
    /// Since start, in the order of [`CLASS_OUTCOMES`].
    totals: [AtomicU64; 2],
    window: Mutex<Window>,
}

/// Every class of the node's `[[classes]]`, in priority order; empty when
/// none are configured, and then nothing is counted.
#[derive(Debug, Default)]
pub struct Classes {
    classes: Vec<Class>,
    configs: Vec<ClassConfig>,
}

impl Classes {
    /// The classes of `configs`, each with a window of `slots` slots of
    /// `slot` (the health window's shape).
    pub fn new(configs: &[ClassConfig], slots: usize, slot: Duration) -> Self {
        let slot_ms = u64::try_from(slot.as_millis()).unwrap_or(u64::MAX);
        Self {
            classes: configs
                .iter()
                .map(|c| Class {
                    name: c.name.clone(),
                    slo: c.slo,
                    totals: Default::default(),
                    window: Mutex::new(Window::new(slots, slot_ms)),
                })
                .collect(),
            configs: configs.to_vec(),
        }
    }

    /// The rank of a key's class (`KeyLimits::class`): the last class when
    /// it names none.
    pub fn rank(&self, class: Option<&str>) -> usize {
        class_rank(&self.configs, class)
    }

    /// Counts one request of class `rank` at `now_ms`: answered after
    /// `latency`, or failed (`None`).
    pub fn record(&self, rank: usize, now_ms: u64, latency: Option<Duration>) {
        let Some(class) = self.classes.get(rank) else {
            return;
        };
        class.totals[usize::from(latency.is_none())].fetch_add(1, Ordering::Relaxed);
        class
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(now_ms, latency);
    }

    /// Every class's service level at `now_ms`, in priority order.
    pub fn report(&self, now_ms: u64) -> Vec<ClassSla> {
        self.classes
            .iter()
            .map(|c| {
                let counts = c
                    .window
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .counts(now_ms);
                sla(&c.name, counts, c.slo.as_ref())
            })
            .collect()
    }

    /// Writes `meridian_class_*`: requests by outcome since start, and the
    /// window's success ratio, p99 and error budget left.
    pub fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        now_ms: u64,
    ) -> Result<(), std::fmt::Error> {
        if self.classes.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            "meridian_class_requests",
            "Requests of each priority class on this node, by outcome (success: an upstream's answer \
             was given; error: none was, or the request was shed)",
            None,
            MetricType::Counter,
        )?;
        for c in &self.classes {
            for (outcome, n) in CLASS_OUTCOMES.iter().zip(&c.totals) {
                let labels = [("class", c.name.as_str()), ("outcome", *outcome)];
                counter(&mut m, &labels, n.load(Ordering::Relaxed))?;
            }
        }
        let report = self.report(now_ms);
        let mut m = encoder.encode_descriptor(
            "meridian_class_success_ratio",
            "Share of each class's requests answered over the health window (1 with none)",
            None,
            MetricType::Gauge,
        )?;
        for c in &report {
            gauge(&mut m, &[("class", &c.name)], c.success_ratio)?;
        }
        let mut m = encoder.encode_descriptor(
            "meridian_class_p99",
            "p99 time to the answer (a stream's first chunk) of each class's answered requests over \
             the health window; absent with none",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for c in &report {
            if let Some(p99) = c.p99_ms {
                gauge(&mut m, &[("class", &c.name)], p99 / 1_000.0)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "meridian_class_error_budget_left",
            "Share of each class's error budget (1 - slo.success) not spent over the health window: 1 \
             untouched, below 0 overspent; absent for a class without an slo",
            None,
            MetricType::Gauge,
        )?;
        for c in &report {
            if let Some(left) = c.error_budget_left {
                gauge(&mut m, &[("class", &c.name)], left)?;
            }
        }
        Ok(())
    }
}

/// A class's service level from its window's `counts`, against `slo`.
///
/// The success ratio is answered / requests (1 with no requests). The error
/// budget is the failures the objective allows, `(1 - slo.success) ×
/// requests`; what is left of it is `1 - failed / allowed`: 1 with no
/// failure, 0 when exactly the allowance failed, negative past it.
pub fn sla(name: &str, counts: Counts, slo: Option<&SloConfig>) -> ClassSla {
    let requests = counts.requests();
    let success_ratio = if requests == 0 {
        1.0
    } else {
        counts.answered as f64 / requests as f64
    };
    let error_budget_left = slo.map(|slo| {
        let allowed = (1.0 - slo.success) * requests as f64;
        if counts.failed == 0 {
            1.0
        } else if allowed > 0.0 {
            1.0 - counts.failed as f64 / allowed
        } else {
            // Validation keeps `success` below 1, so not reached.
            f64::MIN
        }
    });
    ClassSla {
        name: name.to_owned(),
        requests,
        success_ratio,
        p99_ms: counts.p99_ms,
        slo: slo.map(|s| SloView {
            success: s.success,
            p99_ms: s.p99_ms,
        }),
        error_budget_left,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn counts(answered: u64, failed: u64) -> Counts {
        Counts {
            answered,
            failed,
            p99_ms: Some(12.0),
        }
    }

    const SLO: SloConfig = SloConfig {
        success: 0.999,
        p99_ms: Some(2_000),
    };

    #[test]
    fn the_error_budget_is_what_the_objective_allows_to_fail() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let s = sla("pro", counts(10_000, 0), Some(&SLO));
        assert_eq!(s.requests, 10_000);
        assert!(close(s.success_ratio, 1.0));
        assert_eq!(s.error_budget_left, Some(1.0));
        // 10 of 10,000 may fail at 99.9 %: 3 spent leaves 70 %.
        let s = sla("pro", counts(9_997, 3), Some(&SLO));
        assert!(close(s.success_ratio, 0.9997));
        assert!(close(s.error_budget_left.unwrap(), 0.7));
        // Exactly the allowance, then twice it.
        assert!(close(
            sla("pro", counts(9_990, 10), Some(&SLO))
                .error_budget_left
                .unwrap(),
            0.0
        ));
        assert!(close(
            sla("pro", counts(9_980, 20), Some(&SLO))
                .error_budget_left
                .unwrap(),
            -1.0
        ));
        // No requests: nothing failed, nothing spent.
        let s = sla("pro", counts(0, 0), Some(&SLO));
        assert!(close(s.success_ratio, 1.0));
        assert_eq!(s.error_budget_left, Some(1.0));
        // No objective: no budget.
        let s = sla("free", counts(5, 5), None);
        assert!(close(s.success_ratio, 0.5));
        assert_eq!((s.slo, s.error_budget_left), (None, None));
        assert_eq!(s.p99_ms, Some(12.0));
    }

    #[test]
    fn requests_count_in_their_class_and_keys_without_one_in_the_last() {
        let class = |name: &str, slo| ClassConfig {
            name: name.into(),
            reserved: 0.0,
            queue_ms: 0,
            slo,
        };
        let classes = Classes::new(
            &[class("pro", Some(SLO)), class("free", None)],
            6,
            Duration::from_secs(5),
        );
        assert_eq!(classes.rank(Some("pro")), 0);
        assert_eq!(classes.rank(None), 1);
        classes.record(0, 1_000, Some(Duration::from_millis(40)));
        classes.record(0, 1_000, None);
        classes.record(1, 1_000, Some(Duration::from_millis(5)));
        classes.record(7, 1_000, None);
        let report = classes.report(2_000);
        assert_eq!(report.len(), 2);
        assert_eq!((report[0].name.as_str(), report[0].requests), ("pro", 2));
        assert!((report[0].success_ratio - 0.5).abs() < 1e-9);
        assert!(report[0].error_budget_left.unwrap() < 0.0);
        assert_eq!((report[1].requests, report[1].slo), (1, None));
        assert!(Classes::default().report(0).is_empty());

        #[derive(Debug)]
        struct C(Classes);
        impl prometheus_client::collector::Collector for C {
            fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
                self.0.encode(&mut e, 2_000)
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(C(classes)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "meridian_class_requests_total{class=\"pro\",outcome=\"error\"} 1",
            "meridian_class_success_ratio{class=\"pro\"} 0.5",
            "meridian_class_p99_seconds{class=\"free\"} 0.005",
            "meridian_class_error_budget_left{class=\"pro\"} -49",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("meridian_class_error_budget_left{class=\"free\"}"));
    }
}
