//! `meridian-cost`: what the links between nodes carry, measured. Starts N real
//! nodes on loopback (TLS, one region each, default Raft timing) in front of
//! one `meridian-mock` serving U upstreams, sends a modest load spread over
//! every node, upstream and client key, and reads each node's
//! `meridian_raft_*` counters before and after a fixed time: bytes per
//! second out of and into the leader and each follower, what was carried
//! by kind (health reports, sent by every node to every other; tenant
//! shares and configuration, in the log), and the encoded size of a health
//! report. Then it checks the cost model
//! (`docs/cost-model.md`, [`model`]) against the runs: the model's
//! per-message constants are calibrated on the first run and predict the
//! others from their report size alone; and prints the model's table for
//! 3 to 20 regions and 10 to 200 upstreams. Markdown to stdout.

mod cluster;
mod measure;
mod model;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Raft traffic of a cluster, measured and modelled.
#[derive(Debug, Parser)]
#[command(name = "meridian-cost", version, about)]
pub struct Args {
    /// The meridian binary.
    #[arg(long, default_value = "target/debug/meridian")]
    meridian_bin: PathBuf,
    /// The meridian-mock binary.
    #[arg(long, default_value = "target/debug/meridian-mock")]
    mock_bin: PathBuf,
    /// Nodes, one region each.
    #[arg(long, default_value_t = 7)]
    nodes: usize,
    /// Upstream counts to measure, one run each (the first calibrates).
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    upstreams: Vec<usize>,
    /// Client keys (tenants) the load spreads over.
    #[arg(long, default_value_t = 5)]
    keys: usize,
    /// Requests per second over the whole cluster.
    #[arg(long, default_value_t = 14.0)]
    rps: f64,
    /// Seconds of load before the counters are first read.
    #[arg(long, default_value_t = 35)]
    warmup_s: u64,
    /// Seconds between the two readings.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// `health.report_interval_ms` of every node.
    #[arg(long, default_value_t = 1000)]
    report_interval_ms: u64,
    /// `cluster.heartbeat_ms` of every node.
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    /// Print every node's Raft counters' growth over the run (stderr).
    #[arg(long)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut runs = Vec::new();
    for &upstreams in &args.upstreams {
        eprintln!(
            "run: {} nodes, {upstreams} upstreams, {} keys, {} req/s, {} s warm-up + {} s",
            args.nodes, args.keys, args.rps, args.warmup_s, args.duration_s
        );
        // A leader change mid-run (elections on a starved machine) voids
        // the run: the leader's counters no longer cover the span.
        let mut attempt = 1;
        let run = loop {
            match measure::run(&args, upstreams).await {
                Ok(run) => break run,
                Err(e) if attempt < 3 => {
                    eprintln!("run {attempt} void: {e:#}; again");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        // Kept on stderr as it comes, should a later run fail.
        eprintln!("{run:?}");
        runs.push(run);
    }
    measure::print(&args, &runs);
    Ok(())
}
