//! Runs a chaos case end to end: starts the cluster from the built
//! binaries, runs the load, the config writes and the fault schedule side
//! by side, heals everything, lets the writes settle, asks the oracle,
//! stops the nodes and writes the report.

pub mod cluster;
pub mod http;
pub mod observe;
pub mod schedule;
pub mod tenants;
pub mod traffic;
pub mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::case::Case;
use crate::report::{Inputs, RunReport};
use cluster::{Binaries, LocalCluster};

/// Why a case could not be run (as opposed to a run that failed its SLA,
/// which is a report with a `fail` verdict).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The cluster or a tool could not be set up.
    #[error("setup: {0}")]
    Setup(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A node did not print its ready line in time.
    #[error("node {node} did not get ready; see {log}")]
    NotReady {
        /// The node.
        node: u64,
        /// Its log.
        log: String,
    },
}

impl RunError {
    pub(crate) fn io(what: &str, source: std::io::Error) -> Self {
        Self::Io {
            what: what.to_owned(),
            source,
        }
    }
}

/// How to run cases.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `meridian` and `meridian-mock` are.
    pub bin_dir: PathBuf,
    /// Where each case's directory (report and work files) goes.
    pub out_dir: PathBuf,
    /// Seed of every random choice of the runner.
    pub seed: u64,
    /// `RUST_LOG` of the nodes.
    pub node_log: String,
    /// Keep the nodes' data directories after the run.
    pub keep_data: bool,
}

/// Runs `case` and writes its report into `out_dir/<case name>/`.
pub async fn run_case(case: &Case, options: &Options) -> Result<RunReport, RunError> {
    let began = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = options.out_dir.join(&case.name);
    let work = dir.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| RunError::io("clean work dir", e))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| RunError::io("mkdir", e))?;
    let bins = Binaries::in_dir(&options.bin_dir)?;
    tracing::info!(case = %case.name, dir = %dir.display(), "starting the cluster");
    let cluster =
        Arc::new(LocalCluster::start(case, &work, bins, options.seed, &options.node_log).await?);
    tracing::info!(case = %case.name, "cluster ready; load and faults start");

    let start = Instant::now() + Duration::from_millis(500);
    let load_start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
        + 500;
    let dns = tokio::spawn(traffic::geodns(
        cluster.clone(),
        start
            + case.duration
            + Duration::from_millis(case.load.timeout_ms)
            + Duration::from_secs(5),
    ));
    // The first probe round must land before the first request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = tokio::spawn({
        let (cluster, spec) = (cluster.clone(), case.load.clone());
        let keys = traffic::LoadKey::of(case);
        let (duration, seed) = (case.duration, options.seed);
        async move { traffic::run(cluster, &spec, &keys, duration, start, seed).await }
    });
    let topups = tokio::spawn(tenants::topups(
        cluster.clone(),
        case.tenants.as_ref().and_then(|t| t.topups.clone()),
        case.duration,
        start,
        options.seed,
    ));
    let writer = tokio::spawn({
        let (cluster, spec) = (cluster.clone(), case.writes.clone());
        let (duration, seed) = (case.duration, options.seed);
        async move { writes::run(cluster, &spec, duration, start, seed).await }
    });
    let observer = tokio::spawn(observe::run(cluster.clone(), start, start + case.duration));
    let faults = tokio::spawn(schedule::run(
        cluster.clone(),
        case.faults.clone(),
        start,
        options.seed,
    ));
    let join = |e: tokio::task::JoinError| RunError::Setup(format!("a runner task failed: {e}"));
    let log = faults.await.map_err(join)?;
    let records = load.await.map_err(join)?;
    let write_records = writer.await.map_err(join)?;
    let topup_records = topups.await.map_err(join)?;
    let samples = observer.await.map_err(join)?;
    dns.abort();
    tracing::info!(
        requests = records.len(),
        writes = write_records.len(),
        "load done; healing and settling"
    );

    // Heal: links, providers, and any node left down.
    cluster.heal().await?;
    let mut skipped = log.skipped;
    for node in &cluster.nodes {
        if !node.is_up()
            && let Err(e) = cluster.restart(node.id).await
        {
            skipped.push(format!("restart of n{} after the run: {e}", node.id));
        }
    }
    let observed = writes::settle(
        &cluster,
        &write_records,
        Duration::from_secs_f64(case.writes.settle_s),
    )
    .await;
    let oracle = crate::oracle::check(&write_records, &observed);
    let (ledgers, usage) = match &case.tenants {
        Some(t) => (
            tenants::ledgers(&cluster, t, Duration::from_secs_f64(t.settle_s)).await,
            tenants::usage(&cluster, t).await,
        ),
        None => Default::default(),
    };
    let shutdown = cluster.stop_all().await;
    let panics = scan_panics(&cluster);
    drop(cluster);

    let mut records = records;
    let kills: Vec<(u64, f64)> = log
        .restarts
        .iter()
        .filter(|r| r.signal == crate::case::Signal::Kill)
        .map(|r| (r.node, r.at_s))
        .collect();
    crate::report::stats::mark_killed_in_flight(&mut records, &kills);
    let tenants = case.tenants.as_ref().map(|spec| {
        crate::tenants::report(crate::tenants::Inputs {
            spec,
            records: &records,
            topups: topup_records,
            ledgers,
            usage,
            load_start_unix_ms,
            duration_s: case.duration.as_secs_f64(),
            windows: &log.windows,
        })
    });
    write_records_file(&dir.join("requests.jsonl"), &records)?;
    write_records_file(&dir.join("writes.jsonl"), &write_records)?;
    write_records_file(&dir.join("raft.jsonl"), &samples)?;
    let report = RunReport::build(Inputs {
        case,
        started_unix_s,
        wall_s: began.elapsed().as_secs_f64(),
        records: &records,
        windows: log.windows,
        restarts: log.restarts,
        skipped,
        oracle,
        shutdown,
        panics,
        tenants,
        raft: observe::RaftReport::of(&samples),
        writes: &write_records,
    });
    report
        .write(&dir)
        .map_err(|e| RunError::io("write report", e))?;
    if !options.keep_data {
        for i in 1..=case.cluster.nodes {
            let _ = std::fs::remove_dir_all(work.join(format!("n{i}")).join("data"));
        }
    }
    Ok(report)
}

/// Lines of the node logs that report a panic.
fn scan_panics(cluster: &LocalCluster) -> Vec<String> {
    let mut found = Vec::new();
    for node in &cluster.nodes {
        let Ok(text) = std::fs::read_to_string(&node.log) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("panicked at")) {
            found.push(format!(
                "n{}: {}",
                node.id,
                line.chars().take(300).collect::<String>()
            ));
        }
    }
    found
}

/// One JSON object per line.
fn write_records_file<T: serde::Serialize>(path: &Path, records: &[T]) -> Result<(), RunError> {
    let mut text = String::new();
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| RunError::Setup(e.to_string()))?;
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| RunError::io("write records", e))
}
