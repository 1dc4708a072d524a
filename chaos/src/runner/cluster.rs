//! The cluster under test, made of real processes: `meridian certs` for a
//! CA and one certificate per node, one `meridian-mock` per upstream behind
//! a TCP fault proxy, and N `meridian serve` processes, each its own region,
//! data dir and certificate, its Raft port behind a UDP fault proxy (the
//! members list names the proxies). Every node keeps its API, admin and
//! Raft ports across restarts, so clients and peers find it again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::RunError;
use super::http::{HttpClient, call, client};
use crate::case::{Case, Signal, upstream_id};
use crate::faults::{LinkTable, TcpMode, TcpProxy, UdpProxy};
use mock::Behavior;

/// Region names given to nodes 1, 2, … .
pub const REGIONS: [&str; 7] = [
    "us-east",
    "eu-west",
    "ap-south",
    "sa-east",
    "af-south",
    "me-central",
    "ap-northeast",
];

/// The model the load asks for.
pub const ROUTE: &str = "chat";

/// How long a starting node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `meridian`.
    pub meridian: PathBuf,
    /// `meridian-mock`.
    pub mock: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`, which must exist.
    pub fn in_dir(dir: &Path) -> Result<Self, RunError> {
        let bins = Self {
            meridian: dir.join("meridian"),
            mock: dir.join("meridian-mock"),
        };
        for bin in [&bins.meridian, &bins.mock] {
            if !bin.is_file() {
                return Err(RunError::Setup(format!(
                    "{} not found: build with `cargo build --release -p meridian -p meridian-chaos` or pass --bin-dir",
                    bin.display()
                )));
            }
        }
        Ok(bins)
    }
}

/// One `meridian` node.
pub struct Node {
    /// Raft id, 1-based.
    pub id: u64,
    /// Its region.
    pub region: String,
    /// Data plane address.
    pub api: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// The UDP port the node binds for Raft.
    pub raft_bind: SocketAddr,
    /// The proxy in front of it: what `cluster.members` lists.
    pub raft_proxy: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
    /// Its stderr (every run appended).
    pub log: PathBuf,
    child: Mutex<Option<Child>>,
    up: AtomicBool,
    /// Whether `/readyz` answered 200 at the last probe (the GeoDNS view).
    pub ready: AtomicBool,
}

impl Node {
    /// Whether its process is running.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// One fake provider.
pub struct Upstream {
    /// Its id in routes (`a`, `b`, …).
    pub id: String,
    /// The control plane.
    pub control: SocketAddr,
    /// The fault proxy nodes connect through.
    pub proxy: TcpProxy,
    _child: Child,
}

/// The running cluster; processes are killed when it is dropped.
pub struct LocalCluster {
    /// Nodes, node `id` at index `id - 1`.
    pub nodes: Vec<Arc<Node>>,
    /// Providers, `a` at index 0.
    pub upstreams: Vec<Upstream>,
    /// Rules every Raft proxy follows.
    pub table: LinkTable,
    /// The client for admin and control calls.
    pub http: HttpClient,
    /// The baseline behaviour of the providers.
    pub baseline: Behavior,
    bins: Binaries,
    log_level: String,
    _proxies: Vec<UdpProxy>,
}

fn free_tcp() -> Result<SocketAddr, RunError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| RunError::io("bind", e))?;
    l.local_addr().map_err(|e| RunError::io("bind", e))
}

fn free_udp() -> Result<SocketAddr, RunError> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| RunError::io("bind", e))?;
    s.local_addr().map_err(|e| RunError::io("bind", e))
}

/// `kill -SIG PID` (std has SIGKILL only, and unsafe is forbidden).
async fn signal(pid: u32, name: &str) -> Result<(), RunError> {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .await
        .map_err(|e| RunError::io("kill", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(RunError::Setup(format!("kill -{name} {pid} failed")))
    }
}

impl LocalCluster {
    /// Starts the cluster of `case` in `dir` and waits until every node is
    /// ready, routes, and has announced itself.
    pub async fn start(
        case: &Case,
        dir: &Path,
        bins: Binaries,
        seed: u64,
        log_level: &str,
    ) -> Result<LocalCluster, RunError> {
        let n = case.cluster.nodes;
        std::fs::create_dir_all(dir).map_err(|e| RunError::io("mkdir", e))?;
        let certs = dir.join("certs");
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let out = Command::new(&bins.meridian)
            .arg("certs")
            .arg("--dir")
            .arg(&certs)
            .args(&names)
            .output()
            .await
            .map_err(|e| RunError::io("meridian certs", e))?;
        if !out.status.success() {
            return Err(RunError::Setup(format!(
                "meridian certs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }

        let mut upstreams = Vec::new();
        for i in 0..case.upstreams {
            upstreams.push(start_mock(&bins, dir, i, seed, &case.baseline).await?);
        }

        let table = LinkTable::default();
        let raft_binds: Vec<SocketAddr> = (0..n).map(|_| free_udp()).collect::<Result<_, _>>()?;
        let peers: HashMap<SocketAddr, u64> = raft_binds
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, i as u64 + 1))
            .collect();
        let mut proxies = Vec::new();
        for (i, bind) in raft_binds.iter().enumerate() {
            let proxy = UdpProxy::start(
                i as u64 + 1,
                *bind,
                peers.clone(),
                table.clone(),
                seed.wrapping_add(i as u64),
            )
            .await
            .map_err(|e| RunError::io("udp proxy", e))?;
            proxies.push(proxy);
        }
        let members: Vec<String> = proxies
            .iter()
            .enumerate()
            .map(|(i, p)| format!("\"{}@{}\"", i + 1, p.front))
            .collect();

        let mut nodes = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            let home = dir.join(format!("n{id}"));
            std::fs::create_dir_all(&home).map_err(|e| RunError::io("mkdir", e))?;
            let node = Node {
                id,
                region: REGIONS[i % REGIONS.len()].to_owned(),
                api: free_tcp()?,
                admin: free_tcp()?,
                raft_bind: raft_binds[i],
                raft_proxy: proxies[i].front,
                config: home.join("meridian.toml"),
                log: home.join("meridian.log"),
                child: Mutex::new(None),
                up: AtomicBool::new(false),
                ready: AtomicBool::new(false),
            };
            let text = config_text(
                case,
                &node,
                &home.join("data"),
                &certs,
                &members,
                &upstreams,
            );
            std::fs::write(&node.config, text).map_err(|e| RunError::io("write config", e))?;
            nodes.push(Arc::new(node));
        }
        let cluster = LocalCluster {
            nodes,
            upstreams,
            table,
            http: client(64),
            baseline: case.baseline.clone(),
            bins,
            log_level: log_level.to_owned(),
            _proxies: proxies,
        };
        // All first (they need each other for a quorum), then their ready lines.
        let mut waiting = Vec::new();
        for node in &cluster.nodes {
            waiting.push((node.id, cluster.spawn(node).await?));
        }
        for (id, child) in waiting {
            cluster.await_ready(id, child).await?;
        }
        cluster.settle().await?;
        Ok(cluster)
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> Option<&Arc<Node>> {
        self.nodes.get((id as usize).checked_sub(1)?)
    }

    /// Ids of the nodes whose process runs.
    pub fn up(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    async fn spawn(&self, node: &Node) -> Result<Child, RunError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| RunError::io("open log", e))?;
        Command::new(&self.bins.meridian)
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", &self.log_level)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RunError::io("spawn meridian", e))
    }

    /// Waits for the ready line of a just-spawned node, then keeps its child.
    async fn await_ready(&self, id: u64, mut child: Child) -> Result<(), RunError> {
        let Some(node) = self.node(id) else {
            return Err(RunError::Setup(format!("no node {id}")));
        };
        let line = match child.stdout.take() {
            Some(stdout) => {
                let mut line = String::new();
                let read = tokio::time::timeout(
                    READY_TIMEOUT,
                    BufReader::new(stdout).read_line(&mut line),
                )
                .await;
                matches!(read, Ok(Ok(n)) if n > 0).then_some(line)
            }
            None => None,
        };
        *node.child.lock().await = Some(child);
        node.up.store(true, Ordering::Relaxed);
        match line {
            Some(line) if line.starts_with("meridian ready") => Ok(()),
            _ => Err(RunError::NotReady {
                node: id,
                log: node.log.display().to_string(),
            }),
        }
    }

    /// Waits until every node answers `/readyz` 200 and has announced its
    /// admin address through the log, so the load starts on a quiet cluster.
    async fn settle(&self) -> Result<(), RunError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut all = true;
            for node in &self.nodes {
                all &= self.readyz(node.id).await;
            }
            if all && let Some(leader) = self.leader().await {
                let view = self.view(leader).await;
                let announced = view
                    .as_ref()
                    .and_then(|v| v["members"].as_array().cloned())
                    .is_some_and(|members| {
                        self.nodes.iter().all(|n| {
                            members
                                .iter()
                                .any(|m| m["id"] == n.id && m["admin_addr"] == n.admin.to_string())
                        })
                    });
                if announced {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(RunError::Setup(
                    "the cluster did not settle within 30 s (readyz, leader, announcements)".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether node `id` answers `/readyz` with 200 within 500 ms.
    pub async fn readyz(&self, id: u64) -> bool {
        let Some(node) = self.node(id) else {
            return false;
        };
        let url = format!("http://{}/readyz", node.admin);
        matches!(
            call(
                &self.http,
                Method::GET,
                &url,
                None,
                Duration::from_millis(500)
            )
            .await,
            Ok((StatusCode::OK, _))
        )
    }

    /// `GET /admin/v1/cluster` on node `id` (1 s timeout).
    pub async fn view(&self, id: u64) -> Option<Value> {
        let node = self.node(id)?;
        let url = format!("http://{}/admin/v1/cluster", node.admin);
        let (status, body) = call(&self.http, Method::GET, &url, None, Duration::from_secs(1))
            .await
            .ok()?;
        (status == StatusCode::OK)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten()
    }

    /// The leader: the running node that says it leads with the highest
    /// term, else the leader most running nodes name.
    pub async fn leader(&self) -> Option<u64> {
        let mut claims = Vec::new();
        let mut named: HashMap<u64, usize> = HashMap::new();
        for id in self.up() {
            let Some(view) = self.view(id).await else {
                continue;
            };
            if view["role"] == "leader" {
                claims.push((view["term"].as_u64().unwrap_or(0), id));
            }
            if let Some(l) = view["leader"].as_u64() {
                *named.entry(l).or_default() += 1;
            }
        }
        claims.sort_unstable();
        claims
            .last()
            .map(|(_, id)| *id)
            .or_else(|| named.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id))
    }

    /// Stops node `id` with `sig` and waits for it to exit; returns the
    /// exit status as text. A SIGTERM not obeyed within 40 s becomes SIGKILL.
    pub async fn stop(&self, id: u64, sig: Signal) -> Result<String, RunError> {
        let node = self
            .node(id)
            .ok_or_else(|| RunError::Setup(format!("no node {id}")))?;
        let mut guard = node.child.lock().await;
        let Some(mut child) = guard.take() else {
            return Err(RunError::Setup(format!("node {id} is not running")));
        };
        node.up.store(false, Ordering::Relaxed);
        match sig {
            Signal::Kill => {
                child.start_kill().map_err(|e| RunError::io("kill", e))?;
            }
            Signal::Term => {
                if let Some(pid) = child.id() {
                    signal(pid, "TERM").await?;
                }
            }
        }
        let status = match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
            Ok(status) => status.map_err(|e| RunError::io("wait", e))?,
            Err(_) => {
                tracing::warn!(node = id, "no exit within 40 s of SIGTERM: SIGKILL");
                let _ = child.start_kill();
                child.wait().await.map_err(|e| RunError::io("wait", e))?
            }
        };
        Ok(status.to_string())
    }

    /// Starts a stopped node on its config and data dir and waits for its
    /// ready line; returns how long that took.
    pub async fn restart(&self, id: u64) -> Result<Duration, RunError> {
        let node = self
            .node(id)
            .ok_or_else(|| RunError::Setup(format!("no node {id}")))?;
        if node.is_up() {
            return Err(RunError::Setup(format!("node {id} is already running")));
        }
        let started = Instant::now();
        let child = self.spawn(node).await?;
        self.await_ready(id, child).await?;
        Ok(started.elapsed())
    }

    /// SIGTERMs every running node at once; returns each one's exit status.
    pub async fn stop_all(&self) -> Vec<(u64, String)> {
        let stops = self.up().into_iter().map(|id| async move {
            let status = match self.stop(id, Signal::Term).await {
                Ok(s) => s,
                Err(e) => e.to_string(),
            };
            (id, status)
        });
        futures_util::future::join_all(stops).await
    }

    /// Replaces provider `index`'s behaviour.
    pub async fn set_behavior(&self, index: usize, behavior: &Behavior) -> Result<(), RunError> {
        let upstream = self
            .upstreams
            .get(index)
            .ok_or_else(|| RunError::Setup(format!("no upstream {index}")))?;
        let url = format!("http://{}/_mock/behavior", upstream.control);
        let body = serde_json::to_string(behavior).map_err(|e| RunError::Setup(e.to_string()))?;
        match call(
            &self.http,
            Method::PUT,
            &url,
            Some(body),
            Duration::from_secs(5),
        )
        .await
        {
            Ok((StatusCode::OK, _)) => Ok(()),
            Ok((status, body)) => Err(RunError::Setup(format!(
                "mock {}: PUT behavior answered {status}: {}",
                upstream.id,
                String::from_utf8_lossy(&body)
            ))),
            Err(e) => Err(RunError::Setup(format!("mock {}: {e}", upstream.id))),
        }
    }

    /// Sets the TCP proxy mode of provider `index`.
    pub fn set_net(&self, index: usize, mode: TcpMode) {
        if let Some(u) = self.upstreams.get(index) {
            u.proxy.set_mode(mode);
        }
    }

    /// Puts every provider back to its baseline and every link back to
    /// healthy.
    pub async fn heal(&self) -> Result<(), RunError> {
        self.table.clear();
        for i in 0..self.upstreams.len() {
            self.set_net(i, TcpMode::Pass);
            self.set_behavior(i, &self.baseline).await?;
        }
        Ok(())
    }
}

async fn start_mock(
    bins: &Binaries,
    dir: &Path,
    index: usize,
    seed: u64,
    baseline: &Behavior,
) -> Result<Upstream, RunError> {
    let id = upstream_id(index);
    let log = std::fs::File::create(dir.join(format!("mock-{id}.log")))
        .map_err(|e| RunError::io("mock log", e))?;
    let behavior = serde_json::to_string(baseline).map_err(|e| RunError::Setup(e.to_string()))?;
    let mut child = Command::new(&bins.mock)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--threads",
            "1",
        ])
        .arg("--seed")
        .arg((seed.wrapping_add(index as u64 * 7_919)).to_string())
        .arg("--behavior")
        .arg(behavior)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::io("spawn meridian-mock", e))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
    }
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| RunError::Setup(format!("meridian-mock said {line:?}: {e}")))?;
    let addr = |field: &str| -> Result<SocketAddr, RunError> {
        v[field]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RunError::Setup(format!("meridian-mock said {line:?}: no {field}")))
    };
    let api = addr("api")?;
    let control = addr("control")?;
    let proxy = TcpProxy::start(api)
        .await
        .map_err(|e| RunError::io("tcp proxy", e))?;
    Ok(Upstream {
        id,
        control,
        proxy,
        _child: child,
    })
}

/// A node's configuration file.
fn config_text(
    case: &Case,
    node: &Node,
    data: &Path,
    certs: &Path,
    members: &[String],
    upstreams: &[Upstream],
) -> String {
    let c = &case.cluster;
    let r = &case.route;
    let mut text = format!(
        r#"[node]
id = {id}
region = "{region}"
data_dir = "{data}"

[listen]
api = "{api}"
admin = "{admin}"
raft = "{raft}"

[cluster]
members = [{members}]
heartbeat_ms = {hb}
election_timeout_ms = {et}
snapshot_logs = {sl}

[tls]
ca = "{certs}/ca.pem"
cert = "{certs}/n{id}.pem"
key = "{certs}/n{id}.key"

[proxy]
workers = {workers}
"#,
        id = node.id,
        region = node.region,
        data = data.display(),
        api = node.api,
        admin = node.admin,
        raft = node.raft_bind,
        members = members.join(", "),
        hb = c.heartbeat_ms,
        et = c.election_timeout_ms,
        sl = c.snapshot_logs,
        certs = certs.display(),
        workers = c.workers,
    );
    for u in upstreams {
        text.push_str(&format!(
            "\n[[upstreams]]\nid = \"{}\"\nbase_url = \"http://{}/v1\"\nregion = \"local\"\n",
            u.id, u.proxy.addr
        ));
    }
    let target = |u: &Upstream| {
        format!(
            "{{ upstream = \"{}\", model = \"model-{}\", input_per_mtok = 0.1, output_per_mtok = 0.4 }}",
            u.id, u.id
        )
    };
    let tiers = if r.tiered {
        upstreams
            .iter()
            .map(|u| format!("[{}]", target(u)))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!(
            "[{}]",
            upstreams.iter().map(target).collect::<Vec<_>>().join(", ")
        )
    };
    text.push_str(&format!(
        "\n[[routes]]\nmodel = \"{ROUTE}\"\ntiers = [{tiers}]\nmax_attempts = {}\nfirst_byte_timeout_ms = {}\nrequest_timeout_ms = {}\n",
        r.max_attempts, r.first_byte_timeout_ms, r.request_timeout_ms
    ));
    text
}
