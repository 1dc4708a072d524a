//! The report page for people: verdict and checks first, then the figures,
//! the faults as they happened, the restarts, the oracle and the failures.

use std::fmt::Write as _;

use super::RunReport;
use super::stats::Totals;

fn totals_row(name: &str, t: &Totals) -> String {
    format!(
        "| {name} | {} | {} | {:.4}% | {:.1} | {:.1} | {:.1} | {:.1} |",
        t.requests,
        t.requests - t.ok - t.limited,
        t.success_ratio * 100.0,
        t.latency.p50_ms,
        t.latency.p99_ms,
        t.latency.p999_ms,
        t.ttfb.p99_ms
    )
}

/// The Markdown page of `r`.
pub fn page(r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Chaos case `{}`: **{}**\n",
        r.case,
        r.verdict.to_uppercase()
    );
    if !r.description.is_empty() {
        let _ = writeln!(s, "{}\n", r.description);
    }
    let _ = writeln!(
        s,
        "{} nodes, {} req/s open loop ({:.0}% streamed) for {:.0} s; whole run {:.0} s.\n\n![chart](chart.svg)\n",
        r.nodes,
        r.rate,
        r.stream_share * 100.0,
        r.duration_s,
        r.wall_s
    );
    let _ = writeln!(
        s,
        "## Checks\n\n| check | result | figures |\n|---|---|---|"
    );
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            c.name,
            if c.ok { "pass" } else { "**FAIL**" },
            c.detail.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        s,
        "\n## Requests\n\nLatency in ms, of successful requests, from the due time (open loop).\n\n| | requests | failed | success | p50 | p99 | p99.9 | TTFB p99 |\n|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(s, "{}", totals_row("all", &r.totals));
    for (k, t) in &r.by_kind {
        let _ = writeln!(s, "{}", totals_row(k, t));
    }
    for (k, t) in &r.by_region {
        let _ = writeln!(s, "{}", totals_row(&format!("region {k}"), t));
    }
    let _ = writeln!(s, "\nOutcomes: {}", fmt_map(r.totals.outcomes.iter()));
    let _ = writeln!(
        s,
        "\nSuccessful requests by upstream: {}",
        fmt_map(r.by_upstream.iter())
    );
    let _ = writeln!(
        s,
        "\nRequests by `x-meridian-attempts`: {}",
        fmt_map(r.attempts.iter())
    );
    let _ = writeln!(
        s,
        "\nClient failovers (own node refused the connection): {}; answered by another region's node: {}; failed while in flight on a SIGKILLed node: {}.",
        r.client_failovers, r.served_elsewhere, r.killed_in_flight
    );
    let _ = writeln!(s, "\n## Faults\n");
    if r.windows.is_empty() {
        let _ = writeln!(s, "None.");
    } else {
        let _ = writeln!(
            s,
            "| from (s) | to (s) | fault | target |\n|---|---|---|---|"
        );
        for w in &r.windows {
            let _ = writeln!(
                s,
                "| {:.1} | {:.1} | {} | {} |",
                w.start_s,
                w.end_s,
                w.label.replace('|', "\\|"),
                w.target
            );
        }
    }
    for skipped in &r.skipped {
        let _ = writeln!(s, "\n- not carried out: {skipped}");
    }
    let _ = writeln!(
        s,
        "\n## Control plane\n\nterm {} -> {} ({} rises, at {:?} s; {} samples). Config writes: {} sent, {} acknowledged, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms. Oldest health report of another member held, per node: {:?} ms.",
        r.raft.first_term,
        r.raft.last_term,
        r.raft.term_changes,
        r.raft.term_change_at_s,
        r.raft.samples,
        r.write_times.sent,
        r.write_times.acked,
        r.write_times.p50_ms,
        r.write_times.p99_ms,
        r.write_times.max_ms,
        r.raft.max_report_age_ms
    );
    if !r.restarts.is_empty() {
        let ready: Vec<f64> = r.restarts.iter().filter_map(|x| x.ready_after_s).collect();
        let _ = writeln!(
            s,
            "\n## Restarts\n\n{} stops ({} of the leader); {} ready again; ready after {:.2} s median, {:.2} s max.\n",
            r.restarts.len(),
            r.restarts.iter().filter(|x| x.was_leader).count(),
            ready.len(),
            median(&ready),
            ready.iter().copied().fold(0.0, f64::max)
        );
        let _ = writeln!(
            s,
            "| at (s) | node | signal | leader | exit | ready after (s) |\n|---|---|---|---|---|---|"
        );
        for x in &r.restarts {
            let _ = writeln!(
                s,
                "| {:.1} | n{} | {:?} | {} | {} | {} |",
                x.at_s,
                x.node,
                x.signal,
                x.was_leader,
                x.exit,
                x.ready_after_s.map_or_else(
                    || format!("never: {}", x.error.clone().unwrap_or_default()),
                    |v| format!("{v:.2}")
                )
            );
        }
    }
    let o = &r.oracle;
    let _ = writeln!(
        s,
        "\n## Config writes\n\n{} writes: {} acknowledged, {} rejected, {} ambiguous (timeout/5xx), {} not sent (node down); {} unacknowledged found applied (allowed).\n",
        o.writes, o.acked, o.rejected, o.ambiguous, o.not_sent, o.applied_unacked
    );
    let _ = writeln!(
        s,
        "Lost acknowledged writes: **{}**; phantom values: {}; duplicates: {}; unreadable nodes: {:?}.",
        o.lost.len(),
        o.phantom.len(),
        o.duplicates.len(),
        o.unreadable
    );
    if let Some(reg) = &o.register {
        let _ = writeln!(
            s,
            "\nRegister (`chaos-reg`): last acknowledged v{}, end values {:?}: {}.",
            reg.last_acked.map_or("-".into(), |v| v.to_string()),
            reg.values,
            reg.problem.clone().unwrap_or_else(|| "ok".into())
        );
    }
    for lost in o.lost.iter().take(20) {
        let _ = writeln!(
            s,
            "\n- lost {} = {} on {:?}",
            lost.key, lost.value, lost.nodes
        );
    }
    for p in o.phantom.iter().chain(o.duplicates.iter()).take(20) {
        let _ = writeln!(s, "\n- {p}");
    }
    if let Some(t) = &r.tenants {
        s.push_str(&super::tenants_md::section(t));
    }
    let _ = writeln!(
        s,
        "\n## Shutdown\n\nExit status at the final SIGTERM: {}",
        r.shutdown
            .iter()
            .map(|(n, e)| format!("n{n}: {e}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for p in r.panics.iter().take(10) {
        let _ = writeln!(s, "\n- panic: `{p}`");
    }
    if !r.failed_sample.is_empty() {
        let _ = writeln!(
            s,
            "\n## First failed requests\n\nFind them in `work/n*/meridian.log` by request id.\n\n| due (s) | id | region | node | kind | outcome | latency (ms) | upstream | attempts | tries |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for f in &r.failed_sample {
            let _ = writeln!(
                s,
                "| {:.3} | {} | n{} | {} | {:?} | {} | {:.1} | {} | {} | {} |",
                f.t_us as f64 / 1e6,
                f.id,
                f.region,
                f.node.map_or("-".into(), |n| format!("n{n}")),
                f.kind,
                f.outcome.name(),
                f.latency_us as f64 / 1e3,
                f.upstream.clone().unwrap_or_else(|| "-".into()),
                f.attempts.map_or("-".into(), |a| a.to_string()),
                f.tries
            );
        }
    }
    s
}

fn fmt_map<K: std::fmt::Display, V: std::fmt::Display>(
    map: impl Iterator<Item = (K, V)>,
) -> String {
    let parts: Vec<String> = map.map(|(k, v)| format!("{k}: {v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
