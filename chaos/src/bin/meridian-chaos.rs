//! `meridian-chaos`: runs Meridian's chaos cases against a real local
//! cluster built from the release binaries and judges each against its SLA.
//!
//! ```text
//! meridian-chaos run [CASE|DIR]... [--bin-dir target/release] [--out target/chaos]
//! meridian-chaos check [CASE|DIR]...
//! ```
//!
//! Exit status: 0 when every case passed, 1 when one failed its checks
//! (SLA, lost writes, restarts…), 2 when one could not be run at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chaos::case::Case;
use chaos::report::RunReport;
use chaos::runner::{Options, run_case};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Chaos suite for Meridian: real processes, injected faults, an SLA verdict.
#[derive(Debug, Parser)]
#[command(name = "meridian-chaos", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs cases (files, or every *.toml of a directory; default chaos/cases).
    Run {
        /// Case files or directories.
        cases: Vec<PathBuf>,
        /// Directory holding the `meridian` and `meridian-mock` binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Where reports go: one directory per case, and a summary.
        #[arg(long, default_value = "target/chaos")]
        out: PathBuf,
        /// Seed of every random choice (load mix, fault targets, mock draws).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// RUST_LOG of the nodes.
        #[arg(long, default_value = "info")]
        node_log: String,
        /// Keep each node's data directory after the run.
        #[arg(long)]
        keep_data: bool,
    },
    /// Parses and checks cases without running them.
    Check {
        /// Case files or directories.
        cases: Vec<PathBuf>,
    },
}

/// The case files named by `paths` (directories expand to their `*.toml`).
fn case_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("chaos/cases")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

fn load_cases(paths: &[PathBuf]) -> anyhow::Result<Vec<Case>> {
    case_files(paths)?
        .iter()
        .map(|p| Case::load(p).map_err(anyhow::Error::from))
        .collect()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meridian-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Args::parse().command {
        Cmd::Check { cases } => {
            let cases = load_cases(&cases)?;
            for case in &cases {
                println!(
                    "{}: ok ({} s, {} faults, {} nodes, {} req/s)",
                    case.name,
                    case.duration.as_secs_f64(),
                    case.faults.len(),
                    case.cluster.nodes,
                    case.offered_rate()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            cases,
            bin_dir,
            out,
            seed,
            node_log,
            keep_data,
        } => {
            let cases = load_cases(&cases)?;
            let options = Options {
                bin_dir,
                out_dir: out.clone(),
                seed,
                node_log,
                keep_data,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let mut results: Vec<(String, Result<RunReport, String>)> = Vec::new();
            for case in &cases {
                let result = runtime.block_on(run_case(case, &options));
                match &result {
                    Ok(r) => println!(
                        "{}: {} ({} requests, {:.4}% ok, p99 {:.0} ms, {} lost writes) -> {}",
                        r.case,
                        r.verdict.to_uppercase(),
                        r.totals.requests,
                        r.totals.success_ratio * 100.0,
                        r.totals.latency.p99_ms,
                        r.oracle.lost.len(),
                        out.join(&r.case).join("report.md").display()
                    ),
                    Err(e) => println!("{}: ERROR {e}", case.name),
                }
                results.push((case.name.clone(), result.map_err(|e| e.to_string())));
            }
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            if results.len() > 1 {
                write_summary(&out, &results).context("writing the summary")?;
            }
            let code = if results.iter().any(|(_, r)| r.is_err()) {
                ExitCode::from(2)
            } else if results
                .iter()
                .all(|(_, r)| r.as_ref().is_ok_and(RunReport::passed))
            {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
            Ok(code)
        }
    }
}

/// `summary.md` and `summary.json` of a suite run.
fn write_summary(
    out: &Path,
    results: &[(String, Result<RunReport, String>)],
) -> anyhow::Result<()> {
    let mut md = String::from(
        "# Chaos suite\n\n| case | verdict | requests | success | p99 (ms) | lost writes | restarts | failed checks |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    let (mut all, mut ok) = (0u64, 0u64);
    for (name, result) in results {
        match result {
            Ok(r) => {
                all += r.totals.requests;
                ok += r.totals.ok;
                let failed: Vec<&str> = r
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| c.name.as_str())
                    .collect();
                let _ = writeln!(
                    md,
                    "| [{name}]({name}/report.md) | {} | {} | {:.4}% | {:.0} | {} | {} | {} |",
                    r.verdict.to_uppercase(),
                    r.totals.requests,
                    r.totals.success_ratio * 100.0,
                    r.totals.latency.p99_ms,
                    r.oracle.lost.len(),
                    r.restarts.len(),
                    failed.join(", ")
                );
                json.push(serde_json::json!({
                    "case": name, "verdict": r.verdict, "requests": r.totals.requests,
                    "success_ratio": r.totals.success_ratio, "p99_ms": r.totals.latency.p99_ms,
                    "lost_writes": r.oracle.lost.len(), "restarts": r.restarts.len(),
                    "failed_checks": failed,
                }));
            }
            Err(e) => {
                let _ = writeln!(md, "| {name} | ERROR | | | | | | {e} |");
                json.push(serde_json::json!({ "case": name, "verdict": "error", "error": e }));
            }
        }
    }
    let ratio = if all == 0 {
        1.0
    } else {
        ok as f64 / all as f64
    };
    let _ = writeln!(
        md,
        "\nOverall: {ok} of {all} requests ok ({:.4}%).",
        ratio * 100.0
    );
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("summary.md"), md)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "requests": all, "ok": ok, "success_ratio": ratio, "cases": json,
        }))?,
    )?;
    Ok(())
}
