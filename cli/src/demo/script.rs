//! The demo's script: set up the cluster, start the clients, then a steady
//! state, a brownout and its recovery, `kill -9` of the leader and its
//! return, each step timed from the plan; Ctrl-C or SIGTERM ends it early.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::procs::{self, MockProc, NodeProc};
use super::traffic::{self, Http};
use super::{DemoError, DemoOptions, REGIONS, Shared, UPSTREAMS, lock, view};

/// How the script ended.
pub enum End {
    /// It played to the end.
    Done,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// Every child process of the demo, and its background tasks.
#[derive(Default)]
pub struct Procs {
    mocks: Vec<MockProc>,
    nodes: Vec<NodeProc>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Procs {
    /// Stops the clients and every child, and reaps them.
    pub async fn stop_all(&mut self, shared: &Shared) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        // Let the requests in flight finish (they time out on their own).
        let deadline = Instant::now() + Duration::from_secs(16);
        while traffic::pending(&shared.in_flight) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for node in &mut self.nodes {
            node.kill().await;
        }
        for mock in self.mocks.drain(..) {
            procs::stop_mock(mock).await;
        }
    }
}

/// Median first byte of each fake provider, in ms: a little different
/// each, as real providers are.
const BASE_P50_MS: [u64; 3] = [20, 24, 28];

/// The base behaviour of fake provider `i`, with a tail (p99 = 3 × p50).
fn base_behavior(i: usize) -> Value {
    let p50 = BASE_P50_MS[i % 3];
    json!({
        "first_byte": {"p50_ms": p50, "p99_ms": p50 * 3},
        "chunk_delay": {"fixed_ms": 2},
        "chunks": 6,
    })
}

/// The brownout: first byte ten times slower.
fn brownout_behavior(i: usize) -> Value {
    let p50 = BASE_P50_MS[i % 3] * 10;
    json!({"first_byte": {"p50_ms": p50, "p99_ms": p50 * 3}})
}

/// Node `node`'s configuration: the cluster, fast Raft timing, one
/// upstream per fake provider and the route `fast` over all of them.
fn config(
    node: &NodeProc,
    members: &[String],
    certs: &Path,
    data: &Path,
    mocks: &[MockProc],
) -> proto::config::Config {
    use harness::config as build;
    let mut config = build::node(node.id, node.region, data);
    config.listen.raft = std::net::SocketAddr::from(([127, 0, 0, 1], node.raft_port));
    config.cluster.members = members.to_vec();
    config.cluster.heartbeat_ms = 100;
    config.cluster.election_timeout_ms = 1000;
    config.tls = Some(harness::certs::tls_config(certs, &format!("n{}", node.id)));
    config.proxy.workers = 1;
    // A short window, so that a short demo shows a recovery too.
    config.health.window_slots = 5;
    config.health.slot_ms = 1000;
    config.health.min_samples = 5;
    config.health.explore = 0.06;
    config.upstreams = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut upstream = build::upstream(m.name, &format!("http://{}/v1", m.api));
            upstream.region = REGIONS[i % REGIONS.len()].to_owned();
            upstream
        })
        .collect();
    let targets = mocks
        .iter()
        .map(|m| {
            let mut target = build::target(m.name, &format!("{}-chat", m.name));
            target.input_per_mtok = 0.2;
            target.output_per_mtok = 0.8;
            target
        })
        .collect();
    config.routes = vec![build::route("fast", vec![targets])];
    config
}

/// Sets everything up, plays the script, and returns how it ended; the
/// caller stops `procs` whatever this returns.
pub async fn run(
    options: &DemoOptions,
    exe: &Path,
    mock: &Path,
    dir: &Path,
    shared: &Arc<Shared>,
    procs: &mut Procs,
) -> Result<End, DemoError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DemoError::Start(format!("cannot listen for SIGTERM: {e}")))?;
    let interrupted = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::select! {
        r = play(options, exe, mock, dir, shared, procs) => r.map(|()| End::Done),
        () = interrupted => {
            crate::out::println("\ninterrupted: stopping every process of the demo");
            Ok(End::Interrupted)
        }
    }
}

async fn start_cluster(
    exe: &Path,
    mock: &Path,
    dir: &Path,
    shared: &Shared,
    procs: &mut Procs,
) -> Result<(), DemoError> {
    for (i, name) in UPSTREAMS.iter().enumerate() {
        let log = dir.join(format!("{name}.log"));
        let m = procs::spawn_mock(mock, name, 7 + i as u64, &base_behavior(i), &log).await?;
        procs.mocks.push(m);
    }
    crate::out::println(&format!(
        "started fake providers: {}",
        procs
            .mocks
            .iter()
            .map(|m| format!("{} (pid {})", m.name, m.pid()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let certs = dir.join("certs");
    let names: Vec<String> = (1..=REGIONS.len()).map(|i| format!("n{i}")).collect();
    harness::certs::write(&certs, &names)
        .map_err(|e| DemoError::Start(format!("cannot make the cluster's certificates: {e}")))?;
    for (i, region) in REGIONS.iter().enumerate() {
        let port = procs::free_udp_port()?;
        procs
            .nodes
            .push(NodeProc::new(i as u64 + 1, region, port, dir));
    }
    let members: Vec<String> = procs
        .nodes
        .iter()
        .map(|n| {
            let raft = std::net::SocketAddr::from(([127, 0, 0, 1], n.raft_port));
            harness::config::member(n.id, raft)
        })
        .collect();
    for node in &procs.nodes {
        let data = dir.join(format!("n{}", node.id));
        let built = config(node, &members, &certs, &data, &procs.mocks);
        harness::config::write(&node.config, &built).map_err(|e| {
            DemoError::Start(format!("cannot write {}: {e}", node.config.display()))
        })?;
    }
    let mut started = Vec::new();
    for node in &mut procs.nodes {
        let pid = node.spawn(exe)?;
        started.push(format!("n{} {} (pid {pid})", node.id, node.region));
    }
    crate::out::println(&format!(
        "started nodes: {}; waiting for a leader",
        started.join(", ")
    ));
    for (i, node) in procs.nodes.iter_mut().enumerate() {
        node.await_ready(Duration::from_secs(40)).await?;
        let admin = node.admin.clone().unwrap_or_default();
        if !ready(&admin, Duration::from_secs(15)).await {
            return Err(DemoError::Start(format!(
                "node n{} never answered /readyz 200; the end of its log:\n{}",
                node.id,
                procs::tail(&node.log, 15)
            )));
        }
        shared.set_node(i, node.api.clone(), node.admin.clone());
    }
    Ok(())
}

async fn play(
    options: &DemoOptions,
    exe: &Path,
    mock: &Path,
    dir: &Path,
    shared: &Arc<Shared>,
    procs: &mut Procs,
) -> Result<(), DemoError> {
    let http = traffic::client();
    crate::out::println(&format!(
        "meridian demo: 3 regions ({}), 3 fake providers ({}), {} req/s per region; files in {}",
        REGIONS.join(", "),
        UPSTREAMS.join(", "),
        options.rate,
        dir.display()
    ));
    start_cluster(exe, mock, dir, shared, procs).await?;
    crate::out::println("the cluster is ready; starting the clients\n");
    for region in 0..REGIONS.len() {
        procs.tasks.push(tokio::spawn(traffic::generate(
            shared.clone(),
            http.clone(),
            region,
            options.rate,
        )));
    }
    procs
        .tasks
        .push(tokio::spawn(poll(shared.clone(), http.clone())));
    procs
        .tasks
        .push(tokio::spawn(view::show(shared.clone(), options.redraw)));

    let total = options.duration_s.max(20) as f64;
    // The six steps' shares: steady, brownout, recovery, kill, return, steady.
    let weights = [10.0, 14.0, 14.0, 12.0, 12.0, 8.0];
    let sum: f64 = weights.iter().sum();
    let d: Vec<Duration> = weights
        .iter()
        .map(|w| Duration::from_secs_f64(w * total / sum))
        .collect();

    shared.step(
        "1/6 steady state: each region spreads its traffic over the fastest providers".into(),
    );
    tokio::time::sleep(d[0]).await;

    let victim = busiest(shared, Duration::from_secs(3));
    let name = UPSTREAMS[victim];
    patch(
        &http,
        &procs.mocks[victim].control,
        &brownout_behavior(victim),
    )
    .await?;
    let at = shared.elapsed();
    shared.event(|e| e.brownout = Some((victim, at)));
    shared.step(format!(
        "2/6 brownout: {name} (the busiest) answers 10x slower; every region moves off it"
    ));
    tokio::time::sleep(d[1]).await;

    patch(&http, &procs.mocks[victim].control, &base_behavior(victim)).await?;
    let at = shared.elapsed();
    shared.event(|e| e.recovered = Some(at));
    shared.step(format!(
        "3/6 {name} recovers: it wins traffic back once its slow samples age out (5 s window)"
    ));
    tokio::time::sleep(d[2]).await;

    kill_and_return(exe, shared, procs, d[3], d[4]).await?;

    shared.step("6/6 steady state again".into());
    tokio::time::sleep(d[5]).await;
    shared.say("script done: stopping the clients".into());
    shared.stopping.store(true, Ordering::Relaxed);
    // One last frame with the final figures.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Ok(())
}

/// Steps 4 and 5: `kill -9` the leader, watch a new one get elected, start
/// it again and watch it catch up.
async fn kill_and_return(
    exe: &Path,
    shared: &Arc<Shared>,
    procs: &mut Procs,
    kill_for: Duration,
    return_for: Duration,
) -> Result<(), DemoError> {
    let leader = shared.leader();
    let k = procs
        .nodes
        .iter()
        .position(|n| Some(n.id) == leader)
        .unwrap_or(0);
    let killed_id = procs.nodes[k].id;
    let pid = procs.nodes[k].pid().unwrap_or(0);
    let was_leader = leader == Some(killed_id);
    shared.set_node(k, None, None);
    let killed_at = Instant::now();
    let at = shared.elapsed();
    procs.nodes[k].kill().await;
    shared.event(|e| e.killed = Some((k, was_leader, at)));
    let to = shared
        .target(k)
        .map_or_else(|| "nowhere".to_owned(), |(i, _)| format!("n{}", i + 1));
    shared.step(format!(
        "4/6 kill -9 n{killed_id} ({}{}, pid {pid}): the others keep serving{}; its clients go to {to}",
        REGIONS[k],
        if was_leader { ", the leader" } else { "" },
        if was_leader {
            " and elect a new leader"
        } else {
            ""
        },
    ));
    let step_end = Instant::now() + kill_for;
    while Instant::now() < step_end {
        if shared.events().new_leader.is_none()
            && let Some(new) = leader_seen(shared, killed_id).await
        {
            let after = killed_at.elapsed();
            shared.event(|e| e.new_leader = Some((new, after)));
            shared.say(format!(
                "n{new} is the new leader, {:.1} s after the kill",
                after.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let step_end = Instant::now() + return_for;
    let restart = Instant::now();
    let pid = procs.nodes[k].spawn(exe)?;
    let at = shared.elapsed();
    shared.event(|e| e.restarted = Some(at));
    shared.step(format!(
        "5/6 n{killed_id} restarts on its data directory (pid {pid}) and catches up from the leader"
    ));
    procs.nodes[k].await_ready(Duration::from_secs(40)).await?;
    let admin = procs.nodes[k].admin.clone().unwrap_or_default();
    ready(&admin, Duration::from_secs(15)).await;
    let ready_after = restart.elapsed();
    shared.set_node(k, procs.nodes[k].api.clone(), procs.nodes[k].admin.clone());
    shared.event(|e| e.ready_after = Some(ready_after));
    shared.say(format!(
        "n{killed_id} serves again, {:.1} s after its restart; the {} clients are back on it",
        ready_after.as_secs_f64(),
        REGIONS[k]
    ));
    let give_up = step_end + Duration::from_secs(10);
    while Instant::now() < give_up
        && (Instant::now() < step_end || shared.events().caught_up_after.is_none())
    {
        if shared.events().caught_up_after.is_none() && caught_up(shared, killed_id).await {
            let after = restart.elapsed();
            shared.event(|e| e.caught_up_after = Some(after));
            shared.say(format!(
                "n{killed_id} caught up (lag 0), {:.1} s after its restart",
                after.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The upstream that took the most traffic over the last `window`.
fn busiest(shared: &Shared, window: Duration) -> usize {
    let now = shared.elapsed();
    let mut counts = [0usize; UPSTREAMS.len()];
    for r in lock(&shared.records).iter().rev() {
        if now.saturating_sub(r.done) > window {
            break;
        }
        if let Some(u) = r.upstream {
            counts[u] += 1;
        }
    }
    (0..counts.len()).max_by_key(|&i| counts[i]).unwrap_or(0)
}

/// One admin or control call: the status and JSON answer, or why not.
async fn call(
    http: &Http,
    method: Method,
    url: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(StatusCode, Value), String> {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(Value::to_string).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

async fn patch(http: &Http, control: &str, behavior: &Value) -> Result<(), DemoError> {
    let url = format!("http://{control}/_mock/behavior");
    match call(
        http,
        Method::PATCH,
        &url,
        Some(behavior),
        Duration::from_secs(5),
    )
    .await
    {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, v)) => Err(DemoError::Start(format!(
            "the fake provider refused {behavior}: {status} {v}"
        ))),
        Err(e) => Err(DemoError::Start(format!(
            "cannot reach the fake provider at {control}: {e}"
        ))),
    }
}

/// The typed admin client of the node whose admin listener is `admin`.
fn admin_api(admin: &str) -> Option<harness::admin::Admin> {
    let addr = admin.parse().ok()?;
    let http = harness::http::Http::tuned(1, Duration::from_secs(1));
    Some(harness::admin::Admin::new(http, addr))
}

async fn ready(admin: &str, limit: Duration) -> bool {
    let Some(admin) = admin_api(admin) else {
        return false;
    };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if admin.ready(Duration::from_secs(1)).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A leader other than `old`, as a live node reports it.
async fn leader_seen(shared: &Shared, old: u64) -> Option<u64> {
    for i in 0..REGIONS.len() {
        let Some(admin) = shared.admin(i).as_deref().and_then(admin_api) else {
            continue;
        };
        if let Some(view) = admin.view(Duration::from_millis(500)).await
            && let Some(leader) = view.leader
            && leader != old
        {
            return Some(leader);
        }
    }
    None
}

/// Whether the leader reports member `id` at lag 0.
async fn caught_up(shared: &Shared, id: u64) -> bool {
    for i in 0..REGIONS.len() {
        let Some(admin) = shared.admin(i).as_deref().and_then(admin_api) else {
            continue;
        };
        if let Some(view) = admin.view(Duration::from_millis(500)).await
            && view.is_leader()
        {
            return view
                .members
                .iter()
                .any(|m| m.id == id && m.lag == Some(0) && m.matched_index.is_some());
        }
    }
    false
}

/// Every second, each live node's health board and cluster view.
async fn poll(shared: Arc<Shared>, http: Http) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        for i in 0..REGIONS.len() {
            let Some(admin) = shared.admin(i) else {
                continue;
            };
            let health_url = format!("http://{admin}/admin/v1/health");
            let cluster_url = format!("http://{admin}/admin/v1/cluster");
            let timeout = Duration::from_millis(800);
            let (health, cluster) = tokio::join!(
                call(&http, Method::GET, &health_url, None, timeout),
                call(&http, Method::GET, &cluster_url, None, timeout)
            );
            // A node killed meanwhile keeps no figures.
            if shared.admin(i).is_none() {
                continue;
            }
            let mut board = lock(&shared.board);
            board.health[i] = match health {
                Ok((StatusCode::OK, v)) => serde_json::from_value(v).ok(),
                _ => None,
            };
            board.cluster[i] = match cluster {
                Ok((StatusCode::OK, v)) => serde_json::from_value(v).ok(),
                _ => None,
            };
        }
    }
}
