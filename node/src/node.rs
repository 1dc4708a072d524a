//! Starting a node: the cluster (Raft over the sled store), the routing
//! table that follows the applied state, the health recorder, and the data
//! and admin listeners, with one shutdown signal that drains them all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use proto::config::check_secret_strength;
use proto::state::NodeInfo;
use proto::{Config, FieldError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminState};
use crate::auth::hash_key;
use crate::catalogue::{self, Ledger};
use crate::cluster::{self, Cluster, ClusterError};
use crate::health::peers::Reports;
use crate::health::{self, HealthBoard, sharing};
use crate::proxy::Proxy;
use crate::routing::{
    self, BuildError, LocalTrust, RoutingSnapshot, Secrets, resolve_keys, response_seal,
};
use crate::server;
use crate::settings::Settings;
use crate::telemetry::Telemetry;
use crate::tenants::{self, Tenants};

/// How long open connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be used as it is (names the field).
    #[error(transparent)]
    Config(#[from] FieldError),
    /// A listener could not be bound. The reason is in the message, not a
    /// `source`: printed with its chain, the OS error came out twice.
    #[error(
        "cannot listen for {what} on {addr} ({field}): {}",
        bind_reason(error, field)
    )]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The configuration field that names the address.
        field: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The cluster could not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Why a bind failed, in the words an operator acts on: a port in use is
/// the common case (another node, or an old one still running).
fn bind_reason(error: &std::io::Error, field: &str) -> String {
    // `listen.api` is also `meridian serve --listen-api`.
    let flag = field.replace('.', "-");
    match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "the address is already in use (another meridian or another program listens there); \
             stop it, or set {field} (or `--{flag}`) to a free address"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!(
                "no interface of this machine has that address; set {field} to one of its addresses"
            )
        }
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "permission denied (a port below 1024 needs privileges); set {field} to a port above 1023"
            )
        }
        _ => error.to_string(),
    }
}

impl From<BuildError> for StartError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Invalid(e) => Self::Config(e),
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
    /// The cluster's shared health, as last built here.
    pub board: Arc<ArcSwap<HealthBoard>>,
    /// This node's cluster handle.
    pub cluster: Arc<Cluster>,
    routing_built: watch::Receiver<Option<u64>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The span exporter, when `[telemetry]` names a collector.
    telemetry: Option<Arc<Telemetry>>,
}

impl Node {
    /// Starts the cluster, builds the routing table from the applied state
    /// and starts serving.
    pub async fn start(
        config: &Config,
        secrets: Arc<dyn Secrets + Send + Sync>,
    ) -> Result<Self, StartError> {
        let settings = Settings::new(config)?;
        let config = &settings.file;
        let token = match secrets.env(&config.admin.token_env) {
            Some(token) => {
                check_secret_strength("admin.token_env", &config.admin.token_env, &token)?;
                Some(hash_key(&token))
            }
            None if config.listen.admin.ip().is_loopback() => None,
            None => {
                return Err(StartError::Config(FieldError::new(
                    "admin.token_env",
                    format!(
                        "{} is not set and the admin listener {} is not on loopback",
                        config.admin.token_env, config.listen.admin
                    ),
                )));
            }
        };
        let seed_keys = resolve_keys(config, secrets.as_ref())?;
        let seal = response_seal(config, secrets.as_ref())?;

        let workers = settings.workers;
        let bind_error = |what, field, addr| {
            move |error| StartError::Bind {
                what,
                field,
                addr,
                error,
            }
        };
        let api = server::bind_reuseport(config.listen.api, workers).map_err(bind_error(
            "the API",
            "listen.api",
            config.listen.api,
        ))?;
        let api_addr = match api.first() {
            Some(listener) => listener.local_addr().map_err(bind_error(
                "the API",
                "listen.api",
                config.listen.api,
            ))?,
            None => config.listen.api,
        };
        let admin_listener = TcpListener::bind(config.listen.admin)
            .await
            .map_err(bind_error(
                "the admin API",
                "listen.admin",
                config.listen.admin,
            ))?;
        let admin_addr = admin_listener.local_addr().map_err(bind_error(
            "the admin API",
            "listen.admin",
            config.listen.admin,
        ))?;

        let peer_reports = Arc::new(Reports::default());
        let cluster = Cluster::start(&settings.raft, peer_reports.sink()).await?;
        let trust = Arc::new(LocalTrust::new(config));
        let first_applied = cluster.applied();
        let first = routing::build_applied(
            &settings.routing,
            &first_applied,
            secrets.as_ref(),
            None,
            &trust,
        )?;
        routing::log_disabled(&first, None, first_applied.state.seeded);
        let registry = first.registry.clone();
        let (built, routing_built) = watch::channel(first.applied_index);
        let snapshot = Arc::new(ArcSwap::from_pointee(first));

        let report_every = settings.report_every();
        let tenants = Tenants::new(
            config.node.id,
            tenants::now_ms(),
            report_every,
            snapshot.load().metrics.clone(),
            first_applied.clone(),
            workers,
        );

        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(routing::follow_applied(
            routing::Follow {
                node: settings.routing.clone(),
                trust: trust.clone(),
                secrets: secrets.clone(),
                tenants: tenants.clone(),
            },
            first_applied,
            cluster.subscribe(),
            snapshot.clone(),
            built,
            stop.clone(),
        ));
        let info = NodeInfo {
            admin_addr: admin_addr.to_string(),
            region: config.node.region.clone(),
        };
        let settle = tokio::spawn(
            cluster
                .clone()
                .settle(cluster::seed(config, &seed_keys), info),
        );

        let (health, reports) = health::spawn_recorder(settings.recorder.clone());
        let board = Arc::new(ArcSwap::from_pointee(HealthBoard::default()));
        tasks.spawn(sharing::report(
            sharing::Outbox {
                cluster: cluster.clone(),
                metrics: snapshot.load().metrics.clone(),
                reports: peer_reports.clone(),
                node_id: config.node.id,
            },
            reports,
            report_every,
            stop.clone(),
        ));
        tasks.spawn(tenants::report::report(
            cluster.clone(),
            tenants.clone(),
            report_every,
            config.tenants.usage_days,
            stop.clone(),
        ));
        tasks.spawn(tenants::report::follow(
            tenants.clone(),
            cluster.subscribe(),
            report_every,
            stop.clone(),
        ));
        tasks.spawn(sharing::follow_board(
            cluster.subscribe(),
            peer_reports,
            board.clone(),
            sharing::Estimates {
                registry,
                region: config.node.region.clone(),
                min_samples: settings.policy.min_samples,
                node: config.node.id,
            },
            report_every,
            stop.clone(),
        ));
        // Runs on every node; fetches only while this one leads.
        let ledger = Arc::new(Ledger::default());
        tasks.spawn(catalogue::refresh::run(
            catalogue::refresh::Refresh {
                cluster: cluster.clone(),
                snapshot: snapshot.clone(),
                ledger: ledger.clone(),
                refresh: settings.catalogue_refresh,
                timeout: settings.catalogue_timeout,
            },
            stop.clone(),
        ));
        let connections = &config.connections;
        let needed = server::descriptors_needed(connections);
        if let Some(limit) = server::descriptor_limit().filter(|&limit| limit < needed) {
            tracing::warn!(
                limit,
                needed,
                "the descriptor limit (ulimit -n, systemd LimitNOFILE) is below what \
                 connections.max_connections and connections.admin_max_connections may take; \
                 raise it or lower them"
            );
        }
        // Each priority class's service level, over the health window.
        snapshot
            .load()
            .metrics
            .classes
            .store(Arc::new(crate::metrics::sla::Classes::new(
                &config.classes,
                settings.recorder.slots,
                settings.recorder.slot,
            )));
        let telemetry = Telemetry::start(&config.telemetry)
            .map_err(|e| FieldError::new(e.field().unwrap_or("telemetry"), e.to_string()))?
            .map(Arc::new);
        let mut proxy = Proxy::new(snapshot.clone(), health, settings.policy)
            .with_body_timeout(settings.body_timeout)
            .with_tenants(tenants)
            .with_classes(&config.classes)
            .with_standing(cluster.standing.clone());
        if let Some(telemetry) = &telemetry {
            proxy = proxy.with_telemetry(telemetry.clone());
        }
        match seal {
            Some(seal) => proxy = proxy.with_seal(seal),
            // A node open to loopback without keys serves one anonymous
            // caller: there is nobody else to bind its ids against.
            None if config.keys.is_empty() && config.listen.api.ip().is_loopback() => {}
            None => tracing::warn!(
                "stored Responses are not bound to keys: any client key that knows a response \
                 id may read, continue, cancel or delete it; set [responses] secret_env, the \
                 same on every node, to bind them"
            ),
        }
        let proxy = Arc::new(proxy);
        let data_plane = server::Workers::spawn(
            api,
            move |req| proxy.clone().handle(req),
            stop.clone(),
            DRAIN,
            settings.data_limits.clone(),
            server::Gate::new("API", connections.max_connections),
        )
        .map_err(bind_error("the API", "listen.api", api_addr))?;
        tasks.spawn(data_plane.join());

        let state = AdminState {
            snapshot: snapshot.clone(),
            board: board.clone(),
            routing_built: routing_built.clone(),
            cluster: cluster.clone(),
            node_id: config.node.id,
            region: Arc::from(config.node.region.as_str()),
            token,
            trust,
            secrets,
            catalogue: ledger,
        };
        let router = admin::router(state);
        let body_timeout = settings.body_timeout;
        tasks.spawn(server::serve(
            admin_listener,
            move |req| server::admin_answer(router.clone(), req, body_timeout),
            stop.clone(),
            DRAIN,
            settings.admin_limits.clone(),
            server::Gate::new("admin", connections.admin_max_connections),
        ));
        let mut settle_stop = stop;
        tasks.spawn(async move {
            tokio::select! {
                _ = settle => {}
                () = server::stopped(&mut settle_stop) => {}
            }
        });

        Ok(Self {
            api_addr,
            admin_addr,
            snapshot,
            board,
            cluster,
            routing_built,
            shutdown,
            tasks,
            telemetry,
        })
    }

    /// Waits until the replicated state has been seeded and applied here and
    /// the routing table has been rebuilt from it, so the data plane serves
    /// the cluster's routes.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut applied = self.cluster.subscribe();
        let seeded = applied.wait_for(|a| a.state.seeded);
        let Ok(Ok(state)) = tokio::time::timeout(timeout, seeded).await else {
            return false;
        };
        let index = state.last_applied.map(|l| l.index);
        drop(state);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        routing::routing_built_at(&mut self.routing_built.clone(), index, left).await
    }

    /// Stops accepting, lets requests in flight finish, stops Raft, and
    /// returns when done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // Requests are drained: their spans have ended and go out now.
        if let Some(telemetry) = &self.telemetry {
            telemetry.shutdown().await;
        }
        self.cluster.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// A node whose Raft core stopped answers `/readyz` 503 naming it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readyz_fails_once_the_raft_core_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_toml(
            "[node]\nid = 1\nregion = \"r\"\n\n[listen]\napi = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nraft = \"127.0.0.1:0\"\n\n[admin]\ntoken_env = \"MERIDIAN_TEST_UNSET_TOKEN\"\n",
        )
        .unwrap();
        config.node.data_dir = dir.path().to_path_buf();
        let node = Node::start(&config, Arc::new(crate::routing::ProcessEnv))
            .await
            .unwrap();
        let before = get(node.admin_addr, "/readyz").await;
        assert!(!before.contains("raft_stopped"), "{before}");
        node.cluster.raft.shutdown().await.unwrap();
        let after = get(node.admin_addr, "/readyz").await;
        assert!(after.starts_with("HTTP/1.1 503"), "{after}");
        assert!(after.contains("\"code\":\"raft_stopped\""), "{after}");
        node.shutdown().await;
    }
}
