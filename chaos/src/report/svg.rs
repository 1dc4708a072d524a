//! The chart of a run, as hand-written SVG: success ratio (top) and p99
//! latency of successful requests (bottom) per second, the SLA targets as
//! dashed lines, and each fault window shaded and labelled. Plain text
//! keeps the suite free of a plotting dependency, and the file opens in
//! any browser.

use std::fmt::Write as _;

use super::RunReport;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 200.0;
const GAP: f64 = 50.0;
const TOP: f64 = 96.0;
const COLORS: [&str; 6] = [
    "#e4572e", "#4c72b0", "#8c564b", "#9467bd", "#17becf", "#bcbd22",
];

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round upper bound for an axis (1, 2, 5 × 10^k).
pub fn nice_ceiling(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if value <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// The chart of `report`.
pub fn chart(report: &RunReport) -> String {
    let duration = report.duration_s.max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let x = |t: f64| LEFT + plot_w * (t / duration).clamp(0.0, 1.0);
    let top1 = TOP;
    let top2 = TOP + PANEL + GAP;

    let min_ratio = report
        .seconds
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| s.success_ratio)
        .fold(1.0_f64, f64::min)
        .min(report.sla.success_ratio);
    let ratio_floor = if min_ratio >= 0.99 {
        0.99
    } else {
        (min_ratio * 10.0).floor() / 10.0
    };
    let y1 =
        |r: f64| top1 + PANEL * (1.0 - ((r - ratio_floor) / (1.0 - ratio_floor)).clamp(0.0, 1.0));
    let max_p99 = report
        .seconds
        .iter()
        .map(|s| s.p99_ms)
        .fold(report.sla.p99_ms.unwrap_or(0.0), f64::max);
    let p99_top = nice_ceiling(max_p99 * 1.1);
    let y2 = |ms: f64| top2 + PANEL * (1.0 - (ms / p99_top).clamp(0.0, 1.0));

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{title}</text>
<text x="{LEFT}" y="40" fill="#555">{subtitle}</text>
"##,
        title = escape(&format!(
            "{}: {}",
            report.case,
            report.verdict.to_uppercase()
        )),
        subtitle = escape(&format!(
            "{} requests, {:.3}% ok, p99 {:.0} ms, lost writes {}, {} nodes, {} req/s",
            report.totals.requests,
            report.totals.success_ratio * 100.0,
            report.totals.latency.p99_ms,
            report.oracle.lost.len(),
            report.nodes,
            report.rate
        )),
    );
    // Fault windows, both panels, labels staggered so they do not overlap.
    for (i, w) in report.windows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let (x0, x1) = (x(w.start_s), x(w.end_s.max(w.start_s + 0.3)));
        for top in [top1, top2] {
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="{color}" fill-opacity="0.15"/>"##,
                x1 - x0
            );
        }
        let label_y = top1 - 4.0 - 11.0 * (i % 4) as f64;
        let _ = writeln!(
            s,
            r##"<text x="{x0:.1}" y="{label_y}" font-size="10" fill="{color}">{}</text>"##,
            escape(format!("{} {}", w.label, w.target).trim())
        );
    }
    // Axes and grid.
    for (top, ticks) in [
        (
            top1,
            (0..=4)
                .map(|k| {
                    let r = ratio_floor + (1.0 - ratio_floor) * k as f64 / 4.0;
                    (y1(r), format!("{:.2}%", r * 100.0))
                })
                .collect::<Vec<_>>(),
        ),
        (
            top2,
            (0..=4)
                .map(|k| {
                    let ms = p99_top * k as f64 / 4.0;
                    (y2(ms), format!("{ms:.0} ms"))
                })
                .collect::<Vec<_>>(),
        ),
    ] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>"##
        );
        for (y, label) in ticks {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0
            );
        }
    }
    let step = nice_ceiling(duration / 10.0);
    let mut t = 0.0;
    while t <= duration + 1e-9 {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{t:.0}</text>"##,
            x(t),
            top2 + PANEL + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">seconds (by due time)</text>
<text x="{LEFT}" y="{:.1}" font-weight="bold">success ratio per second</text>
<text x="{LEFT}" y="{:.1}" font-weight="bold">p99 latency of successful requests per second</text>"##,
        LEFT + plot_w / 2.0,
        top2 + PANEL + 34.0,
        top1 + 14.0 + PANEL + 2.0,
        top2 - 6.0
    );
    // Targets.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="6,4"/>"##,
        LEFT + plot_w,
        y = y1(report.sla.success_ratio)
    );
    if let Some(p99) = report.sla.p99_ms {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="6,4"/>"##,
            LEFT + plot_w,
            y = y2(p99)
        );
    }
    // Series, plotted at the middle of each second.
    let ratio: Vec<String> = report
        .seconds
        .iter()
        .filter(|s| s.requests > 0)
        .map(|sec| format!("{:.1},{:.1}", x(sec.t as f64 + 0.5), y1(sec.success_ratio)))
        .collect();
    let p99: Vec<String> = report
        .seconds
        .iter()
        .filter(|s| s.ok > 0)
        .map(|sec| format!("{:.1},{:.1}", x(sec.t as f64 + 0.5), y2(sec.p99_ms)))
        .collect();
    for (points, color) in [(ratio, "#2ca02c"), (p99, "#1f77b4")] {
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##,
            points.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn axes_round_up() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(2_000.0), 2_000.0);
        assert_eq!(nice_ceiling(2_001.0), 5_000.0);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
