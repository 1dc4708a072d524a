//! `meridian`: the node and its operator CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use meridian::defaults::{self, DEFAULT_TOML};
use meridian::node::{Node, StartError};
use meridian::routing::ProcessEnv;
use proto::Config;

/// jemalloc, with its background threads on, instead of glibc's malloc:
/// after 10,000 concurrent streams glibc kept the freed memory (RSS 20 MB →
/// 350 MB, growing with each identical round); jemalloc hands it back to
/// the OS within its decay time (about 10 s). See `benches/README.md`,
/// "Connections and memory".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "meridian", version, about = "A self-hosted router for AI APIs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        /// The node's TOML configuration; without it, the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, env = "MERIDIAN_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Check or print configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create the cluster CA (once) and node certificates in a directory.
    ///
    /// Each certificate names its node id (a `meridian:node:ID` URI SAN), and
    /// peers refuse a node presenting a certificate of another id.
    Certs {
        /// Where the certificates go; an existing ca.pem/ca.key there is reused.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Nodes, as `n<ID>` (n4 is node 4) or `NAME=ID` (us-east=4): writes
        /// NAME.pem and NAME.key for each, naming node ID.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
        /// Addresses and DNS names peers use to reach the nodes (default 127.0.0.1, localhost).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// List, add or remove cluster members through a node's admin API.
    Members {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Show the cluster (members, leader, term, lag) and the health board of any node.
    Status {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// List, show, put or delete routes (what clients send as "model").
    Routes {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// List, show, put or delete upstreams (the providers).
    Upstreams {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: UpstreamsCommand,
    },
    /// List, put or delete client keys (keys are never printed or taken from argv).
    Keys {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Start a local 3-region cluster with fake providers and live traffic, and watch
    /// a brownout and a node failure as they happen; leaves nothing running.
    Demo {
        /// A short run (about 30 s of script).
        #[arg(long, conflicts_with = "duration")]
        quick: bool,
        /// The script's length in seconds (at least 20).
        #[arg(long, default_value_t = 70)]
        duration: u64,
        /// Requests per second per region (half of them streamed).
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// The meridian-mock binary (default: next to this executable).
        #[arg(long, env = "MERIDIAN_MOCK_BIN")]
        mock: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Every route, one line each.
    List,
    /// One route.
    Get {
        /// Its model name (may contain `/`).
        model: String,
    },
    /// Create or replace a route: the body (JSON or TOML, as in the config file) from
    /// --file or stdin, or tiers as flags.
    Put {
        /// Its model name.
        model: String,
        /// The route's body; without it and without --tier, stdin.
        #[arg(long, short, conflicts_with = "tier")]
        file: Option<PathBuf>,
        /// A tier, as UPSTREAM:MODEL[,UPSTREAM:MODEL…]; repeat for fallback tiers.
        #[arg(long)]
        tier: Vec<String>,
    },
    /// Delete a route.
    Delete {
        /// Its model name.
        model: String,
    },
}

#[derive(Subcommand)]
enum UpstreamsCommand {
    /// Every upstream, one line each.
    List,
    /// One upstream.
    Get {
        /// Its id.
        id: String,
    },
    /// Create or replace an upstream: the body (JSON or TOML) from --file or stdin.
    Put {
        /// Its id.
        id: String,
        /// The upstream's body; without it, stdin.
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Delete an upstream (refused while a route uses it).
    Delete {
        /// Its id.
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// The names of every client key.
    List,
    /// Whether a key of this name exists.
    Get {
        /// Its name.
        name: String,
    },
    /// Add or replace a client key: read from --key-env VAR, else from stdin.
    Put {
        /// Its name (appears in logs instead of the key).
        name: String,
        /// The environment variable holding the key.
        #[arg(long)]
        key_env: Option<String>,
    },
    /// Delete a client key.
    Delete {
        /// Its name.
        name: String,
    },
}

#[derive(clap::Args)]
struct AdminTarget {
    /// The admin API of any node.
    #[arg(
        long,
        global = true,
        env = "MERIDIAN_ADMIN",
        default_value = "http://127.0.0.1:9080"
    )]
    admin: String,
    /// Environment variable holding the admin token.
    #[arg(long, global = true, default_value = "MERIDIAN_ADMIN_TOKEN")]
    token_env: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Show the cluster: leader, term, and every member's role and lag.
    List,
    /// Add a node: as a learner, then promoted to voter unless --learner.
    Add {
        /// The new node's id (never reused).
        id: u64,
        /// Its Raft address, host:port.
        raft_addr: String,
        /// Keep it a learner (it receives the log and serves, but does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// Its id.
        id: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; exits 64 naming the field when it is not valid.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the embedded default configuration, to start a file from.
    Default,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{DEFAULT_TOML}");
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match load(&file) {
            Ok(config) => {
                println!(
                    "{}: valid ({} upstreams, {} routes, {} client keys)",
                    file.display(),
                    config.upstreams.len(),
                    config.routes.len(),
                    config.keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(message) => config_error(&message),
        },
        Command::Serve { config, log_format } => serve(config.as_deref(), log_format),
        Command::Certs { dir, nodes, sans } => {
            match meridian::cli::certs::new_certs(&dir, &nodes, &sans) {
                Ok(written) => {
                    for file in written {
                        println!("wrote {file}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e @ raft::certs::CertError::NoId(_)) => {
                    eprintln!("meridian: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(e) => {
                    eprintln!("meridian: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Members { target, command } => members(target, command),
        Command::Status { target } => admin(&target, |client| async move {
            meridian::cli::status::status(&client).await
        }),
        Command::Routes { target, command } => routes(&target, command),
        Command::Upstreams { target, command } => upstreams(&target, command),
        Command::Keys { target, command } => keys(&target, command),
        Command::Demo {
            quick,
            duration,
            rate,
            mock,
        } => demo(quick, duration, rate, mock),
    }
}

/// Runs one admin command and prints its answer (`--output`), or its error
/// with its exit status (64 input refused, 77 token refused, 1 unreachable).
fn admin<F, Fut>(target: &AdminTarget, command: F) -> ExitCode
where
    F: FnOnce(meridian::cli::admin_client::AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<meridian::cli::Printed, meridian::cli::CliError>>,
{
    use meridian::cli::{CliError, admin_client::AdminClient};
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let client = AdminClient::new(&target.admin, &target.token_env).map_err(CliError::from)?;
        command(client).await
    });
    match result {
        Ok(printed) if target.output == Output::Json => {
            println!("{:#}", printed.json);
            ExitCode::SUCCESS
        }
        Ok(printed) => {
            print!("{}", printed.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meridian: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn routes(target: &AdminTarget, command: RoutesCommand) -> ExitCode {
    use meridian::cli::config_cmds::{self as c, Kind};
    admin(target, |client| async move {
        match command {
            RoutesCommand::List => c::list(&client, Kind::Routes).await,
            RoutesCommand::Get { model } => c::get(&client, Kind::Routes, &model).await,
            RoutesCommand::Put { model, file, tier } => {
                let body = if tier.is_empty() {
                    c::read_body(file.as_deref(), Kind::Routes)?
                } else {
                    c::route_from_flags(&tier)?
                };
                c::put(&client, Kind::Routes, &model, &body).await
            }
            RoutesCommand::Delete { model } => c::delete(&client, Kind::Routes, &model).await,
        }
    })
}

fn upstreams(target: &AdminTarget, command: UpstreamsCommand) -> ExitCode {
    use meridian::cli::config_cmds::{self as c, Kind};
    admin(target, |client| async move {
        match command {
            UpstreamsCommand::List => c::list(&client, Kind::Upstreams).await,
            UpstreamsCommand::Get { id } => c::get(&client, Kind::Upstreams, &id).await,
            UpstreamsCommand::Put { id, file } => {
                let body = c::read_body(file.as_deref(), Kind::Upstreams)?;
                c::put(&client, Kind::Upstreams, &id, &body).await
            }
            UpstreamsCommand::Delete { id } => c::delete(&client, Kind::Upstreams, &id).await,
        }
    })
}

fn keys(target: &AdminTarget, command: KeysCommand) -> ExitCode {
    use meridian::cli::config_cmds::{self as c, Kind};
    admin(target, |client| async move {
        match command {
            KeysCommand::List => c::list(&client, Kind::Keys).await,
            KeysCommand::Get { name } => c::get(&client, Kind::Keys, &name).await,
            KeysCommand::Put { name, key_env } => {
                let body = c::read_key(key_env.as_deref())?;
                c::put(&client, Kind::Keys, &name, &body).await
            }
            KeysCommand::Delete { name } => c::delete(&client, Kind::Keys, &name).await,
        }
    })
}

/// Exit status of a demo stopped by Ctrl-C (128 + SIGINT), as shells expect.
const EXIT_INTERRUPTED: u8 = 130;

fn demo(quick: bool, duration: u64, rate: f64, mock: Option<PathBuf>) -> ExitCode {
    use meridian::cli::demo::{self, DemoOptions};
    let options = DemoOptions {
        duration_s: if quick { 28 } else { duration.max(20) },
        rate: rate.clamp(1.0, 500.0),
        mock,
        redraw: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(demo::run(options)) {
        Ok(summary) => {
            println!("\n{}", summary.text);
            if summary.interrupted {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("meridian demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn members(target: AdminTarget, command: MembersCommand) -> ExitCode {
    use meridian::cli::{Printed, members};
    admin(&target, |client| async move {
        let printed = match command {
            MembersCommand::List => {
                let v = members::list(&client).await?;
                Printed {
                    text: members::table(&v),
                    json: v,
                }
            }
            MembersCommand::Add {
                id,
                raft_addr,
                learner,
            } => {
                let v = members::add(&client, id, &raft_addr, !learner).await?;
                Printed {
                    text: members::change_line(&format!("member {id} added"), &v),
                    json: v,
                }
            }
            MembersCommand::Remove { id } => {
                let v = members::remove(&client, id).await?;
                Printed {
                    text: members::change_line(&format!("member {id} removed"), &v),
                    json: v,
                }
            }
        };
        Ok(printed)
    })
}

/// Builds a runtime, saying why on stderr when the system refuses.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("meridian: cannot start the runtime: {e}"))
        .ok()
}

fn config_error(message: &str) -> ExitCode {
    eprintln!("meridian: {message}");
    ExitCode::from(EXIT_CONFIG)
}

fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    Config::from_toml(&text).map_err(|e| format!("invalid configuration {}: {e}", path.display()))
}

fn serve(path: Option<&Path>, log_format: LogFormat) -> ExitCode {
    let _log_guard = init_logging(log_format);
    // One crypto provider for every TLS use in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let config = match path {
        Some(path) => match load(path) {
            Ok(config) => config,
            Err(message) => return config_error(&message),
        },
        None => match defaults::default_config(&ProcessEnv) {
            Ok(d) => {
                announce_default(&d);
                d.config
            }
            Err(e) => return config_error(&format!("invalid embedded default: {e}")),
        },
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Config(message)) => config_error(&message),
        Err(RunError::Other(e)) => {
            eprintln!("meridian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum RunError {
    Config(String),
    Other(anyhow::Error),
}

async fn run(config: Config) -> Result<(), RunError> {
    let node = match Node::start(&config, Arc::new(ProcessEnv)).await {
        Ok(node) => node,
        Err(e @ StartError::Config { .. }) => {
            return Err(RunError::Config(format!("invalid configuration: {e}")));
        }
        Err(e) => return Err(RunError::Other(e.into())),
    };
    // A Raft core that stops (a fatal error, a panic) leaves a node that
    // can neither commit nor apply: exit non-zero so that systemd restarts
    // it on its data dir, rather than serve as a zombie.
    let cluster = node.cluster.clone();
    let stopped = cluster.core_stopped();
    tokio::pin!(stopped);
    tokio::select! {
        why = &mut stopped => {
            tracing::error!(error = %why, "the Raft core stopped: this node cannot commit or apply anything; exiting so that it is restarted");
            return Err(RunError::Other(anyhow::anyhow!("the Raft core stopped: {why}")));
        }
        signal = serve_until_signal(&node, &config) => signal.map_err(RunError::Other)?,
    }
    tracing::info!("shutting down: draining requests in flight");
    node.shutdown().await;
    Ok(())
}

/// Waits until the node is ready (saying so), then until a shutdown signal.
async fn serve_until_signal(node: &Node, config: &Config) -> anyhow::Result<()> {
    let mut waited = 0u64;
    while !node.ready(Duration::from_secs(5)).await {
        waited += 5;
        tracing::warn!(
            waited_s = waited,
            "waiting for the cluster to elect a leader and apply its state"
        );
    }
    warn_if_file_differs(config, &node.cluster.applied().state);
    let snapshot = node.snapshot.load();
    if snapshot.keys.accepts_anyone() {
        tracing::warn!(api = %node.api_addr, "no client keys configured: accepting every request, on loopback only");
    }
    if !snapshot.ready() {
        tracing::warn!("no route has a usable upstream: /readyz answers 503");
    }
    drop(snapshot);
    println!(
        "meridian ready: api=http://{} admin=http://{} region={}",
        node.api_addr, node.admin_addr, config.node.region
    );
    tracing::info!(api = %node.api_addr, admin = %node.admin_addr, region = %config.node.region, "serving");
    shutdown_signal().await
}

/// The file's upstreams and routes only seed a new cluster; say so when they
/// no longer match the cluster's, so an edit is not silently ignored.
fn warn_if_file_differs(config: &Config, state: &proto::state::ClusterState) {
    let upstreams_differ = config
        .upstreams
        .iter()
        .any(|u| state.upstreams.get(&u.id) != Some(u));
    let routes_differ = config
        .routes
        .iter()
        .any(|r| state.routes.get(&r.model) != Some(r));
    if upstreams_differ || routes_differ {
        tracing::warn!(
            "the [[upstreams]] or [[routes]] in the file differ from the cluster's: the file only seeds a new \
             cluster, and the cluster's state is what serves; change it with the admin API (meridian members list \
             shows the nodes)"
        );
    }
}

fn announce_default(d: &defaults::DefaultConfig) {
    let list = |v: &[(String, String)]| {
        v.iter()
            .map(|(id, var)| format!("{id} ({var})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if d.serving.is_empty() {
        tracing::warn!(
            "no --config and no provider key set: set one of {} and restart",
            list(&d.skipped)
        );
    } else {
        tracing::info!(
            "no --config: serving the embedded default for {}; skipped (key not set): {}",
            list(&d.serving),
            list(&d.skipped)
        );
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    guard
}
