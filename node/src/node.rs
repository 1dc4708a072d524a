//! Starting a node: the routing snapshot, the health recorder, and the data
//! and admin listeners, with one shutdown signal that drains them both.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use proto::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminState};
use crate::auth::hash_key;
use crate::health::{self, WindowShape};
use crate::proxy::Proxy;
use crate::routing::{BuildError, RoutingSnapshot, Secrets};
use crate::select::Policy;
use crate::server;

/// How long open connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be used as it is (names the field).
    #[error("{field}: {message}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl From<BuildError> for StartError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Invalid { field, message } => Self::Config { field, message },
        }
    }
}

/// A running node.
pub struct Node {
    /// Where the data plane listens.
    pub api_addr: SocketAddr,
    /// Where the admin plane listens.
    pub admin_addr: SocketAddr,
    /// The live routing table.
    pub snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Node {
    /// Builds the routing table and starts serving.
    pub async fn start(config: &Config, secrets: &dyn Secrets) -> Result<Self, StartError> {
        let token = match secrets.env(&config.admin.token_env) {
            Some(token) => Some(hash_key(&token)),
            None if config.listen.admin.ip().is_loopback() => None,
            None => {
                return Err(StartError::Config {
                    field: "admin.token_env".into(),
                    message: format!(
                        "{} is not set and the admin listener {} is not on loopback",
                        config.admin.token_env, config.listen.admin
                    ),
                });
            }
        };
        let snapshot = Arc::new(ArcSwap::from_pointee(RoutingSnapshot::build(
            config, secrets, None,
        )?));

        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let workers = config.proxy.worker_count();
        let api = server::bind_reuseport(config.listen.api, workers).map_err(|source| {
            StartError::Bind {
                what: "the API",
                addr: config.listen.api,
                source,
            }
        })?;
        let api_addr = api
            .first()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .map_err(|source| StartError::Bind {
                what: "the API",
                addr: config.listen.api,
                source,
            })?
            .unwrap_or(config.listen.api);
        let admin_listener = bind("the admin API", config.listen.admin).await?;
        let local = |l: &TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let admin_addr = local(&admin_listener, "the admin API", config.listen.admin)?;

        let (shutdown, stop) = watch::channel(false);
        let health = health::spawn_recorder(WindowShape::default());
        let proxy = Arc::new(Proxy::new(snapshot.clone(), health, Policy::default()));
        let data_plane = server::Workers::spawn(
            api,
            move |req| proxy.clone().handle(req),
            stop.clone(),
            DRAIN,
        )
        .map_err(|source| StartError::Bind {
            what: "the API",
            addr: api_addr,
            source,
        })?;
        let mut tasks = JoinSet::new();
        tasks.spawn(data_plane.join());

        let state = AdminState {
            snapshot: snapshot.clone(),
            node_id: config.node.id,
            region: Arc::from(config.node.region.as_str()),
            token,
        };
        let router = admin::router(state);
        let mut admin_stop = stop.clone();
        tasks.spawn(async move {
            let serve = axum::serve(admin_listener, router)
                .with_graceful_shutdown(async move { server::stopped(&mut admin_stop).await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });

        Ok(Self {
            api_addr,
            admin_addr,
            snapshot,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, lets requests in flight finish, and returns when done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
