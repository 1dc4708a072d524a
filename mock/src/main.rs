//! `meridian-mock`: an OpenAI-compatible fake provider with programmable
//! faults, run as its own process by Meridian's integration tests,
//! benchmarks and demos. It prints one JSON line on stdout,
//! `{"api": ADDR, "control": ADDR, "tls": BOOL}`, then serves until SIGTERM
//! or SIGINT.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mock::{Behavior, MockConfig, MockServer, tls};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// An OpenAI-compatible fake provider with programmable faults.
#[derive(Debug, Parser)]
#[command(name = "meridian-mock", version)]
struct Args {
    /// Data-plane address (OpenAI API); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Control-plane address (/_mock/...); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Seed of the random draws (faults, latencies), so a run repeats.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Require `Authorization: Bearer <KEY>` on data requests.
    #[arg(long, env = "MERIDIAN_MOCK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Models listed by GET /v1/models, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "mock-model")]
    model_list: Vec<String>,
    /// Behaviour at start and after POST /_mock/reset, as JSON.
    #[arg(long)]
    behavior: Option<String>,
    /// Serve the data plane over TLS with this PEM certificate chain (leaf
    /// first); the control plane stays plain HTTP.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let behavior = match &args.behavior {
        Some(json) => Behavior::from_json(json.as_bytes()).context("--behavior")?,
        None => Behavior::default(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::server_config(cert, key).context("--tls-cert/--tls-key")?)
        }
        _ => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(args, behavior, tls))
}

async fn run(
    args: Args,
    behavior: Behavior,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let config = MockConfig {
        listen: args.listen,
        control: args.control,
        seed: args.seed,
        api_key: args.api_key,
        models: args.model_list,
        behavior,
        tls,
    };
    let shutdown = shutdown_signal()?;
    let server = MockServer::start(config)
        .await
        .context("binding the listeners")?;
    let line = serde_json::json!({
        "api": server.api_addr().to_string(),
        "control": server.control_addr().to_string(),
        "tls": server.tls(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("writing the address line")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);

    shutdown.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now (before the address line, so
/// a signal sent as soon as it is read is not lost) and returns a future that
/// resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C where there are no Unix signals.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
