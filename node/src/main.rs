//! `meridian`: the node and its operator CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
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

mod args;
mod serve_mock;
mod startup;

use args::{
    AdminTarget, Cli, Command, ConfigCommand, KeysCommand, LogFormat, MembersCommand, Output,
    RoutesCommand, UpstreamsCommand,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            cli::out::print(DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match load(&file) {
            Ok(config) => {
                cli::out::println(&format!(
                    "{}: valid ({} upstreams, {} routes, {} client keys)",
                    file.display(),
                    config.upstreams.len(),
                    config.routes.len(),
                    config.keys.len()
                ));
                ExitCode::SUCCESS
            }
            Err(message) => config_error(&message),
        },
        Command::Serve {
            config,
            log_format,
            mock,
            listen_api,
            listen_admin,
        } => serve(
            ServeOptions {
                path: config,
                mock,
                listen_api,
                listen_admin,
            },
            log_format,
        ),
        Command::Certs { dir, nodes, sans } => match cli::certs::new_certs(&dir, &nodes, &sans) {
            Ok(written) => {
                for file in written {
                    cli::out::println(&format!("wrote {file}"));
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
        },
        Command::Members { target, command } => members(target, command),
        Command::Status { target } => admin(&target, |client| async move {
            cli::status::status(&client).await
        }),
        Command::Models { target } => admin(&target, |client| async move {
            cli::models::models(&client).await
        }),
        Command::Routes { target, command } => routes(&target, command),
        Command::Upstreams { target, command } => upstreams(&target, command),
        Command::Keys { target, command } => keys(&target, command),
        Command::Usage {
            target,
            key,
            from,
            to,
            by,
        } => admin(&target, |client| async move {
            let args = cli::tenants::UsageArgs { key, from, to, by };
            cli::tenants::usage(&client, &args).await
        }),
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
    F: FnOnce(cli::admin_client::AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<cli::Printed, cli::CliError>>,
{
    use cli::{CliError, admin_client::AdminClient};
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let client = AdminClient::new(&target.admin, &target.token_env).map_err(CliError::from)?;
        command(client).await
    });
    match result {
        Ok(printed) if target.output == Output::Json => {
            cli::out::println(&format!("{:#}", printed.json));
            ExitCode::SUCCESS
        }
        Ok(printed) => {
            cli::out::print(&printed.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meridian: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn routes(target: &AdminTarget, command: RoutesCommand) -> ExitCode {
    use cli::config_cmds::{self as c, Kind};
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
    use cli::config_cmds::{self as c, Kind};
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
    use cli::config_cmds::{self as c, Kind};
    admin(target, |client| async move {
        match command {
            KeysCommand::List => c::list(&client, Kind::Keys).await,
            KeysCommand::Get { name } => c::get(&client, Kind::Keys, &name).await,
            KeysCommand::Put {
                name,
                key_env,
                models,
                rpm,
                tpm,
                credits_usd,
                class,
            } => {
                let mut body = c::read_key(key_env.as_deref())?;
                let limits = cli::tenants::LimitFlags {
                    models,
                    rpm,
                    tpm,
                    credits_usd,
                    class,
                };
                limits.add_to(&mut body)?;
                c::put(&client, Kind::Keys, &name, &body).await
            }
            KeysCommand::Credit { name, add, id } => {
                cli::tenants::credit(&client, &name, add, id).await
            }
            KeysCommand::Delete { name } => c::delete(&client, Kind::Keys, &name).await,
        }
    })
}

/// Exit status of a demo stopped by Ctrl-C (128 + SIGINT), as shells expect.
const EXIT_INTERRUPTED: u8 = 130;

/// The shortest script `meridian demo` can play: a brownout, its recovery,
/// the leader killed and back each need a few seconds to be seen.
const DEMO_MIN_DURATION_S: u64 = 20;

fn demo(quick: bool, duration: u64, rate: f64, mock: Option<PathBuf>) -> ExitCode {
    use cli::demo::{self, DemoOptions};
    if !quick && duration < DEMO_MIN_DURATION_S {
        // Refused rather than silently stretched (a 5 s request ran 20 s).
        eprintln!(
            "meridian demo: --duration {duration} is too short: the script (a brownout, its recovery, \
             the leader killed and restarted) needs at least {DEMO_MIN_DURATION_S} s; \
             use --duration {DEMO_MIN_DURATION_S}, or --quick for a 28 s run"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let options = DemoOptions {
        duration_s: if quick { 28 } else { duration },
        rate: rate.clamp(1.0, 500.0),
        mock,
        redraw: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(demo::run(options)) {
        Ok(summary) => {
            cli::out::println(&format!("\n{}", summary.text));
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
    use cli::members;
    admin(&target, |client| async move {
        match command {
            MembersCommand::List => members::list(&client).await,
            MembersCommand::Add {
                id,
                raft_addr,
                learner,
            } => members::add(&client, id, &raft_addr.to_string(), !learner).await,
            MembersCommand::Remove { id } => members::remove(&client, id).await,
        }
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

/// `meridian serve`'s choices of what to run.
struct ServeOptions {
    path: Option<PathBuf>,
    mock: bool,
    listen_api: Option<std::net::SocketAddr>,
    listen_admin: Option<std::net::SocketAddr>,
}

fn serve(options: ServeOptions, log_format: LogFormat) -> ExitCode {
    let _log_guard = init_logging(log_format);
    // One crypto provider for every TLS use in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Lives until the node stops: the fake provider and its data dir.
    let mut _mock = None;
    let (mut config, embedded) = match options.path.as_deref() {
        _ if options.mock => match serve_mock::start() {
            Ok(serve) => {
                let config = serve.config.clone();
                _mock = Some(serve);
                (config, None)
            }
            Err(message) => {
                eprintln!("meridian: {message}");
                return ExitCode::FAILURE;
            }
        },
        Some(path) => match load(path) {
            Ok(config) => (config, None),
            Err(message) => return config_error(&message),
        },
        None => match defaults::default_config(&ProcessEnv) {
            Ok(d) => {
                startup::announce_default(&d);
                (d.config.clone(), Some(d))
            }
            Err(e) => return config_error(&format!("invalid embedded default: {e}")),
        },
    };
    if let Some(api) = options.listen_api {
        config.listen.api = api;
    }
    if let Some(admin) = options.listen_admin {
        config.listen.admin = admin;
    }
    if let Err(e) = config.validate() {
        return config_error(&format!("invalid configuration: {e}"));
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(config, embedded)) {
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

async fn run(config: Config, embedded: Option<defaults::DefaultConfig>) -> Result<(), RunError> {
    let mut shutdown = Shutdown::listen().map_err(RunError::Other)?;
    let node = match Node::start(&config, Arc::new(ProcessEnv)).await {
        Ok(node) => node,
        Err(e @ StartError::Config(_)) => {
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
        () = serve_until_signal(&node, &config, embedded.as_ref(), &mut shutdown) => {}
    }
    tracing::info!("shutting down: draining requests in flight");
    node.shutdown().await;
    Ok(())
}

/// Waits until the node is ready (saying so), then until a shutdown
/// signal; a signal before it is ready ends the wait too.
async fn serve_until_signal(
    node: &Node,
    config: &Config,
    embedded: Option<&defaults::DefaultConfig>,
    shutdown: &mut Shutdown,
) {
    tokio::select! {
        () = shutdown.recv() => return,
        () = become_ready(node, config, embedded) => {}
    }
    shutdown.recv().await;
}

/// Waits until the node is ready, then says so.
async fn become_ready(node: &Node, config: &Config, embedded: Option<&defaults::DefaultConfig>) {
    let mut waited = 0u64;
    while !node.ready(Duration::from_secs(5)).await {
        waited += 5;
        tracing::warn!(
            waited_s = waited,
            "waiting for the cluster to elect a leader and apply its state"
        );
    }
    if let Some(d) = embedded {
        startup::follow_default_keys(node, d, config).await;
    }
    cli::out::println(&format!(
        "meridian ready: api=http://{} admin=http://{} region={}",
        node.api_addr, node.admin_addr, config.node.region
    ));
    startup::announce(node, config, embedded.is_some());
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment this is made.
/// It is made before the node starts: a supervisor that stops the node at
/// once, or as soon as it reads the ready line, must find the handlers in
/// place, or the default action kills the node without its drain.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
        })
    }

    /// Returns when either signal arrives (or arrived since `listen`).
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Lines the log thread may fall behind by before new ones are dropped.
/// The queue is allocated and touched whole at start-up (32 bytes a line):
/// tracing-appender's default of 128,000 lines was 4 MB of a node's idle
/// memory. At `info`, one line per request: 16,384 lines are about half a
/// second of one worker at full load on the 2-core machine (35,000 requests
/// a second), a tenth of a second at the 160,000 of four workers on the
/// 16-core machine.
const LOG_QUEUE_LINES: usize = 16_384;

/// Bytes the log thread gathers before it writes.
const LOG_WRITE_BUFFER: usize = 64 * 1024;

fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    // The log thread writes what it has gathered in one call and flushes
    // once it has drained the queue: under load, many lines per `write`
    // instead of one each (measured at `info`: 0.97x the CPU per request);
    // idle, each line still goes out at once.
    let stderr = std::io::BufWriter::with_capacity(LOG_WRITE_BUFFER, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(stderr);
    meridian::metrics::count_dropped_log_lines(writer.error_counter());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(startup::DEFAULT_LOG_FILTER));
    // Colours only for a person at a terminal, never in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The library's layouts, written more cheaply: at `info` each request's
    // access line was about 8 % of its CPU with the library's own
    // formatters (docs/perf-profile.md, step seven).
    use meridian::log_line::{LineFields, LineJson, LineTime};
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_timer(LineTime).fmt_fields(LineFields).init(),
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(LineJson::new(LineTime))
            .init(),
    }
    guard
}
