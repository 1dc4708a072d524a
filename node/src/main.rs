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
        Command::Certs { dir, nodes, sans } => match cli::certs::new_certs(&dir, &nodes, &sans) {
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

fn demo(quick: bool, duration: u64, rate: f64, mock: Option<PathBuf>) -> ExitCode {
    use cli::demo::{self, DemoOptions};
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
