//! `meridian-classes`: priority classes under overload. One `meridian`
//! node in front of `meridian-mock` processes; upstream `a` has
//! `max_concurrency` slots and the `pro` class reserves a share of them.
//! Three phases, each on a fresh node:
//!
//! 1. `unloaded`: pro traffic alone, at its loaded rate: pro's own p99.
//! 2. `overload`: pro and free together at `--overload` × the upstream's
//!    capacity (slots / mean latency), no fallback tier.
//! 3. `overload+fallback`: the same with a fallback tier (upstream `b`,
//!    another mock with the same latency and no capacity).
//!
//! Per phase and class: requests, success ratio, what was shed (429),
//! p50/p99 of the successful answers, and the share a fallback answered.
//! The figures go to stdout as a Markdown table (docs/classes.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use harness::http::Http;
use harness::mocks::MockProcess;
use harness::process::{NodeCommand, NodeProcess};
use http::Method;
use proto::config::{ClassConfig, Config, KeyConfig};
use tokio::sync::Mutex;

const PRO_KEY: &str = "sk-bench-pro-0123456789abcdef012345";
const FREE_KEY: &str = "sk-bench-free-0123456789abcdef01234";

/// Priority classes under overload, with and without a fallback tier.
#[derive(Debug, Parser)]
#[command(name = "meridian-classes", version, about)]
struct Args {
    /// The meridian-mock binary.
    #[arg(long, default_value = "target/debug/meridian-mock")]
    mock_bin: PathBuf,
    /// The meridian binary.
    #[arg(long, default_value = "target/debug/meridian")]
    meridian_bin: PathBuf,
    /// Seconds of each overloaded phase.
    #[arg(long, default_value_t = 120)]
    duration_s: u64,
    /// Seconds of the unloaded phase.
    #[arg(long, default_value_t = 60)]
    unloaded_s: u64,
    /// Upstream `a`'s `max_concurrency`.
    #[arg(long, default_value_t = 40)]
    capacity: u32,
    /// Pro's reserved share.
    #[arg(long, default_value_t = 0.5)]
    reserved: f64,
    /// Offered load over the upstream's capacity.
    #[arg(long, default_value_t = 2.0)]
    overload: f64,
    /// Pro's share of the offered requests.
    #[arg(long, default_value_t = 0.1)]
    pro_share: f64,
    /// The mock's median time to first byte, ms.
    #[arg(long, default_value_t = 1000.0)]
    p50_ms: f64,
    /// The mock's 99th percentile time to first byte, ms; at or below the
    /// median: a fixed latency of the median.
    #[arg(long, default_value_t = 2000.0)]
    p99_ms: f64,
}

/// One answer as the load generator saw it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    pro: bool,
    status: u16,
    latency: Duration,
    fallback: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // A log-normal's mean is its median × e^(σ²/2) (σ = 0: fixed).
    let sigma = (args.p99_ms / args.p50_ms).ln().max(0.0) / 2.3263;
    let mean_ms = args.p50_ms * (sigma * sigma / 2.0).exp();
    let capacity_rps = f64::from(args.capacity) * 1000.0 / mean_ms;
    let total_rps = capacity_rps * args.overload;
    let pro_rps = total_rps * args.pro_share;
    let free_rps = total_rps - pro_rps;
    println!(
        "upstream a: max_concurrency {}, latency p50 {} ms p99 {} ms (mean {mean_ms:.0} ms): \
         capacity {capacity_rps:.1} req/s; offered {total_rps:.1} req/s \
         (pro {pro_rps:.1}, free {free_rps:.1}); pro reserves {}",
        args.capacity, args.p50_ms, args.p99_ms, args.reserved
    );
    let unloaded = phase(&args, false, pro_rps, 0.0, args.unloaded_s).await?;
    let plain = phase(&args, false, pro_rps, free_rps, args.duration_s).await?;
    let fallback = phase(&args, true, pro_rps, free_rps, args.duration_s).await?;
    let pro_p99 = percentile(&unloaded, true, 0.99);
    println!();
    println!(
        "| phase | class | requests | success | shed (429) | other errors | p50 ms | p99 ms | p99 vs unloaded | answered by fallback |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, samples) in [
        ("unloaded", &unloaded),
        ("overload", &plain),
        ("overload+fallback", &fallback),
    ] {
        for (class, pro) in [("pro", true), ("free", false)] {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.pro == pro).collect();
            if mine.is_empty() {
                continue;
            }
            let n = mine.len() as f64;
            let ok = mine.iter().filter(|s| s.status == 200).count() as f64;
            let shed = mine.iter().filter(|s| s.status == 429).count() as f64;
            let fell = mine
                .iter()
                .filter(|s| s.status == 200 && s.fallback)
                .count() as f64;
            let p99 = percentile(samples, pro, 0.99);
            println!(
                "| {name} | {class} | {} | {:.2} % | {:.2} % | {:.2} % | {:.0} | {:.0} | {:+.1} % | {:.2} % |",
                mine.len(),
                100.0 * ok / n,
                100.0 * shed / n,
                100.0 * (n - ok - shed) / n,
                ms(percentile(samples, pro, 0.5)),
                ms(p99),
                100.0 * (ms(p99) / ms(pro_p99) - 1.0),
                100.0 * fell / n,
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q` quantile of the successful answers of a class.
fn percentile(samples: &[Sample], pro: bool, q: f64) -> Duration {
    let mut l: Vec<Duration> = samples
        .iter()
        .filter(|s| s.pro == pro && s.status == 200)
        .map(|s| s.latency)
        .collect();
    if l.is_empty() {
        return Duration::ZERO;
    }
    l.sort_unstable();
    let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
    l[i]
}

/// Runs one phase on a fresh node and mocks; the answers it got.
async fn phase(
    args: &Args,
    with_fallback: bool,
    pro_rps: f64,
    free_rps: f64,
    seconds: u64,
) -> Result<Vec<Sample>> {
    let dir = tempdir()?;
    let http = Http::with_idle(512);
    let limit = Duration::from_secs(30);
    let a = MockProcess::start(&args.mock_bin, &[], None, false, limit).await?;
    let b = MockProcess::start(&args.mock_bin, &[], None, false, limit).await?;
    for mock in [&a, &b] {
        // A p99 at or below the median: a fixed latency.
        let first_byte = if args.p99_ms > args.p50_ms {
            serde_json::json!({"p50_ms": args.p50_ms, "p99_ms": args.p99_ms})
        } else {
            serde_json::json!({"fixed_ms": args.p50_ms})
        };
        let behavior = serde_json::json!({ "first_byte": first_byte });
        let url = format!("http://{}/_mock/behavior", mock.control);
        let reply = http
            .send(Method::PATCH, &url, &[], Some(behavior.to_string()), limit)
            .await
            .map_err(|e| anyhow!(e))?;
        anyhow::ensure!(reply.status == 200, "mock behaviour: {}", reply.text());
    }

    let mut config: Config = harness::config::node(1, "bench", &dir.join("data"));
    let mut upstream_a = harness::config::upstream("a", &a.base_url());
    upstream_a.max_concurrency = Some(args.capacity);
    config.upstreams = vec![upstream_a];
    let mut tiers = vec![vec![harness::config::target("a", "m1")]];
    if with_fallback {
        config
            .upstreams
            .push(harness::config::upstream("b", &b.base_url()));
        tiers.push(vec![harness::config::target("b", "m1")]);
    }
    let mut route = harness::config::route("m", tiers);
    route.request_timeout_ms = Some(30_000);
    config.routes = vec![route];
    config.proxy.max_in_flight = 4096;
    config.classes = vec![
        ClassConfig {
            name: "pro".into(),
            reserved: args.reserved,
            queue_ms: 0,
            slo: None,
        },
        ClassConfig {
            name: "free".into(),
            reserved: 0.0,
            queue_ms: 0,
            slo: None,
        },
    ];
    config.keys = vec![
        KeyConfig {
            name: "pro".into(),
            key_env: "BENCH_PRO_KEY".into(),
            class: Some("pro".into()),
            ..Default::default()
        },
        KeyConfig {
            name: "free".into(),
            key_env: "BENCH_FREE_KEY".into(),
            ..Default::default()
        },
    ];
    let path = dir.join("meridian.toml");
    harness::config::write(&path, &config)?;
    let mut command = NodeCommand::new(&args.meridian_bin, &path, &dir.join("meridian.log"));
    command.log_level = "warn".into();
    command.env = vec![
        ("BENCH_PRO_KEY".into(), PRO_KEY.into()),
        ("BENCH_FREE_KEY".into(), FREE_KEY.into()),
    ];
    let mut node = NodeProcess::new(command);
    let ready = node.start(limit).await.context("meridian did not start")?;
    let url = Arc::new(format!("http://{}/v1/chat/completions", ready.api));
    let body = Arc::new(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    );

    // Warm up: the node's first requests set up its pools.
    for _ in 0..5 {
        let _ = http
            .send(
                Method::POST,
                &url,
                &[("authorization", &format!("Bearer {PRO_KEY}"))],
                Some(body.to_string()),
                limit,
            )
            .await;
    }

    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let total = pro_rps + free_rps;
    let every = Duration::from_secs_f64(1.0 / total);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut next = start;
    let mut sent = 0u64;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        // Pro and free interleaved in proportion, deterministically.
        let pro = free_rps <= 0.0
            || ((sent as f64 + 1.0) * pro_rps / total).floor()
                > (sent as f64 * pro_rps / total).floor();
        sent += 1;
        let (http, url, body, samples) = (http.clone(), url.clone(), body.clone(), samples.clone());
        tasks.spawn(async move {
            let key = if pro { PRO_KEY } else { FREE_KEY };
            let auth = format!("Bearer {key}");
            let began = Instant::now();
            let reply = http
                .send(
                    Method::POST,
                    &url,
                    &[("authorization", &auth)],
                    Some(body.to_string()),
                    Duration::from_secs(30),
                )
                .await;
            let latency = began.elapsed();
            let (status, fallback) = match &reply {
                Ok(r) => (
                    r.status.as_u16(),
                    r.headers
                        .get("x-meridian-fallback")
                        .is_some_and(|v| v == "true"),
                ),
                Err(_) => (0, false),
            };
            samples.lock().await.push(Sample {
                pro,
                status,
                latency,
                fallback,
            });
        });
        next += every;
    }
    while tasks.join_next().await.is_some() {}
    let _ = node.kill().await;
    a.kill().await;
    b.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let samples = samples.lock().await.clone();
    eprintln!(
        "phase done: {} requests in {:.0} s (fallback tier: {with_fallback})",
        samples.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(samples)
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "meridian-classes-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
