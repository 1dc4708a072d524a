//! The cluster under test, made of real processes started through
//! `meridian-harness`: a CA and one certificate per node (`raft::certs`),
//! one `meridian-mock` process per upstream behind
//! a TCP fault proxy, and N `meridian serve` processes, each its own region,
//! data dir and certificate, its Raft port behind a UDP fault proxy (the
//! members list names the proxies). Every node keeps its API, admin and
//! Raft ports across restarts, so clients and peers find it again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::admin::{Admin, ClusterView};
use harness::config as node_config;
use harness::mocks::MockProcess;
use harness::process::{NodeCommand, NodeProcess};
use http::{Method, StatusCode};
use mock::Behavior;
use proto::config::Config;
use tokio::sync::Mutex;

use super::RunError;
use super::http::{HttpClient, call, client};
use crate::case::{Case, Signal, TenantsSpec, upstream_id};
use crate::faults::{LinkTable, TcpMode, TcpProxy, UdpProxy};

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
        let find = |name| {
            harness::bins::locate(dir, name).map_err(|_| {
                RunError::Setup(format!(
                    "{} not found: build with `cargo build --release -p meridian -p meridian-chaos -p meridian-mock` or pass --bin-dir",
                    dir.join(name).display()
                ))
            })
        };
        Ok(Self {
            meridian: find(harness::bins::MERIDIAN)?,
            mock: find(harness::bins::MOCK)?,
        })
    }
}

impl From<harness::HarnessError> for RunError {
    fn from(e: harness::HarnessError) -> Self {
        RunError::Setup(e.to_string())
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
    process: Mutex<NodeProcess>,
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
    _process: MockProcess,
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
    /// The client of the nodes' admin APIs (readiness, views, leader).
    admin_http: harness::http::Http,
    /// The baseline behaviour of the providers.
    pub baseline: Behavior,
    _proxies: Vec<UdpProxy>,
}

/// How long a SIGTERMed node may take to exit before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(40);

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
        harness::certs::write(&certs, &names)?;

        let mut upstreams = Vec::new();
        for i in 0..case.upstreams {
            upstreams.push(start_mock(&bins, dir, i, seed, &case.baseline).await?);
        }

        let table = LinkTable::default();
        let raft_binds: Vec<SocketAddr> = (0..n)
            .map(|_| harness::ports::free_udp())
            .collect::<Result<_, _>>()?;
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
            .map(|(i, p)| node_config::member(i as u64 + 1, p.front))
            .collect();

        let mut nodes = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            let home = dir.join(format!("n{id}"));
            std::fs::create_dir_all(&home).map_err(|e| RunError::io("mkdir", e))?;
            let config = home.join("meridian.toml");
            let log = home.join("meridian.log");
            let mut command = NodeCommand::new(&bins.meridian, &config, &log);
            command.log_level = log_level.to_owned();
            if let Some(t) = &case.tenants {
                for (k, key) in t.keys.iter().enumerate() {
                    command
                        .env
                        .push((TenantsSpec::env_var(k), TenantsSpec::secret(&key.name)));
                }
            }
            let node = Node {
                id,
                region: REGIONS[i % REGIONS.len()].to_owned(),
                api: harness::ports::free_tcp()?,
                admin: harness::ports::free_tcp()?,
                raft_bind: raft_binds[i],
                raft_proxy: proxies[i].front,
                config,
                log,
                process: Mutex::new(NodeProcess::new(command)),
                up: AtomicBool::new(false),
                ready: AtomicBool::new(false),
            };
            let built = node_config_of(
                case,
                &node,
                &home.join("data"),
                &certs,
                &members,
                &upstreams,
            );
            node_config::write(&node.config, &built)?;
            nodes.push(Arc::new(node));
        }
        let cluster = LocalCluster {
            nodes,
            upstreams,
            table,
            http: client(64),
            admin_http: harness::http::Http::tuned(64, Duration::from_secs(1)),
            baseline: case.baseline.clone(),
            _proxies: proxies,
        };
        // All first (they need each other for a quorum), then their ready lines.
        for node in &cluster.nodes {
            node.process.lock().await.spawn()?;
            node.up.store(true, Ordering::Relaxed);
        }
        for node in &cluster.nodes {
            cluster.await_ready(node).await?;
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

    /// Waits for the ready line of a just-spawned node.
    async fn await_ready(&self, node: &Node) -> Result<(), RunError> {
        let ready = node.process.lock().await.await_ready(READY_TIMEOUT).await;
        ready.map(|_| ()).map_err(|_| RunError::NotReady {
            node: node.id,
            log: node.log.display().to_string(),
        })
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
                    .is_some_and(|view| self.nodes.iter().all(|n| view.announced(n.id, n.admin)));
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

    /// The typed admin client of node `id`.
    pub fn admin(&self, id: u64) -> Option<Admin> {
        let node = self.node(id)?;
        Some(Admin::new(self.admin_http.clone(), node.admin))
    }

    /// Whether node `id` answers `/readyz` with 200 within 500 ms.
    pub async fn readyz(&self, id: u64) -> bool {
        match self.admin(id) {
            Some(admin) => admin.ready(Duration::from_millis(500)).await,
            None => false,
        }
    }

    /// `GET /admin/v1/cluster` on node `id` (1 s timeout).
    pub async fn view(&self, id: u64) -> Option<ClusterView> {
        self.admin(id)?.view(Duration::from_secs(1)).await
    }

    /// The leader: the running node that says it leads with the highest
    /// term, else the leader most running nodes name.
    pub async fn leader(&self) -> Option<u64> {
        let mut views = Vec::new();
        for id in self.up() {
            views.push((id, self.view(id).await));
        }
        harness::admin::likely_leader(&views)
    }

    /// Stops node `id` with `sig` and waits for it to exit; returns the
    /// exit status as text. A SIGTERM not obeyed within 40 s becomes SIGKILL.
    pub async fn stop(&self, id: u64, sig: Signal) -> Result<String, RunError> {
        let node = self
            .node(id)
            .ok_or_else(|| RunError::Setup(format!("no node {id}")))?;
        let mut process = node.process.lock().await;
        if !process.is_up() {
            return Err(RunError::Setup(format!("node {id} is not running")));
        }
        node.up.store(false, Ordering::Relaxed);
        let status = match sig {
            Signal::Kill => process.kill().await?,
            Signal::Term => {
                let (status, exited) = process.terminate(STOP_GRACE).await?;
                if !exited {
                    tracing::warn!(node = id, "no exit within 40 s of SIGTERM: SIGKILL");
                }
                status
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
        node.process.lock().await.spawn()?;
        node.up.store(true, Ordering::Relaxed);
        self.await_ready(node).await?;
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
    let behavior = serde_json::to_string(baseline).map_err(|e| RunError::Setup(e.to_string()))?;
    let args = [
        "--threads".to_owned(),
        "1".to_owned(),
        "--seed".to_owned(),
        seed.wrapping_add(index as u64 * 7_919).to_string(),
        "--behavior".to_owned(),
        behavior,
    ];
    let log = dir.join(format!("mock-{id}.log"));
    let process = MockProcess::start(
        &bins.mock,
        &args,
        Some(&log),
        false,
        Duration::from_secs(10),
    )
    .await?;
    let api = process.api;
    let control = process.control;
    let proxy = TcpProxy::start(api)
        .await
        .map_err(|e| RunError::io("tcp proxy", e))?;
    Ok(Upstream {
        id,
        control,
        proxy,
        _process: process,
    })
}

/// A node's configuration.
fn node_config_of(
    case: &Case,
    node: &Node,
    data: &Path,
    certs: &Path,
    members: &[String],
    upstreams: &[Upstream],
) -> Config {
    let c = &case.cluster;
    let r = &case.route;
    let mut config = node_config::node(node.id, &node.region, data);
    config.listen.api = node.api;
    config.listen.admin = node.admin;
    config.listen.raft = node.raft_bind;
    config.cluster.members = members.to_vec();
    config.cluster.heartbeat_ms = c.heartbeat_ms;
    config.cluster.election_timeout_ms = c.election_timeout_ms;
    config.cluster.snapshot_logs = c.snapshot_logs;
    config.tls = Some(harness::certs::tls_config(certs, &format!("n{}", node.id)));
    config.proxy.workers = c.workers as usize;
    config.upstreams = upstreams
        .iter()
        .map(|u| {
            let mut upstream = node_config::upstream(&u.id, &format!("http://{}/v1", u.proxy.addr));
            upstream.region = "local".to_owned();
            upstream
        })
        .collect();
    let [input_price, output_price] = case.tenants.as_ref().map_or([0.1, 0.4], |t| t.prices);
    let target = |u: &Upstream| {
        let mut target = node_config::target(&u.id, &format!("model-{}", u.id));
        target.input_per_mtok = input_price;
        target.output_per_mtok = output_price;
        target
    };
    let tiers = if r.tiered {
        upstreams.iter().map(|u| vec![target(u)]).collect()
    } else {
        vec![upstreams.iter().map(target).collect()]
    };
    let mut route = node_config::route(ROUTE, tiers);
    route.max_attempts = Some(r.max_attempts);
    route.first_byte_timeout_ms = Some(r.first_byte_timeout_ms);
    route.request_timeout_ms = Some(r.request_timeout_ms);
    config.routes = vec![route];
    if let Some(t) = &case.tenants {
        config.keys = t
            .keys
            .iter()
            .enumerate()
            .map(|(k, key)| proto::config::KeyConfig {
                name: key.name.clone(),
                key_env: TenantsSpec::env_var(k),
                models: None,
                rpm: key.rpm,
                tpm: key.tpm,
                credits_usd: key.credits_usd,
                class: None,
            })
            .collect();
    }
    config
}
