//! What the demo shows: a compact view redrawn every second (per region:
//! its node, success rate, each provider's share of its traffic and p99 as
//! that node measures it; the leader; the script's step and latest events),
//! and the closing summary.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use proto::api::admin::HealthAnswer;

use super::traffic::Record;
use super::{Events, REGIONS, Shared, UPSTREAMS, lock};
use crate::table::Table;

/// The traffic window the view's shares and success rate cover.
const WINDOW: Duration = Duration::from_secs(2);

/// Redraws (or prints) the view every second until aborted.
pub async fn show(shared: Arc<Shared>, redraw: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut drawn = 0usize;
    let mut printed_events = 0usize;
    loop {
        tick.tick().await;
        let mut out = String::new();
        if redraw {
            let lines = frame(&shared);
            if drawn > 0 {
                // Up to the first line of the last frame, and clear below.
                let _ = write!(out, "\x1b[{drawn}F\x1b[J");
            }
            drawn = lines.len();
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        } else {
            let log = lock(&shared.log);
            for (at, line) in log.lines.iter().skip(printed_events) {
                let _ = writeln!(out, "[{:5.1}s] == {line}", at.as_secs_f64());
            }
            printed_events = log.lines.len();
            drop(log);
            out.push_str(&line(&shared));
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// Per region over the last [`WINDOW`]: answered, succeeded, per-upstream counts.
type Recent = (usize, usize, [usize; UPSTREAMS.len()]);

fn recent(shared: &Shared) -> Vec<Recent> {
    let now = shared.elapsed();
    let mut out = vec![(0, 0, [0; UPSTREAMS.len()]); REGIONS.len()];
    for r in lock(&shared.records).iter().rev() {
        if now.saturating_sub(r.done) > WINDOW {
            break;
        }
        let (n, ok, by) = &mut out[r.region];
        *n += 1;
        if r.ok {
            *ok += 1;
        }
        if let Some(u) = r.upstream {
            by[u] += 1;
        }
    }
    out
}

/// The p99 of each upstream in a node's own window, from its health answer.
fn p99s(health: Option<&HealthAnswer>) -> [Option<f64>; UPSTREAMS.len()] {
    let mut out = [None; UPSTREAMS.len()];
    for u in health.into_iter().flat_map(|h| &h.upstreams) {
        let Some(i) = UPSTREAMS.iter().position(|n| u.id == *n) else {
            continue;
        };
        let q = &u.window.ttfb_ms;
        if q.count > 0 {
            out[i] = Some(q.p99);
        }
    }
    out
}

fn totals(shared: &Shared) -> (usize, usize) {
    let records = lock(&shared.records);
    (records.len(), records.iter().filter(|r| r.ok).count())
}

fn pct(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

fn pct_precise(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.2}%", part as f64 * 100.0 / whole as f64)
    }
}

fn p99_text(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| format!("{p:.0}ms"))
}

fn region_of(id: u64) -> &'static str {
    REGIONS
        .get((id as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("?")
}

fn node_cell(shared: &Shared, i: usize, leader: Option<u64>) -> String {
    let id = i as u64 + 1;
    match (shared.admin(i).is_some(), Some(id) == leader) {
        (false, _) => match shared.target(i) {
            Some((j, _)) => format!("n{id} DOWN -> n{}", j + 1),
            None => format!("n{id} DOWN"),
        },
        (true, true) => format!("n{id} leader"),
        (true, false) => format!("n{id}"),
    }
}

/// The frame for a terminal.
fn frame(shared: &Shared) -> Vec<String> {
    let t = shared.elapsed().as_secs_f64();
    let (sent, ok) = totals(shared);
    let leader = shared.leader();
    let (step, events) = {
        let log = lock(&shared.log);
        let events: Vec<String> = log
            .lines
            .iter()
            .skip(log.lines.len().saturating_sub(4))
            .map(|(at, l)| format!("  {:5.1}s  {l}", at.as_secs_f64()))
            .collect();
        (log.step.clone(), events)
    };
    let mut lines = wrap(&format!("meridian demo  t={t:.0}s  step {step}"), "    ");
    lines.extend([
        format!(
            "leader: {}   requests: {sent} sent, {ok} ok ({})",
            leader.map_or_else(
                || "none (electing)".to_owned(),
                |l| format!("n{l} ({})", region_of(l))
            ),
            pct_precise(ok, sent)
        ),
        String::new(),
    ]);
    let mut headers = vec!["REGION".to_owned(), "NODE".to_owned(), "OK".to_owned()];
    headers.extend(UPSTREAMS.iter().map(|u| (*u).to_owned()));
    let mut table = Table::new(&headers).right_align(&[2, 3, 4, 5]);
    let health: Vec<Option<HealthAnswer>> = lock(&shared.board).health.clone();
    for (i, (n, good, by)) in recent(shared).into_iter().enumerate() {
        let p = p99s(health[i].as_ref());
        let answered: usize = by.iter().sum();
        let mut row = vec![
            REGIONS[i].to_owned(),
            node_cell(shared, i, leader),
            pct(good, n),
        ];
        for u in 0..UPSTREAMS.len() {
            row.push(format!("{:>4} {:>6}", pct(by[u], answered), p99_text(p[u])));
        }
        table.row(row);
    }
    lines.extend(table.render().lines().map(str::to_owned));
    lines.push(String::new());
    lines.push("per provider: its share of the region's answers (last 2 s) and".into());
    lines.push("its p99 time to first byte as the region's node measures it".into());
    lines.push(String::new());
    lines.push("events:".into());
    for event in events {
        lines.extend(wrap(&event, "           "));
    }
    lines
}

/// Width the terminal view keeps to, so that a redraw moves up exactly
/// as many lines as it printed.
const WIDTH: usize = 78;

/// `text` wrapped at [`WIDTH`] on spaces (its leading spaces kept),
/// continuation lines starting with `indent`.
fn wrap(text: &str, indent: &str) -> Vec<String> {
    let body = text.trim_start();
    let mut line = text[..text.len() - body.len()].to_owned();
    let mut fresh = true;
    let mut lines = Vec::new();
    for word in body.split_whitespace() {
        if !fresh && line.chars().count() + 1 + word.chars().count() > WIDTH {
            lines.push(std::mem::replace(&mut line, indent.to_owned()));
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    lines.push(line);
    lines
}

/// The one-line view when stdout is not a terminal.
fn line(shared: &Shared) -> String {
    let t = shared.elapsed().as_secs_f64();
    let leader = shared.leader();
    let health: Vec<Option<HealthAnswer>> = lock(&shared.board).health.clone();
    let mut out = format!(
        "[{t:5.1}s] leader {}",
        leader.map_or_else(|| "none".to_owned(), |l| format!("n{l}"))
    );
    for (i, (n, good, by)) in recent(shared).into_iter().enumerate() {
        let p = p99s(health[i].as_ref());
        let answered: usize = by.iter().sum();
        let _ = write!(
            out,
            " | {} ({}) ok {}:",
            REGIONS[i],
            node_cell(shared, i, leader),
            pct(good, n)
        );
        for u in 0..UPSTREAMS.len() {
            let _ = write!(
                out,
                " {} {} {}",
                UPSTREAMS[u],
                pct(by[u], answered),
                p99_text(p[u])
            );
        }
    }
    out
}

/// The demo's closing figures.
pub struct Summary {
    /// The summary as printed.
    pub text: String,
    /// Requests sent.
    pub sent: usize,
    /// Requests that succeeded.
    pub ok: usize,
    /// Whether Ctrl-C cut it short.
    pub interrupted: bool,
}

/// How long after `from` a region's traffic left upstream `u`: the send
/// time of the first request from which at most 2 of the next 20 went to it.
fn left_after(records: &[&Record], u: usize, from: Duration) -> Option<Duration> {
    let mut after: Vec<&&Record> = records.iter().filter(|r| r.sent >= from).collect();
    // Recorded as they finish: slow answers land late, so order by sending.
    after.sort_by_key(|r| r.sent);
    (0..after.len().saturating_sub(20)).find_map(|i| {
        let hits = after[i..i + 20]
            .iter()
            .filter(|r| r.upstream == Some(u))
            .count();
        (hits <= 2).then(|| after[i].sent.saturating_sub(from))
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn brownout_lines(out: &mut String, records: &[Record], events: &Events) {
    let Some((u, at)) = events.brownout else {
        return;
    };
    let end = events.recovered.unwrap_or(Duration::MAX);
    let per_region: Vec<String> = (0..REGIONS.len())
        .map(|region| {
            let mine: Vec<&Record> = records
                .iter()
                .filter(|r| r.region == region && r.sent < end)
                .collect();
            let before: Vec<&&Record> = mine
                .iter()
                .filter(|r| r.sent < at && r.sent + Duration::from_secs(3) >= at)
                .collect();
            let share = pct(
                before.iter().filter(|r| r.upstream == Some(u)).count(),
                before.len(),
            );
            match left_after(&mine, u, at) {
                Some(d) => format!(
                    "{} {:.1} s (it had {share})",
                    REGIONS[region],
                    d.as_secs_f64()
                ),
                None => format!("{} not within the step (it had {share})", REGIONS[region]),
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "brownout           {} slowed 10x at {:.0} s; traffic left it in {}",
        UPSTREAMS[u],
        at.as_secs_f64(),
        per_region.join(", ")
    );
    let Some(rec) = events.recovered else {
        return;
    };
    // The first second after the recovery in which it took 15% of all answers.
    let back = (0..120).find(|&s| {
        let lo = rec + Duration::from_secs(s);
        let hi = lo + Duration::from_secs(1);
        let bucket: Vec<&Record> = records
            .iter()
            .filter(|r| r.sent >= lo && r.sent < hi && r.ok)
            .collect();
        let mine = bucket.iter().filter(|r| r.upstream == Some(u)).count();
        !bucket.is_empty() && mine * 100 >= bucket.len() * 15
    });
    let _ = writeln!(
        out,
        "recovery           {}",
        match back {
            Some(s) => format!(
                "{} recovered at {:.0} s and had 15% of the traffic again within {} s",
                UPSTREAMS[u],
                rec.as_secs_f64(),
                s + 1
            ),
            None => format!(
                "{} recovered at {:.0} s; it had not won back 15% of the traffic by the end",
                UPSTREAMS[u],
                rec.as_secs_f64()
            ),
        }
    );
}

fn kill_lines(out: &mut String, records: &[Record], events: &Events) {
    let Some((k, was_leader, at)) = events.killed else {
        return;
    };
    let lost = records
        .iter()
        .filter(|r| !r.ok && r.node == k && r.sent <= at && r.done >= at)
        .count();
    let _ = writeln!(
        out,
        "node kill          n{} ({}{}) killed -9 at {:.0} s; {lost} request(s) in flight on it failed; its clients moved to another node",
        k + 1,
        REGIONS[k],
        if was_leader { ", the leader" } else { "" },
        at.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "failover time      {}",
        match events.new_leader {
            Some((id, d)) if was_leader => format!(
                "new leader n{id} {:.1} s after the kill; the other nodes' data plane never stopped",
                d.as_secs_f64()
            ),
            None if was_leader => "no new leader seen".to_owned(),
            _ => "no leader change needed; the other nodes never stopped".to_owned(),
        }
    );
    let _ = writeln!(
        out,
        "restart            {}",
        match (events.ready_after, events.caught_up_after) {
            (Some(r), Some(c)) => format!(
                "n{} served again {:.1} s after its restart and had caught up (lag 0) after {:.1} s",
                k + 1,
                r.as_secs_f64(),
                c.as_secs_f64()
            ),
            (Some(r), None) => format!(
                "n{} served again {:.1} s after its restart (catch-up not seen)",
                k + 1,
                r.as_secs_f64()
            ),
            _ => "not reached".to_owned(),
        }
    );
}

/// Computes the summary from every request's outcome and the script's events.
pub fn summary(records: &[Record], events: &Events, dir: &str) -> Summary {
    let sent = records.len();
    let ok = records.iter().filter(|r| r.ok).count();
    let streamed = records.iter().filter(|r| r.stream).count();
    let span = records
        .iter()
        .map(|r| r.done)
        .max()
        .unwrap_or_default()
        .saturating_sub(records.iter().map(|r| r.sent).min().unwrap_or_default());
    let mut ttfb: Vec<Duration> = records.iter().filter(|r| r.ok).map(|r| r.ttfb).collect();
    ttfb.sort();
    let mut out = String::new();
    let _ = writeln!(out, "== meridian demo: summary ==");
    let _ = writeln!(
        out,
        "requests sent      {sent} ({} plain, {streamed} streamed) over {:.0} s from 3 regions",
        sent - streamed,
        span.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "success ratio      {} ({ok} ok, {} failed)",
        pct_precise(ok, sent),
        sent - ok
    );
    let _ = writeln!(
        out,
        "latency            p50 {}, p99 {}, max {} to first byte, as the clients saw it",
        ms(quantile(&ttfb, 0.5)),
        ms(quantile(&ttfb, 0.99)),
        ms(ttfb.last().copied().unwrap_or_default()),
    );
    brownout_lines(&mut out, records, events);
    kill_lines(&mut out, records, events);
    let mut errors: Vec<(String, usize)> = Vec::new();
    for r in records.iter().filter(|r| !r.ok) {
        let what = format!(
            "{} via n{}: {}",
            REGIONS[r.region],
            r.node + 1,
            r.error.as_deref().unwrap_or("failed")
        );
        match errors.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => errors.push((what, 1)),
        }
    }
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    let _ = writeln!(
        out,
        "errors seen        {}",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors
                .iter()
                .take(5)
                .map(|(w, n)| format!("{n} x {w}"))
                .collect::<Vec<_>>()
                .join("; ")
        }
    );
    let _ = writeln!(
        out,
        "cleanup            every child process stopped; {dir} removed{}",
        if events.interrupted {
            " (interrupted before the script's end)"
        } else {
            ""
        }
    );
    Summary {
        text: out,
        sent,
        ok,
        interrupted: events.interrupted,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn long_lines_wrap_within_the_width() {
        let text = format!("  12.0s  {}", "word ".repeat(40));
        let lines = wrap(&text, "      ");
        assert!(lines.len() > 1);
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{lines:?}"
        );
        assert!(lines[0].starts_with("  12.0s word") && lines[1].starts_with("      word"));
    }
}
