//! A local Meridian cluster of real `meridian` processes for integration
//! tests: a cluster CA and node certificates from `raft::certs`, Raft on
//! loopback UDP ports chosen in advance (they must be listed in
//! `cluster.members`), the API and admin listeners on ephemeral ports read
//! back from each node's ready line, one `meridian-mock` as the upstream of
//! every route, and the means to kill, stop and restart nodes on their data
//! directories.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Child;

use super::Mock;

/// The id every route of the cluster points at: the shared mock.
pub const UPSTREAM: &str = "mock";
/// The route every cluster is seeded with.
pub const SEED_ROUTE: &str = "seed";

/// Raft timing of a test cluster.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `cluster.heartbeat_ms`.
    pub heartbeat_ms: u64,
    /// `cluster.election_timeout_ms` (openraft draws each timeout between
    /// this and twice this).
    pub election_timeout_ms: u64,
    /// `cluster.snapshot_logs`.
    pub snapshot_logs: u64,
}

impl Options {
    /// Fast test timing: 100 ms heartbeats, 1 s election timeout (ten
    /// heartbeats, so a loaded 2-core machine does not trigger elections).
    pub fn fast() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_ms: 1_000,
            snapshot_logs: 1_000,
        }
    }

    /// The same with another snapshot interval.
    pub fn snapshot_every(snapshot_logs: u64) -> Self {
        Self {
            snapshot_logs,
            ..Self::fast()
        }
    }

    /// The configuration's defaults (500 ms heartbeats, 5 s elections).
    pub fn defaults() -> Self {
        Self {
            heartbeat_ms: 500,
            election_timeout_ms: 5_000,
            snapshot_logs: 1_000,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::fast()
    }
}

/// An admin or data-plane answer.
pub use harness::http::Reply;

/// One node of the cluster; `api` and `admin` are `host:port` of the
/// running process (they change at each restart) and empty while it is down.
pub struct ClusterNode {
    /// Raft node id (1-based).
    pub id: u64,
    /// Its Raft (UDP) port, fixed for the cluster's life.
    pub raft_port: u16,
    /// The host its peers dial it at: `127.0.0.1`, or a DNS name.
    pub raft_host: String,
    /// The data plane, `host:port`.
    pub api: String,
    /// The admin listener, `host:port`.
    pub admin: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Its stderr, appended to by every run.
    pub log: PathBuf,
    child: Option<Child>,
}

impl ClusterNode {
    /// Whether its process is running.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Its Raft address, `HOST:PORT`.
    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.raft_host, self.raft_port)
    }
}

/// A running cluster, torn down (SIGKILL) when dropped.
pub struct Cluster {
    /// The nodes, node `id` at index `id - 1`.
    pub nodes: Vec<ClusterNode>,
    /// The upstream every route points at.
    pub mock: Mock,
    /// Raft timing the nodes run with.
    pub options: Options,
    /// Certificates, configs, data dirs and logs.
    pub dir: tempfile::TempDir,
    /// The HTTP client every call of this cluster goes through.
    pub http: Http,
}

/// A plain-HTTP client with per-request timeouts that reports transport
/// failures instead of panicking; cheap to clone into spawned tasks.
#[derive(Clone, Default)]
pub struct Http {
    inner: harness::http::Http,
}

impl Http {
    /// A client with keep-alive connection pooling.
    pub fn new() -> Self {
        Self::default()
    }

    /// One exchange within `timeout`; transport failures and timeouts are `Err`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        self.inner.send(method, url, &[], body, timeout).await
    }

    /// A chat request for `model` to the data plane at `api` (`host:port`).
    pub async fn chat(&self, api: &str, model: &str, timeout: Duration) -> Result<Reply, String> {
        self.chat_as(api, model, None, timeout).await
    }

    /// [`Http::chat`] with the client key `key` (`Authorization: Bearer`).
    pub async fn chat_as(
        &self,
        api: &str,
        model: &str,
        key: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let url = format!("http://{api}/v1/chat/completions");
        let auth = key.map(|key| format!("Bearer {key}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|auth| ("authorization", auth))
            .into_iter()
            .collect();
        self.inner
            .send(
                Method::POST,
                &url,
                &headers,
                Some(chat_body(model)),
                timeout,
            )
            .await
    }
}

/// A `meridian` process that is not one of the cluster's nodes (see
/// [`Cluster::spawn_stranger`]); killed when dropped.
pub struct Stranger {
    /// The node id it claims.
    pub id: u64,
    /// Its Raft (UDP) port.
    pub raft_port: u16,
    /// Its stderr.
    pub log: PathBuf,
    /// The process.
    pub child: Child,
}

impl Stranger {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its Raft address.
    pub fn raft_addr(&self) -> String {
        format!("127.0.0.1:{}", self.raft_port)
    }

    /// Waits until its Raft port is bound (binding it here fails), so a
    /// leader told to add it finds it listening: a Raft dial sent before,
    /// to a port no one holds, is lost, and the leader's retransmits and
    /// redial backoff can then outlast the admin API's wait for the new
    /// member to catch up.
    pub async fn listening(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::UdpSocket::bind(("127.0.0.1", self.raft_port)).is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// A free loopback UDP port (bound, then released).
pub fn free_udp_port() -> u16 {
    harness::ports::free_udp().unwrap().port()
}

/// Writes a CA and one certificate per name into `dir` with `raft::certs`
/// (SANs 127.0.0.1 and localhost): `ca.pem`, `NAME.pem`, `NAME.key`, where a
/// name is `n<ID>` or `NAME=ID` as `meridian certs` takes it. A new `dir`
/// means a new CA.
pub fn write_certs(dir: &Path, names: &[String]) {
    harness::certs::write(dir, names).unwrap();
}

/// A node's configuration file.
fn config_text(
    id: u64,
    data_dir: &Path,
    raft_port: u16,
    members: &[String],
    certs: &Path,
    options: Options,
    mock: &Mock,
) -> String {
    use harness::config;
    let mut c = config::node(id, &format!("r{id}"), data_dir);
    c.listen.raft = std::net::SocketAddr::from(([127, 0, 0, 1], raft_port));
    c.cluster.members = members.to_vec();
    c.cluster.heartbeat_ms = options.heartbeat_ms;
    c.cluster.election_timeout_ms = options.election_timeout_ms;
    c.cluster.snapshot_logs = options.snapshot_logs;
    c.tls = Some(harness::certs::tls_config(certs, &format!("n{id}")));
    c.proxy.workers = 1;
    c.upstreams = vec![config::upstream(UPSTREAM, &mock.base_url())];
    c.routes = vec![config::route(
        SEED_ROUTE,
        vec![vec![config::target(UPSTREAM, "seed-model")]],
    )];
    config::to_toml(&c).unwrap()
}

/// Starts `meridian serve --config CONFIG`, stderr appended to `log`.
fn spawn(config: &Path, log: &Path) -> Child {
    harness::process::NodeCommand::new(Path::new(env!("CARGO_BIN_EXE_meridian")), config, log)
        .spawn()
        .unwrap()
}

/// Reads the ready line (`meridian ready: api=http://H:P admin=http://H:P
/// region=R`) within `timeout`: `Some((api, admin))`, or `None` when the
/// process printed nothing in time or exited first.
pub async fn read_ready(child: &mut Child, timeout: Duration) -> Option<(String, String)> {
    let line = harness::process::read_line(child, timeout).await?;
    let ready = harness::process::Ready::parse(&line)?;
    Some((ready.api.to_string(), ready.admin.to_string()))
}

/// A route body with one tier on the mock, serving `upstream_model`.
pub fn route(upstream_model: &str) -> Value {
    json!({ "tiers": [[{ "upstream": UPSTREAM, "model": upstream_model }]] })
}

/// A small chat request for `model`.
pub fn chat_body(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// Polls `probe` every `every` until it returns `Some`, for at most `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, every: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of `samples`.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Total size in bytes of the files under `path`.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Sends SIGTERM to a process.
async fn sigterm(pid: u32) {
    harness::process::signal(pid, "TERM").await.unwrap();
}

impl Cluster {
    /// Starts `n` voters (ids 1..=n, regions `r1`…) with `options`, seeded
    /// with the upstream [`UPSTREAM`] and the route [`SEED_ROUTE`], and waits
    /// until every node printed its ready line.
    pub async fn start(n: usize, options: Options) -> Cluster {
        Self::start_at(n, options, "127.0.0.1").await
    }

    /// [`Cluster::start`] with every Raft address written `HOST:PORT`:
    /// `localhost` addresses the nodes by DNS name, as a StatefulSet's pods
    /// are (the certificates list `localhost`).
    pub async fn start_at(n: usize, options: Options, host: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        write_certs(&certs, &names);
        let mock = Mock::start(&[]).await;
        let ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let members: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@{host}:{p}", i + 1))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let id = i as u64 + 1;
                let home = dir.path().join(format!("n{id}"));
                std::fs::create_dir_all(&home).unwrap();
                let data_dir = home.join("data");
                let config = home.join("meridian.toml");
                std::fs::write(
                    &config,
                    config_text(id, &data_dir, port, &members, &certs, options, &mock),
                )
                .unwrap();
                ClusterNode {
                    id,
                    raft_port: port,
                    raft_host: host.to_owned(),
                    api: String::new(),
                    admin: String::new(),
                    config,
                    data_dir,
                    log: home.join("meridian.log"),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            mock,
            options,
            dir,
            http: Http::new(),
        };
        cluster.start_all().await;
        // The ready line follows the applied state, and the routing table is
        // rebuilt from it a moment later: wait until every node serves the
        // seeded route, so tests start from a cluster that routes.
        for id in 1..=n as u64 {
            let ready = poll(
                Duration::from_secs(10),
                Duration::from_millis(2),
                || async {
                    let admin = cluster.admin_client(id);
                    admin.ready(Duration::from_secs(1)).await.then_some(())
                },
            )
            .await;
            assert!(ready.is_some(), "node {id}: /readyz never answered 200");
        }
        // Each node announces its admin address through the log once it
        // runs; wait for all of them, so that the log is quiet when a test
        // starts.
        let settled = poll(
            Duration::from_secs(15),
            Duration::from_millis(5),
            || async {
                let leader = cluster.leader_within(Duration::from_secs(1)).await?;
                let view = cluster.view(leader).await;
                let members = view["members"].as_array()?;
                let announced = cluster.nodes.iter().all(|node| {
                    members
                        .iter()
                        .any(|m| m["id"] == node.id && m["admin_addr"] == node.admin.as_str())
                });
                announced.then_some(())
            },
        )
        .await;
        assert!(
            settled.is_some(),
            "the nodes did not all announce themselves"
        );
        cluster
    }

    /// `id@HOST:PORT` of every node, as `cluster.members` lists them.
    pub fn members(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.raft_addr()))
            .collect()
    }

    /// Starts a node `id` whose certificate comes from a CA of its own (not
    /// the cluster's), configured like the others with `cluster.members`
    /// listing every node and itself. Does not wait for it to get ready.
    pub fn spawn_stranger(&self, id: u64) -> Stranger {
        let home = self.dir.path().join(format!("stranger{id}"));
        let certs = home.join("certs");
        write_certs(&certs, &[format!("n{id}")]);
        self.spawn_outsider(id, &home, &certs)
    }

    /// Starts a node `id` that presents node `as_node`'s certificate (signed
    /// by the cluster's CA, so the handshake alone accepts it), configured
    /// like [`Cluster::spawn_stranger`]. Does not wait for it to get ready.
    pub fn spawn_impostor(&self, id: u64, as_node: u64) -> Stranger {
        let home = self.dir.path().join(format!("impostor{id}"));
        let certs = home.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let ours = self.dir.path().join("certs");
        std::fs::copy(ours.join("ca.pem"), certs.join("ca.pem")).unwrap();
        for ext in ["pem", "key"] {
            std::fs::copy(
                ours.join(format!("n{as_node}.{ext}")),
                certs.join(format!("n{id}.{ext}")),
            )
            .unwrap();
        }
        self.spawn_outsider(id, &home, &certs)
    }

    /// Starts a node `id` with its own certificate from the cluster's CA,
    /// configured like [`Cluster::spawn_stranger`]: a legitimate new node,
    /// for the operator to add. Does not wait for it to get ready.
    pub fn spawn_joiner(&self, id: u64) -> Stranger {
        let home = self.dir.path().join(format!("joiner{id}"));
        std::fs::create_dir_all(&home).unwrap();
        write_certs(&self.certs(), &[format!("n{id}")]);
        self.spawn_outsider(id, &home, &self.certs())
    }

    /// The cluster's certificate directory: `ca.pem`, `ca.key` and each
    /// node's `nID.pem`/`nID.key`.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Starts a node `id` with its own certificate from the cluster's CA
    /// whose file names only itself: it bootstraps a cluster of its own and
    /// leads it (a removed member restarted on an empty disk, another team's
    /// cluster on the same CA). Does not wait for it to get ready.
    pub fn spawn_rogue(&self, id: u64) -> Stranger {
        let home = self.dir.path().join(format!("rogue{id}"));
        std::fs::create_dir_all(&home).unwrap();
        write_certs(&self.certs(), &[format!("n{id}")]);
        self.spawn_with(id, &home, &self.certs(), Vec::new())
    }

    fn spawn_outsider(&self, id: u64, home: &Path, certs: &Path) -> Stranger {
        self.spawn_with(id, home, certs, self.members())
    }

    /// Starts node `id` with `members` and itself in its file.
    fn spawn_with(&self, id: u64, home: &Path, certs: &Path, mut members: Vec<String>) -> Stranger {
        let raft_port = free_udp_port();
        members.push(format!("{id}@127.0.0.1:{raft_port}"));
        let config = home.join("meridian.toml");
        std::fs::write(
            &config,
            config_text(
                id,
                &home.join("data"),
                raft_port,
                &members,
                certs,
                self.options,
                &self.mock,
            ),
        )
        .unwrap();
        let log = home.join("meridian.log");
        Stranger {
            id,
            raft_port,
            child: spawn(&config, &log),
            log,
        }
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> &ClusterNode {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u64) -> &mut ClusterNode {
        &mut self.nodes[id as usize - 1]
    }

    /// Ids of the nodes whose process is running.
    pub fn up(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    /// Ids of the nodes whose process is not running.
    pub fn down(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| !n.is_up())
            .map(|n| n.id)
            .collect()
    }

    /// A node's log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// Size in bytes of a node's data directory.
    pub fn data_bytes(&self, id: u64) -> u64 {
        dir_bytes(&self.node(id).data_dir)
    }

    /// Starts every node that is down, then waits for all their ready lines
    /// (they need each other for a quorum, so all are spawned first).
    pub async fn start_all(&mut self) {
        let down: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| !n.is_up())
            .map(|n| n.id)
            .collect();
        for &id in &down {
            let node = self.node_mut(id);
            node.child = Some(spawn(&node.config, &node.log));
        }
        for id in down {
            self.await_ready(id).await;
        }
    }

    /// Restarts a stopped node on the same config and data dir and waits for
    /// its ready line.
    pub async fn restart(&mut self, id: u64) {
        assert!(!self.node(id).is_up(), "node {id} is running");
        let node = self.node_mut(id);
        node.child = Some(spawn(&node.config, &node.log));
        self.await_ready(id).await;
    }

    async fn await_ready(&mut self, id: u64) {
        let node = self.node_mut(id);
        let child = node.child.as_mut().unwrap();
        let Some((api, admin)) = read_ready(child, Duration::from_secs(30)).await else {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            panic!("node {id} did not get ready; its log:\n{log}");
        };
        // Nothing more comes on stdout; closing it is harmless.
        node.child.as_mut().unwrap().stdout = None;
        node.api = api;
        node.admin = admin;
    }

    /// SIGKILLs a node and reaps it. Returns the instant the signal was sent.
    pub async fn kill_9(&mut self, id: u64) -> Instant {
        let node = self.node_mut(id);
        let mut child = node.child.take().expect("node is not running");
        child.start_kill().unwrap();
        let at = Instant::now();
        child.wait().await.unwrap();
        node.api.clear();
        node.admin.clear();
        at
    }

    /// Freezes a node (SIGSTOP), as a long pause or a stalled VM would:
    /// its sockets stay open and its peers' messages wait in their buffers.
    pub async fn pause(&self, id: u64) {
        self.signal(id, "STOP").await;
    }

    /// Wakes a node frozen by [`Cluster::pause`] (SIGCONT).
    pub async fn resume(&self, id: u64) {
        self.signal(id, "CONT").await;
    }

    /// Sends the signal `name` to node `id`'s running process.
    async fn signal(&self, id: u64, name: &str) {
        let child = self.node(id).child.as_ref().expect("node is not running");
        harness::process::signal(child.id().unwrap(), name)
            .await
            .unwrap();
    }

    /// Waits up to `limit` for a node's process to exit by itself, and
    /// reaps it; its exit status, or `None` if it is still running.
    pub async fn wait_exit(
        &mut self,
        id: u64,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let node = self.node_mut(id);
        let child = node.child.as_mut().expect("node is not running");
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .ok()?
            .unwrap();
        node.child = None;
        node.api.clear();
        node.admin.clear();
        Some(status)
    }

    /// SIGTERMs a node and waits for it to exit (asserting status 0).
    pub async fn terminate(&mut self, id: u64) {
        let node = self.node_mut(id);
        let mut child = node.child.take().expect("node is not running");
        sigterm(child.id().unwrap()).await;
        let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
            .await
            .expect("node did not exit within 40 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "node {id} exited with {status}");
        node.api.clear();
        node.admin.clear();
    }

    /// SIGTERMs every running node at once and waits for all to exit 0.
    pub async fn stop_all(&mut self) {
        let mut children = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.take() {
                sigterm(child.id().unwrap()).await;
                node.api.clear();
                node.admin.clear();
                children.push((node.id, child));
            }
        }
        for (id, mut child) in children {
            let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
                .await
                .expect("node did not exit within 40 s of SIGTERM")
                .unwrap();
            assert!(status.success(), "node {id} exited with {status}");
        }
    }

    /// SIGKILLs every running node.
    pub async fn kill_all(&mut self) {
        for id in self.up() {
            self.kill_9(id).await;
        }
    }

    /// An admin call to node `id` within `timeout`.
    pub async fn try_admin(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let admin = &self.node(id).admin;
        assert!(!admin.is_empty(), "node {id} is down");
        let url = format!("http://{admin}{path}");
        self.http
            .send(method, &url, body.map(Value::to_string), timeout)
            .await
    }

    /// An admin call that must get an answer within 20 s.
    pub async fn admin(&self, id: u64, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.try_admin(id, method.clone(), path, body, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on node {id}: {e}"))
    }

    /// `GET` on node `id`'s admin API.
    pub async fn get(&self, id: u64, path: &str) -> Reply {
        self.admin(id, Method::GET, path, None).await
    }

    /// `PUT` a JSON body on node `id`'s admin API.
    pub async fn put(&self, id: u64, path: &str, body: &Value) -> Reply {
        self.admin(id, Method::PUT, path, Some(body)).await
    }

    /// `POST` a JSON body on node `id`'s admin API.
    pub async fn post(&self, id: u64, path: &str, body: &Value) -> Reply {
        self.admin(id, Method::POST, path, Some(body)).await
    }

    /// `DELETE` on node `id`'s admin API.
    pub async fn delete(&self, id: u64, path: &str) -> Reply {
        self.admin(id, Method::DELETE, path, None).await
    }

    /// `PUT /admin/v1/routes/{model}` on node `id`, asserting a 200.
    pub async fn put_route(&self, id: u64, model: &str, body: &Value) -> Value {
        let reply = self
            .put(id, &format!("/admin/v1/routes/{model}"), body)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "PUT route {model} on node {id}: {}",
            reply.text()
        );
        reply.json()
    }

    /// `GET /admin/v1/cluster` on node `id`.
    pub async fn view(&self, id: u64) -> Value {
        let reply = self.get(id, "/admin/v1/cluster").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }

    /// The routes node `id` has applied (`?stale=true`: no leader needed),
    /// as model → route JSON.
    pub async fn applied_routes(&self, id: u64) -> serde_json::Map<String, Value> {
        let reply = self.get(id, "/admin/v1/routes?stale=true").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["model"].as_str().unwrap().to_owned(), r.clone()))
            .collect()
    }

    /// Waits up to `limit` until node `id` has applied the route `model`,
    /// asserting that it does.
    pub async fn await_route(&self, id: u64, model: &str, limit: Duration) {
        let applied = poll(limit, Duration::from_millis(20), || async {
            self.applied_routes(id)
                .await
                .contains_key(model)
                .then_some(())
        })
        .await;
        assert!(
            applied.is_some(),
            "node {id} never applied the route {model}"
        );
    }

    /// The leader, once one of the running nodes says it is leader and every
    /// other running node names it (waits up to 15 s).
    pub async fn leader(&self) -> u64 {
        self.leader_within(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("no leader within 15 s"))
    }

    /// The leader the running nodes agree on, polled every 5 ms for `limit`.
    pub async fn leader_within(&self, limit: Duration) -> Option<u64> {
        poll(limit, Duration::from_millis(5), || async {
            let mut views = Vec::new();
            for id in self.up() {
                let view = self.admin_client(id).view(Duration::from_secs(1)).await;
                views.push((id, view));
            }
            harness::admin::agreed_leader(&views)
        })
        .await
    }

    /// The harness's typed client of node `id`'s admin API.
    pub fn admin_client(&self, id: u64) -> harness::admin::Admin {
        let admin = &self.node(id).admin;
        assert!(!admin.is_empty(), "node {id} is down");
        harness::admin::Admin::new(self.http.inner.clone(), admin.parse().unwrap())
    }

    /// A chat request for `model` to node `id`'s data plane within `timeout`.
    pub async fn chat(&self, id: u64, model: &str, timeout: Duration) -> Result<Reply, String> {
        let api = &self.node(id).api;
        assert!(!api.is_empty(), "node {id} is down");
        self.http.chat(api, model, timeout).await
    }

    /// Waits until node `id` has applied at least `index` (up to `limit`).
    pub async fn wait_applied(&self, id: u64, index: u64, limit: Duration) -> bool {
        poll(limit, Duration::from_millis(5), || async {
            let view = self.view(id).await;
            (view["applied_index"].as_u64() >= Some(index)).then_some(())
        })
        .await
        .is_some()
    }
}
