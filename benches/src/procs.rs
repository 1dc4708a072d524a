//! The processes under test: started from built binaries in a temp dir, on
//! loopback ports, and killed (with their children) however the run ends.

use std::fs::OpenOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use http::{Method, StatusCode};
use load::{Generator, RequestKind, RequestSpec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::configs::{self, MeridianPorts};
use crate::cores;

/// How long a process gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Launches tried on fresh ports before giving up (a port picked free can be
/// taken by someone else before the process binds it).
const LAUNCH_ATTEMPTS: u32 = 3;
/// How long a process gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Lines of a process's log shown when it fails.
const LOG_TAIL_LINES: usize = 20;

/// A private temp dir for configs, logs and data, removed on drop.
pub struct Workdir {
    path: PathBuf,
}

impl Workdir {
    /// Creates `$TMPDIR/meridian-bench-<pid>-<nanos>`.
    pub fn create() -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("meridian-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// The dir.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process in its own process group. Dropping it stops the whole
/// group, so nginx's workers go with their master; and a Ctrl-C in the
/// terminal reaches only the bench, which then cleans up.
pub struct Proc {
    name: &'static str,
    child: Child,
    group: Option<u32>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stderr (and stdout, unless the
    /// caller piped it) appended to `log`.
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: PathBuf,
        pipe_stdout: bool,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(file))
            .process_group(0)
            .kill_on_drop(true);
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({program})"))?;
        let group = child.id();
        Ok(Self {
            name,
            child,
            group,
            log,
        })
    }

    /// Its process group (its own pid), while it runs.
    pub fn group(&self) -> Option<u32> {
        self.group
    }

    /// Fails if the process has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "{} exited ({status}); end of its log:\n{}",
                self.name,
                self.log_tail()
            )),
        }
    }

    fn log_tail(&self) -> String {
        harness::process::tail(&self.log, LOG_TAIL_LINES)
    }
}

impl Drop for Proc {
    /// Asks the whole group to stop (nginx's master then reaps its workers),
    /// waits a moment, then kills whatever is left.
    fn drop(&mut self) {
        let Some(group) = self.group else {
            return;
        };
        signal_group(group, "TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        signal_group(group, "KILL");
    }
}

/// Sends `signal` to every process of `group`, ignoring failures (the group
/// may be gone already).
fn signal_group(group: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{group}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every process of the run; checked between measurements so a crash is
/// reported as a crash, not as a wall of connection errors.
#[derive(Default)]
pub struct Processes(Vec<Proc>);

impl Processes {
    /// Adds a process.
    pub fn push(&mut self, proc: Proc) {
        self.0.push(proc);
    }

    /// Fails if any process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.0.iter_mut().try_for_each(Proc::check_alive)
    }
}

/// Where the mock listens, as it prints on start.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct MockAddrs {
    /// OpenAI-compatible data endpoints.
    pub api: SocketAddr,
    /// `/_mock/...` control endpoints.
    pub control: SocketAddr,
}

/// Starts `meridian-mock` on ephemeral ports and reads where it listens.
pub async fn start_mock(bin: &Path, dir: &Path, cpus: Option<&str>) -> Result<(Proc, MockAddrs)> {
    let mut cmd = cores::command(&find_program(bin)?, cpus);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--seed",
        "1",
    ])
    .env("RUST_LOG", "warn");
    let mut proc = Proc::spawn("meridian-mock", cmd, dir.join("mock.log"), true)?;
    let stdout = proc.child.stdout.take().context("mock stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
    let Ok(Ok(Some(line))) = first else {
        proc.check_alive()?;
        bail!("meridian-mock printed no address line within {READY_TIMEOUT:?}");
    };
    let addrs: MockAddrs = serde_json::from_str(&line)
        .with_context(|| format!("meridian-mock's first line is not its addresses: {line}"))?;
    // Keep reading so the mock never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((proc, addrs))
}

/// Sets the mock's behaviour: no delays, `chunks` chunks per stream.
pub async fn configure_mock(generator: &Generator, control: SocketAddr, chunks: u32) -> Result<()> {
    let behavior = serde_json::json!({
        "first_byte": {"fixed_ms": 0},
        "chunk_delay": {"fixed_ms": 0},
        "chunks": chunks,
    });
    let url = format!("http://{control}/_mock/behavior");
    let spec = RequestSpec::json(Method::PUT, &url, behavior.to_string(), RequestKind::Plain)?;
    let (status, body) = generator.fetch(&spec, Duration::from_secs(5)).await?;
    if !status.is_success() {
        bail!("PUT {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Starts `meridian serve` with a generated config; returns its data-plane address.
pub async fn start_meridian(
    bin: &Path,
    dir: &Path,
    mock: SocketAddr,
    workers: usize,
    cpus: Option<&str>,
    generator: &Generator,
) -> Result<(Proc, SocketAddr)> {
    let bin = find_program(bin)?;
    let config = dir.join("meridian.toml");
    let spawn = || {
        let ports = MeridianPorts {
            api: free_tcp_port()?,
            admin: free_tcp_port()?,
            raft: free_udp_port()?,
        };
        harness::config::write(
            &config,
            &configs::meridian_config(dir, ports, mock, workers),
        )?;
        let mut cmd = cores::command(&bin, cpus);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn");
        let proc = Proc::spawn("meridian", cmd, dir.join("meridian.log"), false)?;
        Ok((proc, ports))
    };
    let ready = |ports: MeridianPorts| async move {
        let url = format!("http://127.0.0.1:{}/readyz", ports.admin);
        let Ok(spec) = RequestSpec::new(Method::GET, &url, RequestKind::Plain) else {
            return false;
        };
        let answer = generator.fetch(&spec, Duration::from_secs(1)).await;
        matches!(answer, Ok((StatusCode::OK, _)))
    };
    let (proc, ports) = launch(spawn, ready).await?;
    Ok((proc, SocketAddr::from(([127, 0, 0, 1], ports.api))))
}

/// What `nginx -V` says about the build (its version is the first line).
pub fn nginx_build_info(bin: &Path) -> Result<String> {
    let output = std::process::Command::new(find_program(bin)?)
        .arg("-V")
        .output()
        .context("running nginx -V")?;
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Starts nginx proxying to the mock; returns its address.
pub async fn start_nginx(
    bin: &Path,
    dir: &Path,
    mock: SocketAddr,
    build_info: &str,
    cpus: Option<&str>,
    workers: Option<usize>,
) -> Result<(Proc, SocketAddr)> {
    let bin = find_program(bin)?;
    let config = dir.join("nginx.conf");
    let error_log = dir.join("nginx-error.log");
    let spawn = || {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()?));
        std::fs::write(
            &config,
            configs::nginx_conf(dir, addr.port(), mock, build_info, workers),
        )?;
        let mut cmd = cores::command(&bin, cpus);
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(&error_log);
        let proc = Proc::spawn("nginx", cmd, error_log.clone(), false)?;
        Ok((proc, addr))
    };
    let ready = |addr: SocketAddr| async move { TcpStream::connect(addr).await.is_ok() };
    launch(spawn, ready).await
}

/// Spawns a server and waits until `ready` says yes; when it exits first
/// (most likely a port race), tries again on fresh ports.
async fn launch<T, Fut>(
    mut spawn: impl FnMut() -> Result<(Proc, T)>,
    mut ready: impl FnMut(T) -> Fut,
) -> Result<(Proc, T)>
where
    T: Copy,
    Fut: Future<Output = bool>,
{
    let mut attempt = 1;
    'launch: loop {
        let (mut proc, addrs) = spawn()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready(addrs).await {
                return Ok((proc, addrs));
            }
            if let Err(exited) = proc.check_alive() {
                if attempt == LAUNCH_ATTEMPTS {
                    return Err(exited);
                }
                attempt += 1;
                continue 'launch;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {READY_TIMEOUT:?}; end of its log:\n{}",
                    proc.name,
                    proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn free_tcp_port() -> Result<u16> {
    Ok(harness::ports::free_tcp()?.port())
}

fn free_udp_port() -> Result<u16> {
    Ok(harness::ports::free_udp()?.port())
}

/// Resolves a program: a path is checked as is; a bare name is looked up on
/// `PATH` and then in the sbin dirs, where nginx lives but which a normal
/// user's `PATH` often lacks.
fn find_program(bin: &Path) -> Result<PathBuf> {
    if bin.components().count() > 1 {
        if bin.is_file() {
            return Ok(bin.to_path_buf());
        }
        bail!(
            "{} not found; build it first: cargo build --release -p meridian -p meridian-mock -p meridian-benches",
            bin.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(bin))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow!("{} not found on PATH", bin.display()))
}
