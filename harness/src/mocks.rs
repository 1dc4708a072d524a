//! `meridian-mock` as a separate process, for where the provider must be a
//! process of its own (the chaos suite, which kills and isolates it, and the
//! benchmarks, which keep its CPU apart). Tests that only need a provider
//! start one in-process with [`mock::spawn`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::HarnessError;
use crate::process::read_line;

/// A running `meridian-mock` process, killed when dropped.
pub struct MockProcess {
    /// The data plane.
    pub api: SocketAddr,
    /// The control plane.
    pub control: SocketAddr,
    /// Whether the data plane speaks TLS.
    pub tls: bool,
    /// The process.
    pub child: Child,
}

/// The address line the mock prints first.
#[derive(serde::Deserialize)]
struct AddressLine {
    api: SocketAddr,
    control: SocketAddr,
    #[serde(default)]
    tls: bool,
}

impl MockProcess {
    /// Runs `bin` with `args` (the flags of `meridian-mock`, listeners on
    /// port 0 unless `args` say otherwise), stderr to `log` (or discarded),
    /// in a process group of its own when `own_group` (see
    /// [`crate::process::NodeCommand::own_group`]), and reads its address
    /// line within `limit`.
    pub async fn start(
        bin: &Path,
        args: &[String],
        log: Option<&Path>,
        own_group: bool,
        limit: Duration,
    ) -> Result<MockProcess, HarnessError> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .map_err(|e| HarnessError::io(format!("create {}", path.display()), e))?,
            ),
            None => Stdio::null(),
        };
        let mut command = Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        if own_group {
            command.process_group(0);
        }
        let mut child = command
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawn {}", bin.display()), e))?;
        let line = read_line(&mut child, limit).await.unwrap_or_default();
        let addrs: AddressLine = match serde_json::from_str(&line) {
            Ok(addrs) => addrs,
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(HarnessError::NotReady {
                    name: bin.display().to_string(),
                    detail: format!("it said {line:?} ({e})"),
                    log: log.map(|p| crate::process::tail(p, 20)).unwrap_or_default(),
                });
            }
        };
        Ok(MockProcess {
            api: addrs.api,
            control: addrs.control,
            tls: addrs.tls,
            child,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILLs it and reaps it (within 5 s).
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// The OpenAI base URL (`http://ADDR/v1`, or `https://` with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/v1", self.api)
    }
}
