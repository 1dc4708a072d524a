//! Figures across rounds, the acceptance ratios, and the Markdown and JSON output.

use std::fmt::Write as _;

use load::{Percentiles, Summary};
use serde::Serialize;

/// A target of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// meridian-mock, called directly: the baseline.
    Direct,
    /// nginx `proxy_pass` in front of the mock: the reference proxy.
    Nginx,
    /// meridian in front of the mock: what we measure.
    Meridian,
    /// An earlier meridian build in front of the mock (`--baseline-bin`),
    /// so a change's cost is measured side by side with the build before it.
    Baseline,
    /// The same meridian called through Anthropic's Messages API
    /// (`--messages`): each request and answer translated to and from the
    /// mock's OpenAI chat, so translation's cost (and, in the streaming
    /// phase, what it adds to the first byte) shows beside pass-through.
    Messages,
}

impl TargetKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Nginx => "nginx",
            Self::Meridian => "meridian",
            Self::Baseline => "baseline",
            Self::Messages => "meridian-messages",
        }
    }
}

/// One measurement of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// What the load generator saw.
    pub summary: Summary,
    /// CPU time the proxy spent per ok answer, microseconds (user + system,
    /// all its processes); `None` for the direct target or without `/proc`.
    pub proxy_cpu_us: Option<f64>,
}

/// Medians across rounds of one target in one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Ok answers per second.
    pub achieved_rate: f64,
    /// Median latency (or TTFB, for the streaming phase), microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// The proxy's CPU time per ok answer, microseconds.
    pub proxy_cpu_us: Option<f64>,
}

/// One target's results in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// Which target.
    pub target: TargetKind,
    /// Medians across rounds.
    pub median: Figures,
    /// Median p50 minus the direct target's; `None` for direct itself.
    pub added_p50_us: Option<f64>,
    /// Median p99 minus the direct target's; `None` for direct itself.
    pub added_p99_us: Option<f64>,
    /// Median p99.9 minus the direct target's; `None` for direct itself.
    pub added_p999_us: Option<f64>,
    /// Requests that did not end ok, over all rounds.
    pub failed: u64,
    /// Every round, in order.
    pub rounds: Vec<Round>,
}

/// One phase: its offered rate (open loop) and every target's results.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// Offered rate in requests per second; `None` for closed loop.
    pub rate: Option<f64>,
    /// Per target, in the order measured.
    pub targets: Vec<TargetResult>,
}

impl PhaseResult {
    /// Summarizes `runs` (per target, its rounds) using the percentiles `pick` selects.
    pub fn new(
        rate: Option<f64>,
        runs: Vec<(TargetKind, Vec<Round>)>,
        pick: fn(&Summary) -> &Percentiles,
    ) -> Self {
        let medians: Vec<Figures> = runs
            .iter()
            .map(|(_, rounds)| medians(rounds, pick))
            .collect();
        let direct = runs
            .iter()
            .zip(&medians)
            .find(|((kind, _), _)| *kind == TargetKind::Direct)
            .map(|(_, figures)| *figures);
        let targets = runs
            .into_iter()
            .zip(medians)
            .map(|((target, rounds), median)| {
                let added = |f: fn(&Figures) -> f64| {
                    direct
                        .filter(|_| target != TargetKind::Direct)
                        .map(|d| f(&median) - f(&d))
                };
                TargetResult {
                    target,
                    median,
                    added_p50_us: added(|f| f.p50_us),
                    added_p99_us: added(|f| f.p99_us),
                    added_p999_us: added(|f| f.p999_us),
                    failed: rounds.iter().map(|r| r.summary.counts.failed()).sum(),
                    rounds,
                }
            })
            .collect();
        Self { rate, targets }
    }

    /// The results of `kind`, if it was measured.
    pub fn get(&self, kind: TargetKind) -> Option<&TargetResult> {
        self.targets.iter().find(|t| t.target == kind)
    }
}

/// Median of each figure across rounds.
fn medians(rounds: &[Round], pick: fn(&Summary) -> &Percentiles) -> Figures {
    let of = |f: &dyn Fn(&Summary) -> f64| median(rounds.iter().map(|r| f(&r.summary)).collect());
    let cpu: Vec<f64> = rounds.iter().filter_map(|r| r.proxy_cpu_us).collect();
    Figures {
        achieved_rate: of(&|s| s.achieved_rate),
        p50_us: of(&|s| pick(s).p50 as f64),
        p99_us: of(&|s| pick(s).p99 as f64),
        p999_us: of(&|s| pick(s).p999 as f64),
        proxy_cpu_us: (!cpu.is_empty()).then(|| median(cpu)),
    }
}

/// The median (mean of the middle two for an even count; 0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The two figures the proxy is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Acceptance {
    /// Saturation throughput, meridian / nginx (target ≥ 1.0).
    pub saturation_ratio: Option<f64>,
    /// p99 added over direct at half nginx saturation, meridian / nginx
    /// (target ≤ 1.0). `None` when either was not measured or nginx added
    /// nothing measurable (the ratio would mean nothing).
    pub added_p99_ratio: Option<f64>,
    /// p99 added over direct at 80 % of nginx's saturation, meridian /
    /// nginx (target ≤ 1.0), when that phase ran.
    pub added_p99_high_ratio: Option<f64>,
    /// p99.9 added over direct at 80 % of nginx's saturation, meridian /
    /// nginx (target ≤ 1.0), when that phase ran.
    pub added_p999_high_ratio: Option<f64>,
    /// Saturation throughput, meridian / the baseline build (when measured).
    pub baseline_saturation_ratio: Option<f64>,
    /// Proxy CPU per ok answer at saturation, meridian / the baseline build.
    pub baseline_cpu_ratio: Option<f64>,
    /// p99 added over direct at the fixed rate, meridian / the baseline build.
    pub baseline_added_p99_ratio: Option<f64>,
}

impl Acceptance {
    /// Computes the ratios from the saturation and latency phases.
    pub fn new(
        saturation: &PhaseResult,
        latency: &PhaseResult,
        latency_high: Option<&PhaseResult>,
    ) -> Self {
        let rate = |kind| saturation.get(kind).map(|t| t.median.achieved_rate);
        let added = |kind| latency.get(kind).and_then(|t| t.added_p99_us);
        let high = |kind, pick: fn(&TargetResult) -> Option<f64>| {
            latency_high
                .and_then(|phase| phase.get(kind))
                .and_then(pick)
        };
        let cpu = |kind| saturation.get(kind).and_then(|t| t.median.proxy_cpu_us);
        use TargetKind::{Baseline, Meridian, Nginx};
        Self {
            saturation_ratio: ratio(rate(Meridian), rate(Nginx)),
            added_p99_ratio: ratio(added(Meridian), added(Nginx)),
            added_p99_high_ratio: ratio(
                high(Meridian, |t| t.added_p99_us),
                high(Nginx, |t| t.added_p99_us),
            ),
            added_p999_high_ratio: ratio(
                high(Meridian, |t| t.added_p999_us),
                high(Nginx, |t| t.added_p999_us),
            ),
            baseline_saturation_ratio: ratio(rate(Meridian), rate(Baseline)),
            baseline_cpu_ratio: ratio(cpu(Meridian), cpu(Baseline)),
            baseline_added_p99_ratio: ratio(added(Meridian), added(Baseline)),
        }
    }
}

/// `a / b` when both exist and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available to the bench (`nproc`).
    pub nproc: usize,
    /// First line of `nginx -V`, when nginx was measured.
    pub nginx_version: Option<String>,
}

/// The settings of the run, as used (after `--quick`).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Rounds of each phase.
    pub rounds: usize,
    /// Length of each measurement, seconds.
    pub duration_secs: f64,
    /// Closed-loop warm-up per target before the first round, seconds.
    pub warmup_secs: f64,
    /// Closed-loop connections for saturation.
    pub concurrency: usize,
    /// Open-loop rate asked for with `--rate`, if any.
    pub rate: Option<f64>,
    /// Streaming rate asked for with `--stream-rate`, if any.
    pub stream_rate: Option<f64>,
    /// Per-request timeout, seconds.
    pub timeout_secs: f64,
    /// Open-loop in-flight cap.
    pub max_in_flight: usize,
    /// Threads of the load generator's runtime.
    pub client_threads: usize,
    /// The open loop's batch window, microseconds (see `OpenLoop::batch_window`).
    pub batch_window_us: u64,
    /// Chunks per streamed answer.
    pub stream_chunks: u32,
    /// Whether phase 2b (80 % of nginx's saturation) runs.
    pub high_load: bool,
    /// The cores each side was pinned to, when it was.
    pub cores: Option<String>,
}

/// Everything the run measured; written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// Phase 1: closed-loop saturation throughput.
    pub saturation: PhaseResult,
    /// Phase 2: open-loop latency of plain requests.
    pub latency: PhaseResult,
    /// Phase 2b: the same at 80 % of nginx's saturation (`--high-load`).
    pub latency_high: Option<PhaseResult>,
    /// Phase 3: open-loop time to first chunk of streams.
    pub streaming: PhaseResult,
    /// The acceptance ratios.
    pub acceptance: Acceptance,
}

/// The report for people.
pub fn markdown(r: &Results) -> String {
    let s = &r.settings;
    let mut out = String::new();
    let _ = writeln!(out, "# Meridian end-to-end proxy benchmark\n");
    let _ = writeln!(
        out,
        "{} CPUs · {} round(s), medians across rounds · {:.0} s per measurement · upstream: meridian-mock, no delay · load generator: {} thread(s)\n",
        r.machine.nproc, s.rounds, s.duration_secs, s.client_threads
    );
    if let Some(cores) = &s.cores {
        let _ = writeln!(out, "Pinned: {cores}\n");
    }
    let _ = writeln!(
        out,
        "## 1. Saturation throughput (closed loop, {} connections)\n",
        s.concurrency
    );
    let _ = writeln!(
        out,
        "| target | req/s | proxy CPU µs/req | failed |\n|---|---:|---:|---:|"
    );
    for t in &r.saturation.targets {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} |",
            t.target.name(),
            t.median.achieved_rate,
            cpu(t.median.proxy_cpu_us),
            t.failed
        );
    }
    phase_table(
        &mut out,
        &format!(
            "## 2. Latency at {:.0} req/s (open loop, plain requests)",
            rate(&r.latency)
        ),
        "latency",
        &r.latency,
    );
    if let Some(high) = &r.latency_high {
        phase_table(
            &mut out,
            &format!(
                "## 2b. Latency at {:.0} req/s (open loop, plain requests, 80 % of nginx's saturation)",
                rate(high)
            ),
            "latency",
            high,
        );
    }
    phase_table(
        &mut out,
        &format!(
            "## 3. Streaming at {:.0} req/s (open loop, {} chunks): time to first chunk",
            rate(&r.streaming),
            s.stream_chunks
        ),
        "TTFB",
        &r.streaming,
    );
    let _ = writeln!(out, "\n## Acceptance\n");
    let both = |phase: &PhaseResult| {
        phase.get(TargetKind::Meridian).is_some() && phase.get(TargetKind::Nginx).is_some()
    };
    let _ = writeln!(
        out,
        "- Saturation throughput, meridian / nginx: {} (target ≥ 1.0)",
        verdict(
            r.acceptance.saturation_ratio,
            |x| x >= 1.0,
            both(&r.saturation)
        )
    );
    let _ = writeln!(
        out,
        "- Added p99 at half nginx saturation, meridian / nginx: {} (target ≤ 1.0)",
        verdict(r.acceptance.added_p99_ratio, |x| x <= 1.0, both(&r.latency))
    );
    if let Some(high) = &r.latency_high {
        let _ = writeln!(
            out,
            "- Added p99 at 80 % of nginx saturation, meridian / nginx: {} (target ≤ 1.0)",
            verdict(r.acceptance.added_p99_high_ratio, |x| x <= 1.0, both(high))
        );
        let _ = writeln!(
            out,
            "- Added p99.9 at 80 % of nginx saturation, meridian / nginx: {} (target ≤ 1.0)",
            verdict(r.acceptance.added_p999_high_ratio, |x| x <= 1.0, both(high))
        );
    }
    if r.saturation.get(TargetKind::Baseline).is_some() {
        let a = &r.acceptance;
        let show =
            |x: Option<f64>| x.map_or_else(|| "not measured".to_owned(), |x| format!("{x:.3}"));
        let _ = writeln!(
            out,
            "- Against the baseline build, meridian / baseline: saturation {}, proxy CPU per answer {}, added p99 {}",
            show(a.baseline_saturation_ratio),
            show(a.baseline_cpu_ratio),
            show(a.baseline_added_p99_ratio)
        );
    }
    out
}

fn rate(phase: &PhaseResult) -> f64 {
    phase.rate.unwrap_or(0.0)
}

fn phase_table(out: &mut String, title: &str, what: &str, phase: &PhaseResult) {
    let _ = writeln!(out, "\n{title}\n");
    let _ = writeln!(
        out,
        "| target | achieved req/s | {what} p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | added p99.9 µs | proxy CPU µs/req | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for t in &phase.targets {
        let m = &t.median;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            t.target.name(),
            m.achieved_rate,
            m.p50_us,
            m.p99_us,
            m.p999_us,
            signed(t.added_p50_us),
            signed(t.added_p99_us),
            signed(t.added_p999_us),
            cpu(m.proxy_cpu_us),
            t.failed
        );
    }
}

fn cpu(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:+.0}"))
}

fn verdict(ratio: Option<f64>, ok: fn(f64) -> bool, measured: bool) -> String {
    match ratio {
        Some(x) if ok(x) => format!("**{x:.2}**, met"),
        Some(x) => format!("**{x:.2}**, NOT met"),
        None if measured => {
            "undefined: nginx added no latency over direct in this run (noise above its overhead)"
                .to_owned()
        }
        None => "not measured (needs both meridian and nginx)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use load::Counts;

    use super::*;

    fn summary(rate: f64, p50: u64, p99: u64) -> Round {
        let summary = Summary {
            offered_rate: None,
            achieved_rate: rate,
            wall_secs: 1.0,
            counts: Counts::default(),
            latency_us: Percentiles {
                count: 1,
                p50,
                p90: p50,
                p99,
                p999: p99,
                max: p99,
            },
            ttfb_us: Percentiles::default(),
        };
        Round {
            summary,
            proxy_cpu_us: Some(rate / 100.0),
        }
    }

    #[test]
    fn median_handles_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn added_latency_and_ratios_come_from_medians() {
        let latency = PhaseResult::new(
            Some(100.0),
            vec![
                (
                    TargetKind::Direct,
                    vec![
                        summary(100.0, 100, 300),
                        summary(99.0, 120, 500),
                        summary(100.0, 110, 400),
                    ],
                ),
                (TargetKind::Nginx, vec![summary(100.0, 200, 600)]),
                (TargetKind::Meridian, vec![summary(100.0, 150, 500)]),
            ],
            |s| &s.latency_us,
        );
        let direct = latency.get(TargetKind::Direct).unwrap();
        assert_eq!(direct.median.p50_us, 110.0);
        assert_eq!(direct.median.p99_us, 400.0);
        assert_eq!(direct.added_p99_us, None);
        let nginx = latency.get(TargetKind::Nginx).unwrap();
        assert_eq!(
            (nginx.added_p50_us, nginx.added_p99_us),
            (Some(90.0), Some(200.0))
        );
        let saturation = PhaseResult::new(
            None,
            vec![
                (TargetKind::Nginx, vec![summary(1000.0, 1, 1)]),
                (TargetKind::Meridian, vec![summary(1100.0, 1, 1)]),
            ],
            |s| &s.latency_us,
        );
        let acceptance = Acceptance::new(&saturation, &latency, None);
        assert!((acceptance.saturation_ratio.unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(acceptance.added_p99_high_ratio, None);
        assert!((acceptance.added_p99_ratio.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(acceptance.baseline_saturation_ratio, None);
    }

    #[test]
    fn a_baseline_build_is_compared_with_meridian() {
        let phase = |meridian, baseline| {
            PhaseResult::new(
                Some(100.0),
                vec![
                    (TargetKind::Direct, vec![summary(2000.0, 100, 300)]),
                    (TargetKind::Meridian, vec![summary(meridian, 150, 500)]),
                    (TargetKind::Baseline, vec![summary(baseline, 150, 700)]),
                ],
                |s| &s.latency_us,
            )
        };
        let acceptance = Acceptance::new(&phase(1200.0, 1000.0), &phase(100.0, 100.0), None);
        assert!((acceptance.baseline_saturation_ratio.unwrap() - 1.2).abs() < 1e-9);
        // proxy_cpu_us is rate / 100 in `summary`.
        assert!((acceptance.baseline_cpu_ratio.unwrap() - 1.2).abs() < 1e-9);
        // Added p99 over direct: 200 against 400.
        assert!((acceptance.baseline_added_p99_ratio.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(acceptance.saturation_ratio, None);
    }

    #[test]
    fn markdown_shows_tables_and_verdicts() {
        let phase = |rate, nginx_p99| {
            PhaseResult::new(
                rate,
                vec![
                    (TargetKind::Direct, vec![summary(2000.0, 100, 300)]),
                    (TargetKind::Nginx, vec![summary(1000.0, 150, nginx_p99)]),
                    (TargetKind::Meridian, vec![summary(1200.0, 140, 500)]),
                ],
                |s| &s.latency_us,
            )
        };
        let saturation = phase(None, 600);
        let latency = phase(Some(500.0), 300);
        let latency_high = phase(Some(800.0), 400);
        let results = Results {
            machine: Machine {
                nproc: 2,
                nginx_version: None,
            },
            settings: Settings {
                rounds: 1,
                duration_secs: 5.0,
                warmup_secs: 1.0,
                concurrency: 64,
                rate: None,
                stream_rate: None,
                timeout_secs: 10.0,
                max_in_flight: 4096,
                client_threads: 1,
                batch_window_us: 250,
                stream_chunks: 8,
                high_load: true,
                cores: Some("upstream 0-3, proxy 4-7, load 8-15".into()),
            },
            acceptance: Acceptance::new(&saturation, &latency, Some(&latency_high)),
            streaming: latency.clone(),
            saturation,
            latency,
            latency_high: Some(latency_high),
        };
        let md = markdown(&results);
        assert!(md.contains("| meridian | 1200 | 12.0 | 0 |"), "{md}");
        assert!(md.contains("## 2. Latency at 500 req/s"), "{md}");
        assert!(
            md.contains("| nginx | 1000 | 150 | 300 | 300 | +50 | +0 | +0 | 10.0 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("Pinned: upstream 0-3, proxy 4-7, load 8-15"),
            "{md}"
        );
        assert!(md.contains("## 2b. Latency at 800 req/s"), "{md}");
        // At 80 %: nginx adds 100 µs at p99 and p99.9, meridian 200.
        assert!(
            md.contains(
                "Added p99 at 80 % of nginx saturation, meridian / nginx: **2.00**, NOT met"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Added p99.9 at 80 % of nginx saturation, meridian / nginx: **2.00**, NOT met"
            ),
            "{md}"
        );
        assert!(md.contains("meridian / nginx: **1.20**, met"), "{md}");
        assert!(md.contains("meridian / nginx: undefined"), "{md}");
    }

    #[test]
    fn ratio_is_undefined_without_a_positive_reference() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(Some(1.0), Some(-5.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
    }
}
