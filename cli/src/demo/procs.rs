//! The demo's child processes: the fake providers (`meridian-mock`) and the
//! three `meridian serve` nodes, each in its own process group so a Ctrl-C
//! at the terminal reaches only the demo, which then stops them all.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::DemoError;

/// A running fake provider.
pub struct MockProc {
    /// The upstream id the nodes know it by.
    pub name: &'static str,
    /// Its data plane, `host:port`.
    pub api: String,
    /// Its control plane, `host:port`.
    pub control: String,
    child: Child,
}

impl MockProc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

/// One node of the demo cluster; `api` and `admin` are set while it runs.
pub struct NodeProc {
    /// Raft id, 1-based.
    pub id: u64,
    /// Its region.
    pub region: &'static str,
    /// Its Raft port (UDP), fixed for the cluster's life.
    pub raft_port: u16,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    /// The data plane, `host:port`, while it runs.
    pub api: Option<String>,
    /// The admin listener, `host:port`, while it runs.
    pub admin: Option<String>,
    child: Option<Child>,
    /// Kept open so the node never writes to a closed pipe.
    stdout: Option<BufReader<ChildStdout>>,
}

impl NodeProc {
    /// A node not started yet.
    pub fn new(id: u64, region: &'static str, raft_port: u16, dir: &Path) -> Self {
        Self {
            id,
            region,
            raft_port,
            config: dir.join(format!("n{id}.toml")),
            log: dir.join(format!("n{id}.log")),
            api: None,
            admin: None,
            child: None,
            stdout: None,
        }
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts `meridian serve` (this same executable) on its config; the
    /// ready line is read by [`NodeProc::await_ready`].
    pub fn spawn(&mut self, exe: &Path) -> Result<u32, DemoError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| DemoError::Start(format!("cannot open {}: {e}", self.log.display())))?;
        let child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env_remove("MERIDIAN_ADMIN_TOKEN")
            .env_remove("MERIDIAN_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DemoError::Start(format!("cannot run {}: {e}", exe.display())))?;
        let pid = child.id().unwrap_or(0);
        self.child = Some(child);
        Ok(pid)
    }

    /// Waits for the ready line (`meridian ready: api=http://… admin=http://…`).
    pub async fn await_ready(&mut self, limit: Duration) -> Result<(), DemoError> {
        let stdout = self.child.as_mut().and_then(|c| c.stdout.take());
        let Some(stdout) = stdout else {
            return Err(DemoError::Start(format!(
                "node n{} is not running",
                self.id
            )));
        };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(limit, reader.read_line(&mut line)).await;
        self.stdout = Some(reader);
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return Err(DemoError::Start(format!(
                "node n{} did not get ready within {} s; the end of its log ({}):\n{}",
                self.id,
                limit.as_secs(),
                self.log.display(),
                tail(&self.log, 15)
            )));
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.trim_start_matches("http://").to_owned())
        };
        self.api = field("api=");
        self.admin = field("admin=");
        if self.api.is_none() || self.admin.is_none() {
            return Err(DemoError::Start(format!(
                "node n{} printed an unexpected ready line: {line:?}",
                self.id
            )));
        }
        Ok(())
    }

    /// SIGKILLs the node (`kill -9`) and reaps it.
    pub async fn kill(&mut self) {
        self.api = None;
        self.admin = None;
        self.stdout = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

/// Starts one fake provider with `behavior` and reads the addresses it prints.
pub async fn spawn_mock(
    bin: &Path,
    name: &'static str,
    seed: u64,
    behavior: &Value,
    log: &Path,
) -> Result<MockProc, DemoError> {
    let log_file = std::fs::File::create(log)
        .map_err(|e| DemoError::Start(format!("cannot create {}: {e}", log.display())))?;
    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--threads",
            "1",
        ])
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--behavior")
        .arg(behavior.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DemoError::Start(format!("cannot run {}: {e}", bin.display())))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
    }
    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    match (v["api"].as_str(), v["control"].as_str()) {
        (Some(api), Some(control)) => Ok(MockProc {
            name,
            api: api.to_owned(),
            control: control.to_owned(),
            child,
        }),
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(DemoError::Start(format!(
                "the fake provider {} did not start: {}",
                bin.display(),
                tail(log, 5)
            )))
        }
    }
}

/// Stops a fake provider and reaps it.
pub async fn stop_mock(mut mock: MockProc) {
    let _ = mock.child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), mock.child.wait()).await;
}

/// A free loopback UDP port for Raft (bound, then released: the nodes must
/// list each other's ports before any of them starts).
pub fn free_udp_port() -> Result<u16, DemoError> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| DemoError::Start(format!("no free UDP port on 127.0.0.1: {e}")))
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
