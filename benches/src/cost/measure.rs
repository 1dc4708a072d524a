//! One measured run (start, load, read the counters twice, stop) and the
//! Markdown the runs come out as, with the model beside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use harness::http::Http;
use http::Method;

use crate::Args;
use crate::cluster::{self, Cluster, Scrape, Shape};
use crate::model::Inputs;

/// What one run measured, per second over the measured span.
#[derive(Debug, Clone)]
pub struct Run {
    /// Upstreams.
    pub upstreams: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests sent and answered 200 during the run.
    pub requests: (u64, u64),
    /// The leader's id.
    pub leader: u64,
    /// Frame bytes/s out of and into the leader.
    pub leader_out: f64,
    /// Into the leader.
    pub leader_in: f64,
    /// Mean frame bytes/s into a follower, and the largest.
    pub follower_in: (f64, f64),
    /// Mean frame bytes/s out of a follower, and the largest.
    pub follower_out: (f64, f64),
    /// Raft messages/s from the leader to one follower (mean; its health
    /// reports to that follower left out).
    pub messages: f64,
    /// Bytes/s out of the leader: its own health reports (to every
    /// follower together), the tenant-share entries, the other entries.
    pub entries_out: [f64; 3],
    /// Mean encoded size of a health report as the nodes sent them, and of
    /// a tenant-share entry as the leader shipped them.
    pub entry_size: [f64; 2],
    /// Mean of the nodes' `meridian_health_report_bytes` (the report
    /// alone, as last cut).
    pub report_gauge: f64,
    /// Health reports each node sent each other member per second (mean),
    /// and tenant shares committed per second (entries each follower got).
    pub writes: [f64; 2],
    /// Terms the leader went through during the run (0: no election).
    pub elections: f64,
    /// Health reports the leader took per second from each other member,
    /// and tenant shares each follower forwarded to the leader per second
    /// (the leader's received entries): what was written, where `writes`
    /// also counts shares the leader sent again after a timed-out
    /// AppendEntries.
    pub forwarded: [f64; 2],
}

const ROLE_LEADER: &str = "meridian_raft_role{role=\"leader\"}";

/// Starts a cluster with `upstreams`, loads it, measures, stops it.
pub async fn run(args: &Args, upstreams: usize) -> Result<Run> {
    let dir =
        std::env::temp_dir().join(format!("meridian-cost-{}-{upstreams}", std::process::id()));
    let shape = Shape {
        meridian_bin: args.meridian_bin.clone(),
        mock_bin: args.mock_bin.clone(),
        nodes: args.nodes,
        upstreams,
        keys: args.keys,
        report_interval_ms: args.report_interval_ms,
        heartbeat_ms: args.heartbeat_ms,
    };
    let cluster = cluster::start(&shape, &dir).await?;
    let result = measure(args, upstreams, &cluster).await;
    cluster.stop().await;
    result
}

async fn measure(args: &Args, upstreams: usize, cluster: &Cluster) -> Result<Run> {
    // A fresh connection per scrape: minutes apart, a pooled one is stale.
    let http = Http::with_idle(0);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let load = tokio::spawn(load(
        cluster.nodes.iter().map(|n| n.api).collect(),
        upstreams,
        args.keys,
        args.rps,
        stop.clone(),
        counts.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;
    let before = scrape_all(&http, cluster).await?;
    let sent_before = [0, 1].map(|i| counts[i].load(Ordering::Relaxed));
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration_s)).await;
    let after = scrape_all(&http, cluster).await?;
    let seconds = began.elapsed().as_secs_f64();
    let requests = (
        counts[0].load(Ordering::Relaxed) - sent_before[0],
        counts[1].load(Ordering::Relaxed) - sent_before[1],
    );
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;

    let leaders: Vec<usize> = (0..after.len())
        .filter(|i| after[*i].get(ROLE_LEADER) == 1.0 && before[*i].get(ROLE_LEADER) == 1.0)
        .collect();
    let [leader] = leaders[..] else {
        let said = |s: &[Scrape]| -> Vec<String> {
            s.iter()
                .map(|s| format!("{}@{}", s.get(ROLE_LEADER), s.get("meridian_raft_term")))
                .collect()
        };
        return Err(anyhow!(
            "no single leader through the run (leader flag@term per node: before {:?}, after {:?})",
            said(&before),
            said(&after)
        ));
    };
    let delta: Vec<Scrape> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    let per_s = |v: f64| v / seconds;
    let l = &delta[leader];
    if args.verbose {
        for (i, d) in delta.iter().enumerate() {
            for (series, v) in d.0.iter().filter(|(k, _)| k.starts_with("meridian_raft_")) {
                if *v != 0.0 && !series.contains("index") {
                    eprintln!("n{} {series} +{v}", cluster.nodes[i].id);
                }
            }
        }
    }
    let followers = delta.len() as f64 - 1.0;
    let mut f_in = Vec::new();
    let mut f_out = Vec::new();
    for (i, d) in delta.iter().enumerate() {
        if i != leader {
            f_in.push(per_s(d.sum("meridian_raft_bytes_received_total", &[])));
            f_out.push(per_s(d.sum("meridian_raft_bytes_sent_total", &[])));
        }
    }
    let entries = |d: &Scrape, kind: &str| {
        let labels = ["direction=\"sent\"".to_owned(), format!("kind=\"{kind}\"")];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        (
            d.sum("meridian_raft_entries_total", &labels),
            d.sum("meridian_raft_entry_bytes_total", &labels),
        )
    };
    let received = |kind: &str| {
        let kind = format!("kind=\"{kind}\"");
        per_s(l.sum(
            "meridian_raft_entries_total",
            &["direction=\"received\"", &kind],
        )) / followers
    };
    // Health reports: every node sends its own to each other member.
    let (mut reports_n, mut reports_b) = (0.0, 0.0);
    for d in &delta {
        let (count, bytes) = entries(d, "report");
        reports_n += count;
        reports_b += bytes;
    }
    let nodes = delta.len() as f64;
    let (own_reports_n, own_reports_b) = entries(l, "report");
    let (tenancy_n, tenancy_b) = entries(l, "tenancy");
    let all_b = l.sum("meridian_raft_entry_bytes_total", &["direction=\"sent\""]);
    let gauges: Vec<f64> = after
        .iter()
        .map(|s| s.get("meridian_health_report_bytes"))
        .collect();
    Ok(Run {
        upstreams,
        seconds,
        requests,
        leader: cluster.nodes[leader].id,
        leader_out: per_s(l.sum("meridian_raft_bytes_sent_total", &[])),
        leader_in: per_s(l.sum("meridian_raft_bytes_received_total", &[])),
        follower_in: mean_max(&f_in),
        follower_out: mean_max(&f_out),
        messages: per_s(l.sum("meridian_raft_messages_sent_total", &[]) - own_reports_n)
            / followers,
        entries_out: [
            per_s(own_reports_b),
            per_s(tenancy_b),
            per_s(all_b - own_reports_b - tenancy_b),
        ],
        entry_size: [ratio(reports_b, reports_n), ratio(tenancy_b, tenancy_n)],
        report_gauge: gauges.iter().sum::<f64>() / gauges.len().max(1) as f64,
        writes: [
            per_s(reports_n) / nodes / followers,
            per_s(tenancy_n) / followers,
        ],
        elections: l.get("meridian_raft_term"),
        forwarded: [received("report"), received("tenancy")],
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn mean_max(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean, v.iter().copied().fold(0.0, f64::max))
}

/// Every node's counters, read at once (one after the other would skew
/// the leader's figures against its followers').
async fn scrape_all(http: &Http, cluster: &Cluster) -> Result<Vec<Scrape>> {
    futures_util::future::join_all(cluster.nodes.iter().map(|n| Scrape::read(http, n.admin)))
        .await
        .into_iter()
        .collect()
}

/// Sends `rps` requests per second, round robin over the nodes, the
/// upstreams' models and the keys, until `stop`; counts sent and 200s.
async fn load(
    apis: Vec<std::net::SocketAddr>,
    upstreams: usize,
    keys: usize,
    rps: f64,
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 2]>,
) {
    let http = Http::with_idle(64);
    let every = Duration::from_secs_f64(1.0 / rps.max(0.01));
    let mut next = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let api = apis[i % apis.len()];
        let model = format!("model-{}", i % upstreams.max(1));
        let auth = format!("Bearer {}", cluster::key_secret(i % keys.max(1)));
        i += 1;
        let (http, counts) = (http.clone(), counts.clone());
        counts[0].fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
            let reply = http
                .send(
                    Method::POST,
                    &format!("http://{api}/v1/chat/completions"),
                    &[("authorization", &auth)],
                    Some(body.to_string()),
                    Duration::from_secs(30),
                )
                .await;
            if reply.is_ok_and(|r| r.status == 200) {
                counts[1].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Frame bytes of a health report's request besides the report, plus its
/// answer: what each report costs a link on top of its own bytes.
fn report_overhead() -> f64 {
    let empty = proto::health::HealthReport::default();
    let len = |r: Result<Vec<u8>, _>| r.map_or(0, |f: Vec<u8>| f.len());
    let request = len(proto::codec::encode(&raft::network::RaftRequest::Health(
        empty.clone(),
    )));
    let answer = len(proto::codec::encode(&raft::network::RaftResponse::Health(
        Ok(()),
    )));
    let report = proto::codec::encoded_len(&empty).unwrap_or(0);
    (request.saturating_sub(report) + answer) as f64
}

/// The model's inputs for `run`, with the per-message constants of
/// `calibration` (a run of the same cluster). The intervals are those
/// measured: a report that is still in flight to a member when the next is
/// cut is replaced by it, and a node shares its tenants' usage only while
/// they have some.
fn inputs(args: &Args, run: &Run, calibration: &Calibration) -> Inputs {
    let n = args.nodes as f64;
    Inputs {
        nodes: n,
        report_bytes: run.entry_size[0],
        report_overhead: report_overhead(),
        tenancy_bytes: run.entry_size[1],
        interval_s: ratio(1.0, run.writes[0]),
        tenancy_interval_s: ratio(n, run.writes[1]),
        heartbeat_s: args.heartbeat_ms as f64 / 1000.0,
        calls_per_write: calibration.calls_per_write,
        call_bytes: calibration.call_bytes,
        answer_bytes: calibration.answer_bytes,
    }
}

/// The model's per-message constants, from one run.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    calls_per_write: f64,
    call_bytes: f64,
    answer_bytes: f64,
}

fn calibrate(args: &Args, run: &Run) -> Calibration {
    let n = args.nodes as f64;
    let heartbeats = 1000.0 / args.heartbeat_ms as f64;
    let followers = n - 1.0;
    // What every node sends and takes of health reports, both ways alike.
    let reports = followers * run.writes[0] * (run.entry_size[0] + report_overhead());
    // Entries each follower gets from the leader, and the share it
    // forwards of its own.
    let entries_in = (run.entries_out[1] + run.entries_out[2]) / followers;
    let own = run.entry_size[1] * run.writes[1] / n;
    Calibration {
        calls_per_write: (ratio(run.messages - heartbeats, run.writes[1])).max(0.0),
        call_bytes: ratio(run.follower_in.0 - reports - entries_in, run.messages).max(0.0),
        answer_bytes: ratio(run.follower_out.0 - reports - own, run.messages).max(0.0),
    }
}

/// The runs, the model beside them, and the model's table.
pub fn print(args: &Args, runs: &[Run]) {
    let Some(first) = runs.first() else {
        return;
    };
    let cal = calibrate(args, first);
    println!(
        "{} nodes (one region each), {} client keys, {} req/s over the cluster, report interval {} ms, \
         heartbeat {} ms; frame bytes (QUIC/UDP overhead not included)\n",
        args.nodes, args.keys, args.rps, args.report_interval_ms, args.heartbeat_ms
    );
    println!(
        "| upstreams | s | requests (200) | leader (elections) | report B | report B (gauge) | tenant entry B | reports per member per s / shares per s (taken by the leader per member) | Raft msgs/s per follower | leader out B/s | model | leader in B/s | model | follower in B/s (max) | model | follower out B/s (max) | model | leader out: own reports / tenants / other B/s |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for run in runs {
        let p = inputs(args, run, &cal).predict();
        println!(
            "| {} | {:.0} | {} ({}) | n{} ({}) | {:.0} | {:.0} | {:.0} | {:.2} / {:.1} ({:.2} / {:.2}) | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.0} | {:.0} ({:.0}) | {:.0} | {:.0} / {:.0} / {:.0} |",
            run.upstreams,
            run.seconds,
            run.requests.0,
            run.requests.1,
            run.leader,
            run.elections,
            run.entry_size[0],
            run.report_gauge,
            run.entry_size[1],
            run.writes[0],
            run.writes[1],
            run.forwarded[0],
            run.forwarded[1],
            run.messages,
            run.leader_out,
            p.leader_out,
            run.leader_in,
            p.leader_in,
            run.follower_in.0,
            run.follower_in.1,
            p.follower_in,
            run.follower_out.0,
            run.follower_out.1,
            p.follower_out,
            run.entries_out[0],
            run.entries_out[1],
            run.entries_out[2],
        );
    }
    println!(
        "\ncalibrated on the {}-upstream run: {:.2} Raft messages per tenant share per follower, {:.0} B \
         per Raft message from the leader besides entries, {:.0} B per message to it besides forwarded \
         commands; {:.0} B per health report besides the report (its frame and answer)",
        first.upstreams,
        cal.calls_per_write,
        cal.call_bytes,
        cal.answer_bytes,
        report_overhead()
    );
    // The report size per upstream, from the runs (a line through them).
    let per_upstream = match runs {
        [a, .., b] if b.upstreams != a.upstreams => {
            (b.entry_size[0] - a.entry_size[0]) / (b.upstreams as f64 - a.upstreams as f64)
        }
        _ => first.entry_size[0] / first.upstreams.max(1) as f64,
    };
    let base = first.entry_size[0] - per_upstream * first.upstreams as f64;
    println!("report ≈ {base:.0} B + {per_upstream:.0} B per upstream with samples\n");
    println!(
        "model: MB/s out of the leader (its reports to every member, and the log to every follower) \
         and on one link, every node reporting every interval; tenant shares and per-message constants \
         as calibrated"
    );
    println!(
        "\n| regions | upstreams | leader out, 1 s | leader out, 5 s | reports one way on a link, 1 s |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for regions in [3usize, 5, 7, 10, 15, 20] {
        for ups in [10usize, 50, 100, 200] {
            let at = |interval_s: f64| {
                Inputs {
                    nodes: regions as f64,
                    report_bytes: base + per_upstream * ups as f64,
                    interval_s,
                    tenancy_interval_s: interval_s,
                    ..inputs(args, first, &cal)
                }
                .predict()
            };
            let (one, five) = (at(1.0), at(5.0));
            println!(
                "| {regions} | {ups} | {:.3} | {:.3} | {:.3} |",
                one.leader_out / 1e6,
                five.leader_out / 1e6,
                one.node_out_reports / (regions as f64 - 1.0).max(1.0) / 1e6
            );
        }
    }
}
