//! `meridian-conns`: what a node keeps under many connections, and whether
//! its clients are still served when some connections stall. It starts a
//! release `meridian` and `meridian-mock` on loopback and measures:
//!
//! - `memory`: rounds of N concurrent streamed chat completions over h2c
//!   (or, with `--http1`, an HTTP/1.1 connection each);
//!   the node's RSS (`VmRSS` of `/proc/PID/status`) before, at the peak of
//!   and after each round, once the streams have closed;
//! - `slow-bodies`: HTTP/1.1 requests whose body never finishes, while
//!   normal requests are sent: how many of those are served, and when the
//!   stalled ones are answered;
//! - `h2-streams`: the same with the streams of one h2c connection;
//! - `idle`: connections that never send a byte, while normal requests and
//!   admin `/healthz` probes are sent.
//!
//! See `benches/README.md` ("Connections and memory").

mod flood;
mod node;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};

use crate::node::{Setup, Started};

/// Connection floods and memory after load, against a real node.
#[derive(Debug, Parser)]
#[command(name = "meridian-conns", version, about)]
struct Args {
    /// The meridian binary.
    #[arg(long, default_value = "target/release/meridian")]
    meridian_bin: PathBuf,
    /// The meridian-mock binary.
    #[arg(long, default_value = "target/release/meridian-mock")]
    mock_bin: PathBuf,
    /// What to measure, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,slow-bodies,h2-streams,idle"
    )]
    phases: Vec<Phase>,
    /// Concurrent streams per memory round.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// h2c connections the streams of a round are spread over.
    #[arg(long, default_value_t = 100)]
    h2_connections: usize,
    /// Open each stream of a memory round on an HTTP/1.1 connection of its
    /// own instead of over h2c (the node then holds twice as many
    /// descriptors as streams: raise `--node-nofile`).
    #[arg(long)]
    http1: bool,
    /// Memory rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds to wait after a round before reading RSS (jemalloc hands
    /// freed pages back after about 10 s).
    #[arg(long, default_value_t = 15.0)]
    settle: f64,
    /// HTTP/1.1 bodies that never finish (`slow-bodies`).
    #[arg(long, default_value_t = 200)]
    slow_bodies: usize,
    /// Stalled streams on one h2c connection (`h2-streams`).
    #[arg(long, default_value_t = 1_000)]
    h2_stalled: usize,
    /// Connections that never send a byte (`idle`).
    #[arg(long, default_value_t = 20_000)]
    idle: usize,
    /// Normal requests sent during each flood (and as many `/healthz`
    /// probes during `idle`).
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Seconds each flood lasts (the probes are spread over it).
    #[arg(long, default_value_t = 20.0)]
    flood_secs: f64,
    /// `proxy.max_in_flight` during the floods (small, so that slots held by
    /// stalled bodies show).
    #[arg(long, default_value_t = 200)]
    flood_max_in_flight: usize,
    /// `connections.body_timeout_ms` and `header_read_timeout_ms` of the node.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// The node's descriptor limit (`ulimit -n`), the same for every binary.
    #[arg(long, default_value_t = 20_000)]
    node_nofile: u64,
    /// Leave `[connections]` out of the node's config (a binary from before
    /// it existed).
    #[arg(long)]
    legacy: bool,
    /// Put TLS between the node and the mock (a private CA, trusted
    /// through the upstream's `ca_file`; the mock offers h2 and http/1.1).
    #[arg(long)]
    tls: bool,
    /// Set the upstream's `http2` (with `--tls`: HTTP/2 by ALPN through the
    /// pooled client rather than HTTP/1.1 on owned connections).
    #[arg(long)]
    upstream_http2: bool,
    /// The node's data-plane threads (`proxy.workers`; 0: one per CPU).
    /// Each worker keeps its own upstream connections and allocator cache,
    /// so memory under many streams depends on it.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// The node's `connections.max_connections` (its default, 8,192, when
    /// not given): 10,000 `--http1` streams need it raised.
    #[arg(long)]
    max_connections: Option<usize>,
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// RSS across rounds of concurrent streams.
    Memory,
    /// HTTP/1.1 bodies that never finish.
    SlowBodies,
    /// Stalled streams on one h2c connection.
    H2Streams,
    /// Connections that never send a byte.
    Idle,
}

/// Descriptors this tool wants for its own side of the floods.
const OWN_NOFILE: u64 = 65_536;

fn main() -> Result<()> {
    let args = Args::parse();
    node::raise_nofile(OWN_NOFILE)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            result = run(&args) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })
}

async fn run(args: &Args) -> Result<()> {
    let setup = Setup {
        meridian_bin: args.meridian_bin.clone(),
        mock_bin: args.mock_bin.clone(),
        node_nofile: args.node_nofile,
        legacy: args.legacy,
        timeout_ms: args.timeout_ms,
        tls: args.tls,
        upstream_http2: args.upstream_http2,
        workers: args.workers,
        max_connections: args.max_connections,
    };
    println!(
        "# meridian-conns: {} (timeouts {} ms, workers {}{}{}{})\n",
        args.meridian_bin.display(),
        args.timeout_ms,
        match args.workers {
            0 => "one per CPU".to_owned(),
            n => n.to_string(),
        },
        if args.legacy { ", legacy config" } else { "" },
        if args.tls {
            ", TLS to the upstream"
        } else {
            ""
        },
        if args.upstream_http2 {
            ", upstream http2"
        } else {
            ""
        },
    );
    for phase in &args.phases {
        match phase {
            Phase::Memory => memory(args, &setup).await?,
            Phase::SlowBodies => {
                let started = setup.start(args.flood_max_in_flight).await?;
                let report = flood::slow_bodies(&started, args.slow_bodies, flood(args)).await?;
                println!("{report}");
            }
            Phase::H2Streams => {
                let started = setup.start(args.flood_max_in_flight).await?;
                let report = flood::h2_streams(&started, args.h2_stalled, flood(args)).await?;
                println!("{report}");
            }
            Phase::Idle => {
                let started = setup.start(args.flood_max_in_flight).await?;
                let report = flood::idle(&started, args.idle, flood(args)).await?;
                println!("{report}");
            }
        }
    }
    Ok(())
}

fn flood(args: &Args) -> flood::Settings {
    flood::Settings {
        probes: args.probes,
        duration: Duration::from_secs_f64(args.flood_secs),
        timeout: Duration::from_millis(args.timeout_ms),
    }
}

async fn memory(args: &Args, setup: &Setup) -> Result<()> {
    let started: Started = setup.start(args.streams * 2).await?;
    let settle = Duration::from_secs_f64(args.settle);
    // Warm up: a few requests, so what the first round allocates is load.
    let clients = if args.http1 {
        flood::Clients::Http1
    } else {
        flood::Clients::H2c(args.h2_connections)
    };
    flood::round(&started, 10, clients).await?;
    tokio::time::sleep(settle).await;
    let idle = started.rss_kib()?;
    match clients {
        flood::Clients::H2c(n) => println!(
            "## memory: {} streams per round over {n} h2c connections\n",
            args.streams
        ),
        flood::Clients::Http1 => println!(
            "## memory: {} streams per round, each on an HTTP/1.1 connection of its own\n",
            args.streams
        ),
    }
    // Each stream lasts about 2 s; a round that takes much longer had its
    // streams queued somewhere (an HTTP/2 connection's stream limit).
    println!(
        "| round | streams ok | failed | seconds | peak RSS MiB | RSS after MiB | vs round 1 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("| before | | | | | {:.1} | |", mib(idle));
    let mut first = None;
    for round in 1..=args.rounds {
        let sampler = started.sample_peak();
        let began = std::time::Instant::now();
        let outcome = flood::round(&started, args.streams, clients).await?;
        let took = began.elapsed().as_secs_f64();
        let peak = sampler.stop().await;
        tokio::time::sleep(settle).await;
        let after = started.rss_kib()?;
        let base = *first.get_or_insert(after);
        println!(
            "| {round} | {} | {} | {took:.1} | {:.1} | {:.1} | {:+.1} % |",
            outcome.ok,
            outcome.failed,
            mib(peak.max(after)),
            mib(after),
            (after as f64 / base as f64 - 1.0) * 100.0
        );
    }
    println!();
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
