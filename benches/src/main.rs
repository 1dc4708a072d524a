//! `meridian-bench`: the end-to-end proxy benchmark. It starts meridian-mock,
//! nginx and meridian from built binaries, then measures in one run, side by
//! side, calling the mock directly, through nginx `proxy_pass` and through
//! meridian: saturation throughput, latency at a fixed rate (half and, with
//! `--high-load`, 80 % of nginx's saturation), and streaming time to first
//! chunk, with each side on its own cores when the machine has enough. See
//! `benches/README.md`.

mod bench;
mod configs;
mod cores;
mod cpu;
mod procs;
mod report;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use load::{DEFAULT_BATCH_WINDOW, DEFAULT_MAX_IN_FLIGHT, Generator};

use crate::bench::{Bench, Target};
use crate::cores::Cores;
use crate::procs::{Processes, Workdir};
use crate::report::{Machine, Settings, TargetKind};

/// Chunks per streamed answer.
const STREAM_CHUNKS: u32 = 8;

/// Proxy overhead of meridian against a direct call and against nginx.
#[derive(Debug, Parser)]
#[command(name = "meridian-bench", version, about)]
struct Args {
    /// The meridian-mock binary.
    #[arg(long, default_value = "target/release/meridian-mock")]
    mock_bin: PathBuf,
    /// The meridian binary.
    #[arg(long, default_value = "target/release/meridian")]
    meridian_bin: PathBuf,
    /// An earlier meridian build to measure side by side with
    /// `--meridian-bin` (target `baseline`), for a change's before and after.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// The nginx binary (a bare name is looked up on PATH and in /usr/sbin).
    #[arg(long, default_value = "nginx")]
    nginx_bin: PathBuf,
    /// Do not measure meridian.
    #[arg(long)]
    skip_meridian: bool,
    /// Also measure the same meridian through Anthropic's Messages API
    /// (target `meridian-messages`), translated to the mock's OpenAI chat.
    #[arg(long)]
    messages: bool,
    /// Do not measure nginx.
    #[arg(long)]
    skip_nginx: bool,
    /// Meridian's data-plane threads (`proxy.workers`; 0: one per CPU, like
    /// nginx's `worker_processes auto`).
    #[arg(long, default_value_t = 0)]
    meridian_workers: usize,
    /// Rounds of each phase; results are medians across rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    duration: f64,
    /// Seconds of closed-loop warm-up per target before the first round.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    warmup: f64,
    /// Connections of the saturation phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rate of the latency phase, req/s [default: half nginx's saturation throughput].
    #[arg(long, value_name = "RPS")]
    rate: Option<f64>,
    /// Rate of the streaming phase, req/s [default: a fifth of the latency phase's rate].
    #[arg(long, value_name = "RPS")]
    stream_rate: Option<f64>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    timeout: f64,
    /// Open-loop in-flight cap; requests over it are counted as dropped.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Threads of the load generator (it shares the CPUs with what it measures).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/e2e.json")]
    out: PathBuf,
    /// Also measure latency at 80 % of nginx's saturation (phase 2b).
    #[arg(long)]
    high_load: bool,
    /// Cores of the upstream, the proxy and the load generator:
    /// `UPSTREAM:PROXY:LOAD` CPU lists (e.g. `0-3:4-7:8-15`), `none`, or
    /// `auto` (that split on 16 CPUs or more, none below). Pinned, nginx
    /// and meridian get one worker per proxy CPU unless
    /// `--meridian-workers` says otherwise.
    #[arg(long, default_value = "auto", value_name = "LISTS")]
    cores: String,
    /// Smoke run: 1 round, 2 s measurements, 0.5 s warm-up.
    #[arg(long)]
    quick: bool,
}

impl Args {
    fn settings(&self, cores: Option<&Cores>) -> Settings {
        let (rounds, duration_secs, warmup_secs) = if self.quick {
            (1, 2.0, 0.5)
        } else {
            (self.rounds, self.duration, self.warmup)
        };
        Settings {
            rounds,
            duration_secs,
            warmup_secs,
            concurrency: self.concurrency,
            rate: self.rate,
            stream_rate: self.stream_rate,
            timeout_secs: self.timeout,
            max_in_flight: self.max_in_flight,
            client_threads: self.client_threads,
            batch_window_us: u64::try_from(DEFAULT_BATCH_WINDOW.as_micros()).unwrap_or(u64::MAX),
            stream_chunks: STREAM_CHUNKS,
            high_load: self.high_load,
            cores: cores.map(Cores::describe),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    let cores = Cores::parse(&args.cores, nproc)?;
    // Before the runtime starts its threads: they inherit it.
    if let Some(cores) = &cores {
        cores::pin_self(&cores.load)?;
    }
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()?
    };
    // On Ctrl-C the run is dropped, and with it every process it started.
    runtime.block_on(async {
        tokio::select! {
            result = run(&args, cores.as_ref(), nproc) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    })
}

/// `nproc` is the machine's, counted before this process was pinned.
async fn run(args: &Args, cores: Option<&Cores>, nproc: usize) -> Result<()> {
    let settings = args.settings(cores);
    let upstream_cpus = cores.map(|c| c.upstream.as_str());
    let proxy_cpus = cores.map(|c| c.proxy.as_str());
    let meridian_workers = match (args.meridian_workers, cores) {
        (0, Some(cores)) => cores.proxy_count(),
        (workers, _) => workers,
    };
    if settings.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    // Declared before the processes, so it is removed after they are killed.
    let workdir = Workdir::create()?;
    let dir = workdir.path();
    // Keep every connection the load may need: a pool that closes surplus
    // connections makes a target that hiccups once reconnect on every request
    // after it (each target pays it alike, but it turns a blip into a
    // collapse, which no real client pool would).
    let generator = Generator::new(settings.concurrency.max(settings.max_in_flight));
    let mut processes = Processes::default();

    let (mock, mock_addrs) = procs::start_mock(&args.mock_bin, dir, upstream_cpus).await?;
    processes.push(mock);
    procs::configure_mock(&generator, mock_addrs.control, STREAM_CHUNKS).await?;
    let mut targets = vec![Target::new(TargetKind::Direct, mock_addrs.api, None)?];

    let mut nginx_version = None;
    if !args.skip_nginx {
        let build_info = procs::nginx_build_info(&args.nginx_bin)?;
        nginx_version = build_info.lines().next().map(str::to_owned);
        let (nginx, addr) = procs::start_nginx(
            &args.nginx_bin,
            dir,
            mock_addrs.api,
            &build_info,
            proxy_cpus,
            cores.map(Cores::proxy_count),
        )
        .await?;
        targets.push(Target::new(TargetKind::Nginx, addr, nginx.group())?);
        processes.push(nginx);
    }
    if !args.skip_meridian {
        let (meridian, addr) = procs::start_meridian(
            &args.meridian_bin,
            dir,
            mock_addrs.api,
            meridian_workers,
            proxy_cpus,
            &generator,
        )
        .await?;
        targets.push(Target::new(TargetKind::Meridian, addr, meridian.group())?);
        if args.messages {
            targets.push(Target::new(TargetKind::Messages, addr, meridian.group())?);
        }
        processes.push(meridian);
    }
    if let Some(baseline_bin) = &args.baseline_bin {
        // Its own directory: its config, log and Raft store stay apart.
        let baseline_dir = dir.join("baseline");
        std::fs::create_dir_all(&baseline_dir)
            .with_context(|| format!("creating {}", baseline_dir.display()))?;
        let (baseline, addr) = procs::start_meridian(
            baseline_bin,
            &baseline_dir,
            mock_addrs.api,
            meridian_workers,
            proxy_cpus,
            &generator,
        )
        .await?;
        targets.push(Target::new(TargetKind::Baseline, addr, baseline.group())?);
        processes.push(baseline);
    }

    let machine = Machine {
        nproc,
        nginx_version,
    };
    let bench = Bench {
        generator: &generator,
        settings: &settings,
        targets: &targets,
        processes: &mut processes,
        cpu: cpu::CpuClock::new(),
    };
    let results = bench.run(machine).await?;
    println!("{}", report::markdown(&results));
    write_json(&args.out, &results)?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

fn write_json(path: &Path, results: &report::Results) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}
