//! The `meridian-mock` command line, parsed into a [`MockConfig`]. It lives
//! in the library so a test can start an in-process mock with exactly the
//! flags the binary takes ([`Args::config`], then [`crate::spawn`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::{Behavior, BehaviorError, MockConfig, TlsError, tls};

/// An OpenAI- and Anthropic-compatible fake provider with programmable faults.
#[derive(Debug, Parser)]
#[command(name = "meridian-mock", version)]
pub struct Args {
    /// Data-plane address (OpenAI and Anthropic APIs); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Control-plane address (/_mock/...); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// Seed of the random draws (faults, latencies), so a run repeats.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Require `Authorization: Bearer <KEY>` on OpenAI data requests and
    /// `x-api-key: <KEY>` on Anthropic ones.
    #[arg(long, env = "MERIDIAN_MOCK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Models listed by GET /v1/models, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "mock-model")]
    pub model_list: Vec<String>,
    /// Behaviour at start and after POST /_mock/reset, as JSON.
    #[arg(long)]
    pub behavior: Option<String>,
    /// Serve the data plane over TLS with this PEM certificate chain (leaf
    /// first); the control plane stays plain HTTP.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// Why the flags do not make a mock.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--behavior` is not a valid behaviour.
    #[error("--behavior: {0}")]
    Behavior(#[from] BehaviorError),
    /// `--tls-cert`/`--tls-key` cannot be loaded.
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(#[from] TlsError),
}

impl Args {
    /// The mock these flags describe (behaviour parsed, TLS files loaded).
    pub fn config(&self) -> Result<MockConfig, ArgsError> {
        let behavior = match &self.behavior {
            Some(json) => Behavior::from_json(json.as_bytes())?,
            None => Behavior::default(),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        Ok(MockConfig {
            listen: self.listen,
            control: self.control,
            seed: self.seed,
            api_key: self.api_key.clone(),
            models: self.model_list.clone(),
            behavior,
            tls,
        })
    }
}
