//! The processes under test: `meridian-mock` and a one-node `meridian` on
//! loopback, killed when dropped, and the node's resident memory.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use proto::config::Config;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a process gets to print its address.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Set in the environment of this tool once it has raised its own limit.
const RAISED: &str = "MERIDIAN_CONNS_NOFILE_RAISED";

/// What every node of a run shares.
pub struct Setup {
    /// The meridian binary.
    pub meridian_bin: PathBuf,
    /// The meridian-mock binary.
    pub mock_bin: PathBuf,
    /// The node's descriptor limit.
    pub node_nofile: u64,
    /// Leave `[connections]` out of the config.
    pub legacy: bool,
    /// Body and header timeouts of the node.
    pub timeout_ms: u64,
    /// TLS between the node and the mock.
    pub tls: bool,
    /// The upstream's `http2`.
    pub upstream_http2: bool,
    /// The node's `proxy.workers` (0: one per CPU).
    pub workers: usize,
    /// The node's `connections.max_connections`, where not its default.
    pub max_connections: Option<usize>,
}

/// A running mock and node, stopped when dropped.
pub struct Started {
    /// The node's data plane.
    pub api: SocketAddr,
    /// The node's admin listener.
    pub admin: SocketAddr,
    pid: u32,
    _node: Child,
    _mock: Child,
    dir: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Setup {
    /// Starts a fresh mock (streams of 10 chunks, one every 100 ms after a
    /// 1 s first byte, so that a round's streams are all open at once) and a
    /// node in front of it with `max_in_flight`.
    pub async fn start(&self, max_in_flight: usize) -> Result<Started> {
        let dir = std::env::temp_dir().join(format!(
            "meridian-conns-{}-{}",
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&dir)?;
        let behavior =
            r#"{"first_byte":{"fixed_ms":1000},"chunk_delay":{"fixed_ms":100},"chunks":10}"#;
        let mut mock = limited(&self.mock_bin, self.node_nofile);
        mock.args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--behavior", behavior])
            .env("RUST_LOG", "warn");
        if self.tls {
            let (cert, key) = tls_files(&dir)?;
            mock.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let (mock, line) = spawn(mock, &dir.join("mock.log")).await?;
        let addrs: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("meridian-mock's first line: {line}"))?;
        let mock_api = addrs["api"]
            .as_str()
            .ok_or_else(|| anyhow!("no api in {line}"))?;

        let config = dir.join("meridian.toml");
        let mock_api: SocketAddr = mock_api.parse().with_context(|| format!("api in {line}"))?;
        harness::config::write(&config, &self.config(&dir, mock_api, max_in_flight))?;
        let mut node = limited(&self.meridian_bin, self.node_nofile);
        node.arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn");
        let (node, line) = spawn(node, &dir.join("meridian.log")).await?;
        let ready = harness::process::Ready::parse(&line)
            .ok_or_else(|| anyhow!("no ready line but {line:?}"))?;
        let pid = node.id().context("the node exited")?;
        Ok(Started {
            api: ready.api,
            admin: ready.admin,
            pid,
            _node: node,
            _mock: mock,
            dir,
        })
    }

    fn config(&self, dir: &Path, mock: SocketAddr, max_in_flight: usize) -> Config {
        use harness::config as build;
        let mut config = build::node(1, "bench", &dir.join("data"));
        config.proxy.max_in_flight = max_in_flight;
        config.proxy.workers = self.workers;
        if !self.legacy {
            config.connections.body_timeout_ms = self.timeout_ms;
            config.connections.header_read_timeout_ms = self.timeout_ms;
            config.connections.max_h2_streams = 128;
            if let Some(max) = self.max_connections {
                config.connections.max_connections = max;
            }
        }
        let scheme = if self.tls { "https" } else { "http" };
        let mut upstream = build::upstream("mock", &format!("{scheme}://{mock}/v1"));
        upstream.region = "bench".to_owned();
        if self.tls {
            upstream.ca_file = Some(dir.join(CA_FILE));
        }
        upstream.http2 = self.upstream_http2;
        config.upstreams = vec![upstream];
        config.routes = vec![build::route(
            "m",
            vec![vec![build::target("mock", "mock-model")]],
        )];
        config
    }
}

/// The private CA the node trusts, in the run's directory.
const CA_FILE: &str = "mock-ca.pem";

/// Writes a private CA (`CA_FILE`) and a certificate it signed for
/// 127.0.0.1 into `dir`; returns the certificate's and its key's paths.
fn tls_files(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let ca = harness::certs::UpstreamCa::new(dir, "mock")?;
    Ok(ca.write_server(dir, "mock", &["127.0.0.1"])?)
}

impl Started {
    /// The node's resident set, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("the node is gone")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid))
    }

    /// Whether the node still runs.
    pub fn alive(&self) -> bool {
        self.rss_kib().is_ok()
    }

    /// Samples RSS every 100 ms until stopped; the peak.
    pub fn sample_peak(&self) -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let path = format!("/proc/{}/status", self.pid);
        let task = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(status) = std::fs::read_to_string(&path)
                        && let Some(kib) = status
                            .lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Sampler { peak, task }
    }
}

/// A running RSS sampler.
pub struct Sampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Stops sampling; the peak seen, KiB.
    pub async fn stop(self) -> u64 {
        self.task.abort();
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `bin` run with a descriptor limit of `nofile` (the same for every binary
/// measured, whatever this tool's own limit is).
fn limited(bin: &Path, nofile: u64) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(bin);
    cmd
}

/// Spawns `cmd` with stderr to `log`; its first line of stdout.
async fn spawn(mut cmd: Command, log: &Path) -> Result<(Child, String)> {
    let log_file = std::fs::File::create(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .context("spawning")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
    let Ok(Ok(Some(line))) = first else {
        bail!(
            "no start line within {READY_TIMEOUT:?}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, line))
}

/// Raises this process's descriptor limit to `want` by running itself
/// again under `ulimit -n` (the floods need more than a login shell's
/// default; raising the hard limit needs root). Returns when it is high
/// enough or cannot be raised.
pub fn raise_nofile(want: u64) -> Result<()> {
    if std::env::var_os(RAISED).is_some() || soft_nofile().is_some_and(|n| n >= want) {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let error = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {want} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" \"$@\""
        ))
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(RAISED, "1")
        .exec();
    Err(anyhow!("cannot re-run under a higher ulimit -n: {error}"))
}

/// This process's soft descriptor limit, from `/proc/self/limits`.
fn soft_nofile() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
