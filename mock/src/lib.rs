//! `meridian-mock`: an OpenAI- and Anthropic-compatible fake provider with
//! programmable faults. Meridian's integration tests, benchmarks and demos put
//! it where a real provider would be, then make it slow, failing, rate
//! limited, stalled, cut or unreachable on demand through a separate control
//! listener.
//!
//! The `meridian-mock` binary is a thin shell over [`MockServer`] and the
//! flags of [`cli::Args`]; tests that prefer not to spawn a process start one
//! in-process on its own thread with [`spawn()`].
//!
//! Data plane (HTTP/1.1 and h2c, or over TLS with ALPN `h2`/`http/1.1` when
//! [`MockConfig::tls`] is set): `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models` (in
//! Anthropic's shape, key in `x-api-key`, when asked with an
//! `anthropic-version` header); the
//! Anthropic Messages API, `POST /v1/messages` and
//! `POST /v1/messages/count_tokens` (key in `x-api-key`, errors in
//! Anthropic's shape); the Responses API, `POST /v1/responses`,
//! `GET|DELETE /v1/responses/{id}`, `POST /v1/responses/{id}/cancel`,
//! `GET /v1/responses/{id}/input_items`; Azure OpenAI's shape of chat,
//! completions and embeddings, `POST /openai/deployments/{d}/…` with the
//! `api-version` query parameter required and the key in `api-key`. Each
//! answer carries a request id (`x-request-id`, Anthropic's `request-id`,
//! Azure's `apim-request-id`). Chat and Messages play tool use
//! ([`tools`]): a request declaring tools gets a call, a tool result is
//! quoted back.
//! Control plane (always plain HTTP): `GET|PUT|PATCH /_mock/behavior`
//! ([`Behavior`]), `GET /_mock/stats` ([`stats::Snapshot`]),
//! `POST /_mock/reset`, `GET /_mock/healthz`.
//!
//! A data request is decided in this order: 401 without the key, 404/400 for
//! a bad path or body, then (after the first-byte delay) 429 with
//! `rate_limit_rate`, `error_status` with `error_rate`, a stall, a cut, or the
//! answer. Request `n` (counted from 0 since start or reset) draws from
//! `seed ^ n * 0x9E3779B97F4A7C15`, so the same seed repeats a run. The
//! `/v1/responses/{id}` calls read the stored responses and are answered at
//! once, without faults; a `POST /v1/responses` is stored only once answered
//! (not when a fault replaced its answer), and a reset forgets them all.

pub mod anthropic;
mod anthropic_models;
mod azure;
pub mod behavior;
mod body;
mod by_id;
pub mod chat_tools;
pub mod cli;
mod control;
mod data;
mod dialect;
mod events;
pub mod openai;
pub mod responses;
pub mod seen;
mod server;
mod spawn;
pub mod stats;
pub mod tls;
pub mod tools;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use behavior::{Behavior, BehaviorError, Latency};
pub use spawn::{MockHandle, spawn};
pub use tls::TlsError;

use server::{DataPlane, Running};
use stats::Stats;

/// How to start a mock: its addresses, seed, key, models and first behaviour.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Data-plane address (port 0 picks one).
    pub listen: SocketAddr,
    /// Control-plane address (port 0 picks one).
    pub control: SocketAddr,
    /// Seed of every random draw, so a run repeats.
    pub seed: u64,
    /// When set, data requests need `Authorization: Bearer <key>` (OpenAI
    /// paths) or `x-api-key: <key>` (Anthropic paths).
    pub api_key: Option<String>,
    /// What `GET /v1/models` lists.
    pub models: Vec<String>,
    /// The behaviour at start and after `POST /_mock/reset`.
    pub behavior: Behavior,
    /// When set, the data plane speaks TLS with it ([`tls::server_config`]
    /// builds one from PEM files).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for MockConfig {
    fn default() -> Self {
        let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
        MockConfig {
            listen: localhost,
            control: localhost,
            seed: 42,
            api_key: None,
            models: vec!["mock-model".to_owned()],
            behavior: Behavior::default(),
            tls: None,
        }
    }
}

/// What every data request reads: fixed settings, the current behaviour and
/// the counters.
struct Shared {
    seed: u64,
    /// The whole expected header value, `Bearer <key>`.
    authorization: Option<String>,
    /// The expected `x-api-key` of the Anthropic paths.
    api_key: Option<String>,
    models_body: Bytes,
    /// The same list in Anthropic's shape.
    anthropic_models_body: Bytes,
    initial: Behavior,
    behavior: RwLock<Arc<Behavior>>,
    stats: Stats,
    /// The Responses API's stored responses.
    responses: responses::Store,
}

impl Shared {
    /// The current behaviour (a read lock held for one `Arc` clone).
    fn behavior(&self) -> Arc<Behavior> {
        self.behavior
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_behavior(&self, behavior: Arc<Behavior>) {
        *self.behavior.write().unwrap_or_else(|e| e.into_inner()) = behavior;
    }
}

/// A running mock. Dropping it stops the listeners; [`MockServer::stop`]
/// also waits until they are closed.
pub struct MockServer {
    data: Arc<DataPlane>,
    control: Running,
    control_addr: SocketAddr,
}

impl MockServer {
    /// Binds both listeners and starts serving on the current tokio runtime.
    pub async fn start(config: MockConfig) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            seed: config.seed,
            authorization: config.api_key.as_ref().map(|key| format!("Bearer {key}")),
            api_key: config.api_key,
            models_body: openai::models_body(&config.models),
            anthropic_models_body: anthropic_models::models_body(&config.models),
            behavior: RwLock::new(Arc::new(config.behavior.clone())),
            initial: config.behavior,
            stats: Stats::default(),
            responses: responses::Store::default(),
        });
        let tls = config.tls.map(TlsAcceptor::from);
        let data = Arc::new(DataPlane::bind(config.listen, shared, tls).await?);
        let listener = TcpListener::bind(config.control).await?;
        let control_addr = listener.local_addr()?;
        let plane = data.clone();
        let control = server::serve(listener, None, move |request| {
            control::handle(plane.clone(), request)
        });
        Ok(MockServer {
            data,
            control,
            control_addr,
        })
    }

    /// The data-plane address (the OpenAI base URL is `http://<it>/v1`, or
    /// `https://` when [`MockServer::tls`]).
    pub fn api_addr(&self) -> SocketAddr {
        self.data.addr
    }

    /// Whether the data plane speaks TLS.
    pub fn tls(&self) -> bool {
        self.data.tls()
    }

    /// The control-plane address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// Closes both listeners and every connection.
    pub async fn stop(self) {
        self.data.stop().await;
        self.control.stop().await;
    }
}
