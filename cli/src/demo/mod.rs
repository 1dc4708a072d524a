//! `meridian demo`: one command that shows what Meridian does. It starts a
//! local cluster of three regions (three `meridian serve` processes of this
//! same executable, certificates made in-process, everything in a temporary
//! directory), three fake providers (`meridian-mock`, found next to this
//! executable) and live traffic, then plays a short script: a provider
//! browns out and recovers, the leader is killed with `kill -9` and comes
//! back. It redraws a compact view every second (a line per second when
//! stdout is not a terminal), ends with a summary, and stops every child
//! and removes the directory on the way out, Ctrl-C included.

mod procs;
mod script;
mod traffic;
mod view;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::api::admin::{ClusterView, HealthAnswer, Role};

pub use view::Summary;

/// The regions of the demo cluster, one node each (node `i + 1` serves region `i`).
pub const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];
/// The fake providers, all in the one tier of the route `fast`.
pub const UPSTREAMS: [&str; 3] = ["alpha", "bravo", "charlie"];

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The script's length in seconds (about 70 by default, 28 with `--quick`).
    pub duration_s: u64,
    /// Requests per second per region.
    pub rate: f64,
    /// The `meridian-mock` binary; by default the one next to this executable.
    pub mock: Option<PathBuf>,
    /// Redraw in place (a terminal) or print a line per second.
    pub redraw: bool,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The fake provider binary is missing.
    #[error(
        "the demo needs the fake provider `meridian-mock`, which is not at {0}.\n\
         Build both binaries, then run the demo:\n\n    \
         cargo build --release -p meridian -p meridian-chaos && target/release/meridian demo\n\n\
         (or point --mock or MERIDIAN_MOCK_BIN at a meridian-mock binary)"
    )]
    MockMissing(PathBuf),
    /// A process or file could not be set up.
    #[error("{0}")]
    Start(String),
}

/// State shared by the script, the traffic generators, the poller and the view.
pub struct Shared {
    start: Instant,
    targets: Mutex<Vec<Option<String>>>,
    admins: Mutex<Vec<Option<String>>>,
    records: Mutex<Vec<traffic::Record>>,
    board: Mutex<Board>,
    log: Mutex<Log>,
    events: Mutex<Events>,
    /// Requests sent and not answered yet.
    pub in_flight: AtomicUsize,
    /// Set when the generators must stop sending.
    pub stopping: AtomicBool,
}

/// The nodes' latest admin answers.
#[derive(Default)]
struct Board {
    health: Vec<Option<HealthAnswer>>,
    cluster: Vec<Option<ClusterView>>,
}

/// The script's progress, for the view.
#[derive(Default)]
struct Log {
    step: String,
    lines: Vec<(Duration, String)>,
}

/// What happened and when, for the summary.
#[derive(Default, Clone)]
pub struct Events {
    /// The browned-out upstream (index) and when.
    pub brownout: Option<(usize, Duration)>,
    /// When it recovered.
    pub recovered: Option<Duration>,
    /// The killed node (index), whether it led, and when.
    pub killed: Option<(usize, bool, Duration)>,
    /// The new leader's id and how long after the kill it was seen.
    pub new_leader: Option<(u64, Duration)>,
    /// When the killed node was started again.
    pub restarted: Option<Duration>,
    /// How long after its restart it served again.
    pub ready_after: Option<Duration>,
    /// How long after its restart its lag reached 0.
    pub caught_up_after: Option<Duration>,
    /// Whether Ctrl-C cut the script short.
    pub interrupted: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            targets: Mutex::new(vec![None; REGIONS.len()]),
            admins: Mutex::new(vec![None; REGIONS.len()]),
            records: Mutex::new(Vec::new()),
            board: Mutex::new(Board {
                health: vec![None; REGIONS.len()],
                cluster: vec![None; REGIONS.len()],
            }),
            log: Mutex::new(Log::default()),
            events: Mutex::new(Events::default()),
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Time since the demo started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Where a region's clients send: their own node, or while it is down
    /// the next live one (as GeoDNS health checks would).
    pub fn target(&self, region: usize) -> Option<(usize, String)> {
        let targets = lock(&self.targets);
        (0..targets.len())
            .map(|k| (region + k) % targets.len())
            .find_map(|i| targets[i].clone().map(|api| (i, api)))
    }

    fn set_node(&self, node: usize, api: Option<String>, admin: Option<String>) {
        lock(&self.targets)[node] = api;
        lock(&self.admins)[node] = admin.clone();
        if admin.is_none() {
            let mut board = lock(&self.board);
            board.health[node] = None;
            board.cluster[node] = None;
        }
    }

    fn admin(&self, node: usize) -> Option<String> {
        lock(&self.admins).get(node).cloned().flatten()
    }

    /// An upstream's index from its id.
    pub fn upstream_index(&self, id: &str) -> Option<usize> {
        UPSTREAMS.iter().position(|u| *u == id)
    }

    /// Adds a finished request.
    pub fn push(&self, record: traffic::Record) {
        lock(&self.records).push(record);
    }

    fn records(&self) -> Vec<traffic::Record> {
        lock(&self.records).clone()
    }

    fn say(&self, line: String) {
        lock(&self.log).lines.push((self.elapsed(), line));
    }

    fn step(&self, step: String) {
        let mut log = lock(&self.log);
        log.lines.push((self.start.elapsed(), step.clone()));
        log.step = step;
    }

    fn events(&self) -> Events {
        lock(&self.events).clone()
    }

    fn event(&self, f: impl FnOnce(&mut Events)) {
        f(&mut lock(&self.events));
    }

    /// The leader as the live nodes last reported it; `None` while the one
    /// they name is down (they still name it until they elect another).
    fn leader(&self) -> Option<u64> {
        let board = lock(&self.board);
        let leader = board
            .cluster
            .iter()
            .flatten()
            .find(|c| c.role == Role::Leader)
            .or_else(|| board.cluster.iter().flatten().next())
            .and_then(|c| c.leader)?;
        drop(board);
        let index = usize::try_from(leader).ok()?.checked_sub(1)?;
        self.admin(index).map(|_| leader)
    }
}

/// The `meridian-mock` binary to use.
fn mock_path(options: &DemoOptions) -> Result<PathBuf, DemoError> {
    let path = match &options.mock {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("meridian-mock")))
            .unwrap_or_else(|| PathBuf::from("meridian-mock")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(DemoError::MockMissing(path))
    }
}

/// Runs the demo; returns its summary. Every child is stopped and the
/// temporary directory removed before this returns, whatever happened.
pub async fn run(options: DemoOptions) -> Result<Summary, DemoError> {
    let mock = mock_path(&options)?;
    let exe = std::env::current_exe()
        .map_err(|e| DemoError::Start(format!("cannot find this executable: {e}")))?;
    let dir = tempfile::Builder::new()
        .prefix("meridian-demo-")
        .tempdir()
        .map_err(|e| DemoError::Start(format!("cannot create a temporary directory: {e}")))?;
    let shared = Arc::new(Shared::new());
    let mut procs = script::Procs::default();
    let result = script::run(&options, &exe, &mock, dir.path(), &shared, &mut procs).await;
    shared.stopping.store(true, Ordering::Relaxed);
    procs.stop_all(&shared).await;
    let dir_name = dir.path().display().to_string();
    drop(dir);
    let mut events = shared.events();
    events.interrupted = matches!(result, Ok(script::End::Interrupted));
    result?;
    Ok(view::summary(&shared.records(), &events, &dir_name))
}
