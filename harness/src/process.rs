//! One `meridian serve` process on a config file and data dir that outlive
//! it: spawn, the ready line, SIGTERM, kill -9, restart, and its log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::HarnessError;

/// How many log lines an error about a process quotes.
pub const LOG_TAIL_LINES: usize = 40;

/// What the node printed on its ready line
/// (`meridian ready: api=http://H:P admin=http://H:P region=R`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The data plane.
    pub api: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

impl Ready {
    /// Parses a ready line; `None` for anything else.
    pub fn parse(line: &str) -> Option<Ready> {
        if !line.starts_with("meridian ready") {
            return None;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.trim_start_matches("http://"))
                .and_then(|v| v.parse().ok())
        };
        Some(Ready {
            api: field("api=")?,
            admin: field("admin=")?,
        })
    }
}

/// How to run a node: the binary, its config file, where its stderr goes,
/// and its environment.
#[derive(Debug, Clone)]
pub struct NodeCommand {
    /// The `meridian` binary.
    pub bin: PathBuf,
    /// `--config`.
    pub config: PathBuf,
    /// Its stderr, appended to by every run.
    pub log: PathBuf,
    /// `RUST_LOG`.
    pub log_level: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Variables of this process's environment the node must not inherit.
    pub env_remove: Vec<String>,
    /// Runs it in a process group of its own, so that a Ctrl-C at the
    /// terminal reaches only the launcher, which then stops it.
    pub own_group: bool,
}

impl NodeCommand {
    /// `bin serve --config config`, stderr to `log`, `RUST_LOG=info`.
    pub fn new(bin: &Path, config: &Path, log: &Path) -> Self {
        Self {
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            log_level: "info".to_owned(),
            env: Vec::new(),
            env_remove: Vec::new(),
            own_group: false,
        }
    }

    /// Spawns it (killed if the handle is dropped); stdout is piped for the
    /// ready line.
    pub fn spawn(&self) -> Result<Child, HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io(format!("open {}", self.log.display()), e))?;
        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", &self.log_level);
        for name in &self.env_remove {
            command.env_remove(name);
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if self.own_group {
            command.process_group(0);
        }
        command
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawn {}", self.bin.display()), e))
    }
}

/// A node that can be stopped and started again on the same config, data
/// dir and log. Killed when dropped.
pub struct NodeProcess {
    /// How it is run.
    pub command: NodeCommand,
    /// Its addresses while it runs.
    pub ready: Option<Ready>,
    child: Option<Child>,
    /// Kept open after the ready line, so the node never writes to a
    /// closed pipe.
    stdout: Option<BufReader<ChildStdout>>,
}

impl NodeProcess {
    /// A node not started yet.
    pub fn new(command: NodeCommand) -> Self {
        Self {
            command,
            ready: None,
            child: None,
            stdout: None,
        }
    }

    /// Whether its process runs.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Spawns the process (not waiting for it); an error if it runs.
    pub fn spawn(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Err(HarnessError::State(format!(
                "{} is already running",
                self.command.config.display()
            )));
        }
        self.child = Some(self.command.spawn()?);
        self.ready = None;
        Ok(())
    }

    /// Waits up to `limit` for the ready line of the spawned process. The
    /// process is kept running (and counted up) even when it fails.
    pub async fn await_ready(&mut self, limit: Duration) -> Result<Ready, HarnessError> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| HarnessError::State("the node is not running".to_owned()))?;
        let mut reader = child.stdout.take().map(BufReader::new);
        let mut line = None;
        if let Some(reader) = reader.as_mut() {
            let mut text = String::new();
            let read = tokio::time::timeout(limit, reader.read_line(&mut text)).await;
            line = matches!(read, Ok(Ok(n)) if n > 0).then_some(text);
        }
        self.stdout = reader;
        match line.as_deref().and_then(Ready::parse) {
            Some(ready) => {
                self.ready = Some(ready);
                Ok(ready)
            }
            None => Err(HarnessError::NotReady {
                name: self.command.config.display().to_string(),
                detail: match line {
                    Some(line) => format!("its first line was {line:?}"),
                    None => format!("no ready line within {limit:?}"),
                },
                log: self.log_tail(LOG_TAIL_LINES),
            }),
        }
    }

    /// Spawns it and waits for its ready line.
    pub async fn start(&mut self, limit: Duration) -> Result<Ready, HarnessError> {
        self.spawn()?;
        self.await_ready(limit).await
    }

    /// SIGKILLs it and reaps it.
    pub async fn kill(&mut self) -> Result<ExitStatus, HarnessError> {
        let mut child = self.take()?;
        child
            .start_kill()
            .map_err(|e| HarnessError::io("kill -9", e))?;
        child.wait().await.map_err(|e| HarnessError::io("wait", e))
    }

    /// SIGTERMs it and waits up to `grace` for it to exit; a process still
    /// running then is SIGKILLed. Returns its exit status and whether it
    /// exited by itself.
    pub async fn terminate(&mut self, grace: Duration) -> Result<(ExitStatus, bool), HarnessError> {
        let mut child = self.take()?;
        terminate(&mut child, grace).await
    }

    /// Waits up to `limit` for it to exit by itself and reaps it; `None`
    /// (still running) when it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>, HarnessError> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| HarnessError::State("the node is not running".to_owned()))?;
        match tokio::time::timeout(limit, child.wait()).await {
            Err(_) => Ok(None),
            Ok(status) => {
                let status = status.map_err(|e| HarnessError::io("wait", e))?;
                self.child = None;
                self.ready = None;
                self.stdout = None;
                Ok(Some(status))
            }
        }
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.command.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.command.log, lines)
    }

    fn take(&mut self) -> Result<Child, HarnessError> {
        self.ready = None;
        self.stdout = None;
        self.child
            .take()
            .ok_or_else(|| HarnessError::State("the node is not running".to_owned()))
    }
}

/// Reads one line of a child's stdout within `limit`; `None` on timeout or
/// end of file. Stdout is closed afterwards (nothing more comes on it).
pub async fn read_line(child: &mut Child, limit: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let mut line = String::new();
    let read = tokio::time::timeout(limit, BufReader::new(stdout).read_line(&mut line)).await;
    matches!(read, Ok(Ok(n)) if n > 0).then_some(line)
}

/// SIGTERMs `child` and waits up to `grace` for it to exit; a process
/// still running then is SIGKILLed. Returns its exit status and whether it
/// exited by itself. For a process the caller spawned itself; a
/// [`NodeProcess`] has its own [`NodeProcess::terminate`].
pub async fn terminate(
    child: &mut Child,
    grace: Duration,
) -> Result<(ExitStatus, bool), HarnessError> {
    if let Some(pid) = child.id() {
        signal(pid, "TERM").await?;
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => Ok((status.map_err(|e| HarnessError::io("wait", e))?, true)),
        Err(_) => {
            let _ = child.start_kill();
            let status = child
                .wait()
                .await
                .map_err(|e| HarnessError::io("wait", e))?;
            Ok((status, false))
        }
    }
}

/// `kill -SIG PID` (std has SIGKILL only, and unsafe is forbidden).
pub async fn signal(pid: u32, name: &str) -> Result<(), HarnessError> {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .await
        .map_err(|e| HarnessError::io("kill", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(HarnessError::State(format!("kill -{name} {pid} failed")))
    }
}

/// The last `lines` lines of a file ("" when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_ready_line_gives_both_addresses() {
        let ready = Ready::parse(
            "meridian ready: api=http://127.0.0.1:4000 admin=http://127.0.0.1:4001 region=r1\n",
        )
        .unwrap();
        assert_eq!(ready.api, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(ready.admin, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(Ready::parse("error: bad config"), None);
        assert_eq!(
            Ready::parse("meridian ready: api=http://127.0.0.1:4000"),
            None
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert_eq!(tail(&dir.path().join("none"), 3), "");
    }
}
