//! `meridian demo --quick` end to end: a 3-region cluster of real processes
//! with fake providers and live traffic through a brownout and the kill of
//! the leader; it must exit 0 with a summary showing a success ratio of at
//! least 99%, and leave no process running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::process::Command;

fn alive(pid: u32) -> bool {
    // A zombie has exited: only a running (or sleeping) process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            state != Some("Z") && state != Some("X")
        })
        .unwrap_or(false)
}

#[test]
fn the_quick_demo_fails_over_and_leaves_nothing_running() {
    let mock = support::mock_bin();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["demo", "--quick", "--mock"])
        .arg(mock)
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );

    // Not a terminal: one line per second, no redraw codes.
    assert!(!stdout.contains("\x1b["), "{stdout}");
    assert!(
        stdout.lines().filter(|l| l.contains("| us-east")).count() >= 20,
        "{stdout}"
    );

    let summary = stdout
        .split("== meridian demo: summary ==")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let line = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line in the summary:\n{summary}"))
    };
    let ratio: f64 = line("success ratio")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(ratio >= 99.0, "{summary}");
    let sent: usize = line("requests sent")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 500, "{summary}");
    assert!(
        line("brownout").contains("traffic left it in us-east"),
        "{summary}"
    );
    assert!(line("node kill").contains("killed -9"), "{summary}");
    assert!(line("failover time").contains(" s"), "{summary}");
    assert!(line("restart").contains("caught up"), "{summary}");
    line("latency");
    line("errors seen");
    let cleanup = line("cleanup");

    // Every child it announced (providers, nodes, the restarted node) is gone.
    let pids: Vec<u32> = stdout
        .match_indices("pid ")
        .filter_map(|(i, _)| {
            stdout[i + 4..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|p| p.parse().ok())
        })
        .collect();
    assert!(
        pids.len() >= 7,
        "3 providers, 3 nodes and a restart: {pids:?}\n{stdout}"
    );
    let running: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(running.is_empty(), "still running: {running:?}");
    // And its directory is gone.
    let dir = cleanup
        .split_whitespace()
        .find(|w| w.contains("meridian-demo-"))
        .unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} is still there");
}

#[test]
fn without_the_fake_provider_it_says_how_to_build_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["demo", "--quick", "--mock", "/nonexistent/meridian-mock"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/meridian-mock")
            && stderr.contains("cargo build --release -p meridian -p meridian-chaos"),
        "{stderr}"
    );
}
