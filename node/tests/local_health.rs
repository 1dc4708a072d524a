//! Health that stays local, with real processes: four `meridian` nodes in
//! regions r1–r4, two `meridian-mock` upstreams in one tier (`a` at 20 ms,
//! `b` at 200 ms), and a TCP proxy in front of `a` that delays its answers
//! to one region only (each request names its region in its text, and a
//! node's connections carry only its own requests): a grey failure that
//! the other regions do not see.
//!
//! One run (`cargo test -p meridian --test local_health -- --nocapture`)
//! prints the figures of docs/health-local.md: r1 (50 req/s, streams) sees
//! `a` take 800 ms more (under the first-byte timeout's 1 s floor: slow,
//! not failing) and must move ≥ 95% of its requests off `a` within 1 s;
//! r2, r3 and r4 (50, 2 and 0.5 req/s) keep ≥ 90% of theirs on `a`,
//! though the cluster's figure of `a` (r1's samples in it) turns slow; once
//! the delay ends, r1 has `a`'s share back within 5 s. Shares are asserted
//! with margins over whole phases, never a wall-clock bound under seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::Mock;
use support::cluster::{Cluster, Http, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The text a request carries to name its region to the proxy.
const MARK: &[u8] = b"from-r";

/// A TCP proxy that delays every byte an upstream sends back by the delay
/// set for the region of the connection (learnt from the first request's
/// text), a delay line rather than a pause, so a stream's chunks keep
/// their pace.
struct RegionDelay {
    addr: SocketAddr,
    /// Delay in ms per region digit (`from-r1` → index 1).
    delays: Arc<[AtomicU64; 10]>,
    _task: tokio::task::JoinHandle<()>,
}

impl RegionDelay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delays: Arc<[AtomicU64; 10]> = Arc::new(Default::default());
        let shared = delays.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delays = shared.clone();
                tokio::spawn(async move {
                    if let Ok(upstream) = TcpStream::connect(target).await {
                        relay(client, upstream, delays).await;
                    }
                });
            }
        });
        Self {
            addr,
            delays,
            _task: task,
        }
    }

    fn delay(&self, region: usize, ms: u64) {
        self.delays[region].store(ms, Ordering::SeqCst);
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, delays: Arc<[AtomicU64; 10]>) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let region = Arc::new(AtomicU8::new(0));
    let seen = region.clone();
    let requests = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let bytes = &buf[..n];
            if seen.load(Ordering::SeqCst) == 0
                && let Some(at) = bytes.windows(MARK.len()).position(|w| w == MARK)
                && let Some(d) = bytes.get(at + MARK.len()).filter(|d| d.is_ascii_digit())
            {
                seen.store(d - b'0', Ordering::SeqCst);
            }
            if up_tx.write_all(bytes).await.is_err() {
                return;
            }
        }
    });
    let (line, mut due) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if client_tx.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match up_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ms = delays[usize::from(region.load(Ordering::SeqCst))].load(Ordering::SeqCst);
        let at = tokio::time::Instant::now() + Duration::from_millis(ms);
        if line.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(line);
    let _ = writer.await;
    requests.abort();
}

/// One request of an open-loop run: when it was sent (from the test's
/// reference instant), its status, and which upstream answered.
#[derive(Debug, Clone)]
struct Sent {
    at: Duration,
    status: u16,
    upstream: String,
}

/// `rate` requests a second for `duration` to node `api`, each naming
/// `region`, streamed or not, each at its time whatever the others do.
async fn open_loop(
    api: String,
    region: u8,
    stream: bool,
    rate: f64,
    duration: Duration,
    reference: Instant,
) -> Vec<Sent> {
    let http = Arc::new(Http::new());
    let body = json!({
        "model": "gf",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("hi from-r{region}")}],
    })
    .to_string();
    let url = format!("http://{api}/v1/chat/completions");
    let mut tasks = JoinSet::new();
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut n = 0u32;
    while start.elapsed() < duration {
        tokio::time::sleep_until(start + every * n).await;
        n += 1;
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tasks.spawn(async move {
            let at = reference.elapsed();
            let reply = http
                .send(Method::POST, &url, Some(body), Duration::from_secs(10))
                .await;
            match reply {
                Ok(reply) => Sent {
                    at,
                    status: reply.status.as_u16(),
                    upstream: reply.header("x-meridian-upstream").to_owned(),
                },
                Err(_) => Sent {
                    at,
                    status: 0,
                    upstream: String::new(),
                },
            }
        });
    }
    let mut out = Vec::new();
    while let Some(sent) = tasks.join_next().await {
        out.push(sent.unwrap());
    }
    out.sort_by_key(|s| s.at);
    out
}

/// Share of the requests sent in `[from, to)` that `upstream` answered.
fn share(sent: &[Sent], upstream: &str, from: Duration, to: Duration) -> (f64, usize) {
    let window: Vec<&Sent> = sent.iter().filter(|s| s.at >= from && s.at < to).collect();
    let hits = window.iter().filter(|s| s.upstream == upstream).count();
    (hits as f64 / window.len().max(1) as f64, window.len())
}

/// Shares on `upstream` per 500 ms from `from`, for the test's output.
fn timeline(sent: &[Sent], upstream: &str, from: Duration, to: Duration) -> String {
    let mut out = String::new();
    let mut t = from;
    while t < to {
        let (s, n) = share(sent, upstream, t, t + Duration::from_millis(500));
        out += &format!("{:.0}%/{n} ", s * 100.0);
        t += Duration::from_millis(500);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grey_failure_stays_in_its_region_and_a_local_brownout_comes_and_goes_fast() {
    let cluster = Cluster::start(4, Options::fast()).await;
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"first_byte": {"fixed_ms": 20}, "chunk_delay": {"fixed_ms": 5}}))
        .await;
    b.behave(json!({"first_byte": {"fixed_ms": 200}, "chunk_delay": {"fixed_ms": 5}}))
        .await;
    let proxy = RegionDelay::start(a.api.parse().unwrap()).await;
    for (id, base_url) in [
        ("a", format!("http://{}/v1", proxy.addr)),
        ("b", b.base_url()),
    ] {
        let body = json!({ "base_url": base_url });
        let reply = cluster
            .put(1, &format!("/admin/v1/upstreams/{id}"), &body)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let route = json!({ "tiers": [[
        { "upstream": "a", "model": "a-model" },
        { "upstream": "b", "model": "b-model" },
    ]] });
    cluster.put_route(1, "gf", &route).await;
    for id in 1..=4 {
        cluster.await_route(id, "gf", Duration::from_secs(10)).await;
    }

    // Every region at its own rate for the whole run: 5 s of warm-up,
    // 20 s with an 800 ms delay on a from r1 only, 10 s after it.
    let reference = Instant::now();
    let (warm, fault, healed) = (5, 20, 10);
    let run = Duration::from_secs(warm + fault + healed);
    let regions: [(u64, bool, f64); 4] = [
        (1, true, 50.0),
        (2, false, 50.0),
        (3, false, 2.0),
        (4, false, 0.5),
    ];
    let mut loads = Vec::new();
    for (id, stream, rate) in regions {
        let api = cluster.node(id).api.clone();
        loads.push(tokio::spawn(open_loop(
            api, id as u8, stream, rate, run, reference,
        )));
    }
    let fault_at = Duration::from_secs(warm);
    let heal_at = Duration::from_secs(warm + fault);
    tokio::time::sleep_until((reference + fault_at).into()).await;
    proxy.delay(1, 800);
    // Half-way through, what node 4 (0.5 req/s) is told of a: the
    // cluster's figure, r1's slow samples in it.
    tokio::time::sleep_until((reference + fault_at + Duration::from_secs(12)).into()).await;
    let health = cluster.get(4, "/admin/v1/health").await;
    let cluster_p99 = health.json()["upstreams"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["id"] == "a").cloned())
        .map(|a| a["merged"]["ttfb_ms"]["p99"].clone());
    tokio::time::sleep_until((reference + heal_at).into()).await;
    proxy.delay(1, 0);
    let mut sent = Vec::new();
    for load in loads {
        sent.push(load.await.unwrap());
    }

    for (i, (id, _, rate)) in regions.iter().enumerate() {
        let failed = sent[i].iter().filter(|s| s.status != 200).count();
        assert_eq!(
            failed,
            0,
            "node {id}: {:?}",
            sent[i].iter().find(|s| s.status != 200)
        );
        eprintln!(
            "r{id} ({rate} req/s) on a per 500 ms: {}",
            timeline(&sent[i], "a", Duration::ZERO, run)
        );
    }
    eprintln!("the cluster's p99 of a as node 4 saw it mid-fault: {cluster_p99:?} ms");
    for id in 1..=4 {
        let log = cluster.log(id);
        for line in log.lines().filter(|l| l.contains("first byte changed")) {
            eprintln!("node {id}: {line}");
        }
    }

    // Every figure first, then the checks, so that a failing run still
    // prints all of them.
    // r1: off a within 1 s of the delay, for the rest of it (probes only).
    let (before, _) = share(&sent[0], "a", Duration::from_secs(2), fault_at);
    let (during, n) = share(&sent[0], "a", fault_at + Duration::from_secs(1), heal_at);
    eprintln!(
        "r1 (streams): {:.1}% on a before; {:.1}% of {n} from 1 s after the delay began",
        before * 100.0,
        during * 100.0
    );
    // The other regions keep their traffic on a, fast for them.
    let others: Vec<(u64, f64)> = regions
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, (id, _, rate))| {
            let (on_a, n) = share(&sent[i], "a", fault_at, heal_at);
            eprintln!(
                "r{id} ({rate} req/s): {:.1}% of {n} on a during the delay",
                on_a * 100.0
            );
            (*id, on_a)
        })
        .collect();
    // Recovery: the first half second (within 6 s of the end of the delay,
    // so that at least three seconds follow it) from which every following
    // second has at least 80% of r1's requests on a again.
    let end = run - Duration::from_secs(1);
    let back = (0..12)
        .map(|k| heal_at + Duration::from_millis(500 * k))
        .find(|&t| {
            let mut s = t;
            while s < end {
                if share(&sent[0], "a", s, s + Duration::from_secs(1)).0 < 0.8 {
                    return false;
                }
                s += Duration::from_millis(500);
            }
            true
        });
    eprintln!(
        "r1 back on a (>= 80% every second) {:?} ms after the delay ended",
        back.map(|b| (b - heal_at).as_millis())
    );

    assert!(before >= 0.6, "r1 was not on a before: {before}");
    assert!(during <= 0.05, "r1 kept {:.1}% on a", during * 100.0);
    for (id, on_a) in others {
        assert!(on_a >= 0.9, "r{id} moved: {:.1}% on a", on_a * 100.0);
    }
    let back = back.expect("r1 never came back to a");
    assert!(back - heal_at <= Duration::from_secs(5), "{back:?}");
}
