//! The demo's child processes: the fake providers (`meridian-mock`) and the
//! three `meridian serve` nodes, each in its own process group so a Ctrl-C
//! at the terminal reaches only the demo, which then stops them all. They
//! are started through `meridian-harness`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::mocks::MockProcess;
use harness::process::{NodeCommand, NodeProcess};
use serde_json::Value;

use super::DemoError;

/// A running fake provider.
pub struct MockProc {
    /// The upstream id the nodes know it by.
    pub name: &'static str,
    /// Its data plane, `host:port`.
    pub api: String,
    /// Its control plane, `host:port`.
    pub control: String,
    process: MockProcess,
}

impl MockProc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
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
    process: Option<NodeProcess>,
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
            process: None,
        }
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(NodeProcess::pid)
    }

    /// Starts `meridian serve` (this same executable) on its config; the
    /// ready line is read by [`NodeProc::await_ready`].
    pub fn spawn(&mut self, exe: &Path) -> Result<u32, DemoError> {
        let process = self.process.get_or_insert_with(|| {
            let mut command = NodeCommand::new(exe, &self.config, &self.log);
            command.env_remove = vec![
                "MERIDIAN_ADMIN_TOKEN".to_owned(),
                "MERIDIAN_LOG_FORMAT".to_owned(),
            ];
            command.own_group = true;
            NodeProcess::new(command)
        });
        process
            .spawn()
            .map_err(|e| DemoError::Start(format!("cannot run {}: {e}", exe.display())))?;
        Ok(process.pid().unwrap_or(0))
    }

    /// Waits for the ready line (`meridian ready: api=http://… admin=http://…`).
    pub async fn await_ready(&mut self, limit: Duration) -> Result<(), DemoError> {
        let Some(process) = self.process.as_mut().filter(|p| p.is_up()) else {
            return Err(DemoError::Start(format!(
                "node n{} is not running",
                self.id
            )));
        };
        let ready = process.await_ready(limit).await.map_err(|_| {
            DemoError::Start(format!(
                "node n{} did not get ready within {} s; the end of its log ({}):\n{}",
                self.id,
                limit.as_secs(),
                self.log.display(),
                tail(&self.log, 15)
            ))
        })?;
        self.api = Some(ready.api.to_string());
        self.admin = Some(ready.admin.to_string());
        Ok(())
    }

    /// SIGKILLs the node (`kill -9`) and reaps it.
    pub async fn kill(&mut self) {
        self.api = None;
        self.admin = None;
        if let Some(process) = self.process.as_mut().filter(|p| p.is_up()) {
            let _ = tokio::time::timeout(Duration::from_secs(5), process.kill()).await;
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
    let args = [
        "--threads".to_owned(),
        "1".to_owned(),
        "--seed".to_owned(),
        seed.to_string(),
        "--behavior".to_owned(),
        behavior.to_string(),
    ];
    let process = MockProcess::start(bin, &args, Some(log), true, Duration::from_secs(10))
        .await
        .map_err(|_| {
            DemoError::Start(format!(
                "the fake provider {} did not start: {}",
                bin.display(),
                tail(log, 5)
            ))
        })?;
    Ok(MockProc {
        name,
        api: process.api.to_string(),
        control: process.control.to_string(),
        process,
    })
}

/// Stops a fake provider and reaps it.
pub async fn stop_mock(mock: MockProc) {
    mock.process.kill().await;
}

/// A free loopback UDP port for Raft (bound, then released: the nodes must
/// list each other's ports before any of them starts).
pub fn free_udp_port() -> Result<u16, DemoError> {
    harness::ports::free_udp()
        .map(|a| a.port())
        .map_err(|e| DemoError::Start(format!("no free UDP port on 127.0.0.1: {e}")))
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    harness::process::tail(path, n)
}
