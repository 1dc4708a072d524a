//! Raft over QUIC with mutual TLS.
//!
//! Each node has one QUIC endpoint, on one UDP socket, that both serves its
//! peers and dials them. Both ends present certificates signed by the
//! cluster CA. Every RPC is one bidirectional stream carrying one request
//! frame and one response frame ([`proto::codec`]); connections are cached
//! per peer and redialled with backoff. A peer's address may be a DNS name,
//! resolved again at every dial; who the peer is comes from the node id in
//! its certificate, never from its address.
//!
//! Starting a node is two-phase, because openraft wants the network before
//! the [`Raft`](crate::types::Raft) exists and serving needs the `Raft`:
//!
//! ```ignore
//! let transport = Transport::bind(addr, &tls_paths, NetworkSettings::default())?;
//! let raft = Raft::new(id, config, transport.network(id), log, state_machine).await?;
//! let server = transport.serve(raft.clone());
//! ```

mod client;
pub mod frame;
mod resolve;
pub mod rpc;
mod server;
pub mod tls;
pub mod traffic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use client::{Connection, Network};
pub use resolve::{Lookup, Resolve, SystemResolver};
pub use rpc::{ForwardError, HealthSink, RaftRequest, RaftResponse, RpcHandler, Written};
pub use tls::{TlsError, TlsPaths};
pub use traffic::{PeerTraffic, Traffic};

use crate::types::NodeId;

/// Tunables of the transport. The defaults suit a WAN; tests shorten them.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// How long a dial (resolution and handshake) may take before the peer
    /// counts as unreachable.
    pub connect_timeout: Duration,
    /// How long a forwarded write may take, commit included.
    pub forward_timeout: Duration,
    /// The largest frame (version byte and body) sent or accepted; checked
    /// before anything is allocated. Snapshot chunks and append batches must
    /// fit (openraft splits a batch that does not).
    pub max_frame: usize,
    /// Wait after the first failed dial to a peer; doubles per failure.
    pub backoff_min: Duration,
    /// The longest wait between dials.
    pub backoff_max: Duration,
    /// A connection silent this long is dead; keep-alives go out at a third
    /// of it so that a healthy idle connection never is.
    pub idle_timeout: Duration,
    /// RPCs served at once per peer connection; further streams wait.
    pub max_concurrent_rpcs: u32,
    /// A connection on which nothing has arrived for this long when a call
    /// times out is presumed dead and redialled; one that still receives is
    /// kept, however many calls time out on it.
    pub dead_after: Duration,
    /// Where the transport counts what it sends and receives: the process's
    /// [`Traffic::process`] (what a node's `/metrics` shows) unless a test
    /// gives each transport its own.
    pub traffic: Arc<Traffic>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            forward_timeout: Duration::from_secs(10),
            max_frame: 64 << 20,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            max_concurrent_rpcs: 64,
            dead_after: Duration::from_secs(2),
            traffic: Traffic::process(),
        }
    }
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS files are missing or unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A setting quinn cannot take.
    #[error("invalid network setting: {0}")]
    Settings(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind raft endpoint on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A node's QUIC endpoint: hands out the [`Network`] openraft dials peers
/// with, and serves peers once the `Raft` exists.
pub struct Transport {
    endpoint: quinn::Endpoint,
    peers: Arc<client::Peers>,
    settings: Arc<NetworkSettings>,
}

impl Transport {
    /// Loads the TLS material and binds the UDP socket at `addr` (port 0
    /// picks one; see [`Transport::local_addr`]). Must run inside a Tokio
    /// runtime. Peers are refused until [`Transport::serve`] is called.
    pub fn bind(
        addr: SocketAddr,
        tls: &TlsPaths,
        settings: NetworkSettings,
    ) -> Result<Self, TransportError> {
        Self::bind_resolving(addr, tls, settings, Arc::new(SystemResolver))
    }

    /// [`Transport::bind`] with peers' names resolved by `resolver` at each
    /// dial instead of the system's resolver.
    pub fn bind_resolving(
        addr: SocketAddr,
        tls: &TlsPaths,
        settings: NetworkSettings,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, TransportError> {
        let identity = tls::Identity::load(tls)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(identity.server_config()?));
        server.transport_config(transport_config(&settings, settings.max_concurrent_rpcs)?);
        let mut client = quinn::ClientConfig::new(Arc::new(identity.client_config()?));
        // Servers never open streams towards the dialler.
        client.transport_config(transport_config(&settings, 0)?);
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            TransportError::Settings("the raft transport needs a Tokio runtime".into())
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(identity.reset_key())),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        let settings = Arc::new(settings);
        let peers =
            client::Peers::new(Some((endpoint.clone(), client)), settings.clone(), resolver);
        Ok(Self {
            endpoint,
            peers: Arc::new(peers),
            settings,
        })
    }

    /// What this transport has sent and received, per peer and kind.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.settings.traffic.clone()
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The network factory for the node `id`, to give to `Raft::new`; also
    /// forwards writes to the leader. Clones share this transport's
    /// connections.
    pub fn network(&self, id: NodeId) -> Network {
        Network::new(id, self.peers.clone())
    }

    /// Starts answering peers with `handler` (the node's `Raft`) until
    /// [`Transport::close`]. Must run inside a Tokio runtime.
    pub fn serve<H: RpcHandler>(&self, handler: H) -> tokio::task::JoinHandle<()> {
        tokio::spawn(server::serve(
            self.endpoint.clone(),
            handler,
            self.settings.clone(),
        ))
    }

    /// Closes every connection and stops serving; waits briefly for peers
    /// to learn of it. The UDP socket is released once the last handle on
    /// the endpoint is gone: this transport, and every [`Network`] from it
    /// (openraft drops those at `Raft::shutdown`).
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl Network {
    /// A network for a node without `[tls]`: it runs alone, and every call
    /// to a peer fails as unreachable.
    pub fn standalone(id: NodeId) -> Self {
        let peers = client::Peers::new(
            None,
            Arc::new(NetworkSettings::default()),
            Arc::new(SystemResolver),
        );
        Network::new(id, Arc::new(peers))
    }
}

fn transport_config(
    settings: &NetworkSettings,
    incoming_streams: u32,
) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut config = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(settings.idle_timeout)
        .map_err(|e| TransportError::Settings(format!("idle_timeout: {e}")))?;
    config
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(settings.idle_timeout / 3))
        .max_concurrent_bidi_streams(incoming_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        // Raft's links are long and lossy (WAN, 1-2 % random loss). A
        // loss-based controller (quinn's default, Cubic) halves its window
        // at each lost packet, so at 2 % loss and 300 ms it carries a few
        // tens of KB/s and a follower that fell behind never catches up
        // within a heartbeat; BBR paces by the measured bandwidth and
        // round trip instead, and does not take random loss for congestion.
        .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        // Jitter reorders packets on such links: allow more reordering
        // before a packet is declared lost (and its window cut).
        .packet_threshold(8)
        .time_threshold(1.5);
    Ok(Arc::new(config))
}
