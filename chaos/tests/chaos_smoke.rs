//! End to end: the `smoke` chaos case against real `meridian` and
//! `meridian-mock` processes, and a control case that must fail (every
//! provider answers 500), so a broken cluster cannot pass the suite.
//!
//! Ignored by default: they need the release binaries and take about 25 s
//! and 15 s. Run them with
//!
//! ```text
//! cargo build --release -p meridian -p meridian-chaos -p meridian-mock
//! cargo test --release -p meridian-chaos --test chaos_smoke -- --ignored
//! ```
//!
//! `MERIDIAN_CHAOS_BIN_DIR` overrides where the binaries are looked for
//! (default: `release` beside the test's own target profile directory).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use chaos::case::Case;
use chaos::runner::{Options, run_case};

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MERIDIAN_CHAOS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/release
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap()
        .join("release")
}

fn options(out: &Path) -> Options {
    Options {
        bin_dir: bin_dir(),
        out_dir: out.to_path_buf(),
        seed: 1,
        node_log: "info".into(),
        keep_data: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs release binaries (cargo build --release -p meridian -p meridian-chaos)"]
async fn smoke_case_passes_end_to_end() {
    let case_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/smoke.toml");
    let case = Case::load(&case_file).unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = run_case(&case, &options(out.path())).await.unwrap();
    let dir = out.path().join("smoke");
    for file in [
        "report.json",
        "report.md",
        "chart.svg",
        "requests.jsonl",
        "writes.jsonl",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(
        report.passed(),
        "smoke failed: {:#?}",
        report.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()
    );
    // About rate x duration requests, each recorded.
    assert!(
        report.totals.requests >= 1_900,
        "{}",
        report.totals.requests
    );
    assert_eq!(report.restarts.len(), 1);
    assert!(report.restarts[0].ready_after_s.is_some());
    assert!(report.oracle.acked > 20, "{:?}", report.oracle);
    assert!(report.oracle.lost.is_empty());
    let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("kill -9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs release binaries (cargo build --release -p meridian -p meridian-chaos)"]
async fn a_cluster_whose_providers_all_fail_fails_the_case() {
    let case = Case::parse(
        r#"
description = "control: every provider answers 500 for 5 s"
duration_s = 10
[load]
rate = 30
[writes]
rate = 1
[[faults]]
kind = "upstream"
at_s = 3
until_s = 8
upstream = "a"
behavior = { error_rate = 1.0 }
[[faults]]
kind = "upstream"
at_s = 3
until_s = 8
upstream = "b"
behavior = { error_rate = 1.0 }
"#,
        "control-all-500",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = run_case(&case, &options(out.path())).await.unwrap();
    assert!(!report.passed());
    let ratio = report
        .checks
        .iter()
        .find(|c| c.name == "success ratio")
        .unwrap();
    assert!(!ratio.ok, "{ratio:?}");
    assert!(
        report.totals.outcomes.get("http_502").copied().unwrap_or(0) > 50,
        "{:?}",
        report.totals.outcomes
    );
    // The writes are unaffected: the oracle still passes.
    assert!(report.oracle.ok, "{:?}", report.oracle);
}
