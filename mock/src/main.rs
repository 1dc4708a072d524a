//! `meridian-mock`: an OpenAI- and Anthropic-compatible fake provider with
//! programmable faults, run as its own process by Meridian's integration tests,
//! benchmarks and demos. It prints one JSON line on stdout,
//! `{"api": ADDR, "control": ADDR, "tls": BOOL}`, then serves until SIGTERM
//! or SIGINT.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser;
use mock::cli::Args;
use mock::{MockConfig, MockServer};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = args.config()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: MockConfig) -> anyhow::Result<()> {
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
