//! The calling side: one cached QUIC connection per peer address, re-dialled
//! after a jittered, capped exponential backoff when dials fail, and one
//! bidirectional stream per RPC. Every call names the node it means to
//! reach, and is sent only over a connection whose server certificate names
//! that node: a peer at the right address with another node's certificate
//! counts as a failed dial, and nothing is sent to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use proto::codec::CodecError;
use proto::state::{Command, Member};
use rand::Rng;

use super::NetworkSettings;
use super::frame::{FrameError, read_frame_sized, write_frame};
use super::resolve::{Resolve, host, resolve};
use super::rpc::{ForwardError, RaftRequest, RaftResponse, Written};
use super::tls::peer_id;
use super::traffic::PeerTraffic;
use crate::types::{NodeId, TypeConfig};

/// Why one call to a peer failed, before openraft's error types are chosen.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No connection: the dial failed, timed out, was refused by TLS, or we
    /// are backing off after such failures.
    #[error("{addr} is unreachable: {message}")]
    Unreachable {
        /// The Raft address dialled.
        addr: String,
        /// Why.
        message: String,
    },
    /// The whole call took longer than its time to live.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The request is larger than a frame may be.
    #[error("request too large: {0}")]
    TooLarge(CodecError),
    /// The stream or connection broke mid-call, or the answer was garbage.
    #[error("{addr}: {source}")]
    Stream {
        /// The Raft address called.
        addr: String,
        /// What broke.
        source: FrameError,
    },
    /// The peer could not open a stream, or answered the wrong kind of
    /// response.
    #[error("{addr}: {message}")]
    Protocol {
        /// The Raft address called.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The peer refused the request before it reached Raft.
    #[error("{addr} refused the request: {message}")]
    Refused {
        /// The Raft address called.
        addr: String,
        /// The peer's reason.
        message: String,
        /// The identity rule that refused it, when that was the reason.
        refusal: Option<super::rpc::Refusal>,
    },
}

/// A peer's connection and the memory of failed dials to it.
#[derive(Default)]
struct Slot {
    connection: Option<quinn::Connection>,
    /// The node the cached connection's server certificate names.
    peer: Option<NodeId>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
    /// The connection's count of received datagrams when it last grew,
    /// and when: a connection that still receives (acknowledgements,
    /// late answers) is alive, however lossy or slow the link.
    heard: Option<(u64, Instant)>,
}

/// The endpoint and TLS config to dial with, and the cache of connections.
pub(super) struct Peers {
    dialer: Option<(quinn::Endpoint, quinn::ClientConfig)>,
    settings: Arc<NetworkSettings>,
    resolver: Arc<dyn Resolve>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    /// When each peer last answered an RPC, for operators ("last contact").
    contacts: Mutex<HashMap<String, Instant>>,
}

impl Peers {
    /// Peers dialled from `endpoint`; with `None`, every call is refused as
    /// unreachable (a node without TLS runs alone).
    pub(super) fn new(
        dialer: Option<(quinn::Endpoint, quinn::ClientConfig)>,
        settings: Arc<NetworkSettings>,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        Self {
            dialer,
            settings,
            resolver,
            slots: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, addr: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(addr.to_string()).or_default().clone()
    }

    /// The live connection to node `target` at `addr`, dialling it if
    /// needed. Concurrent callers share one dial. The dial runs in its own
    /// task so that a caller giving up (openraft's TTL) does not waste it for
    /// the next one. A server whose certificate names another node than
    /// `target` is refused like a failed dial.
    async fn connection(
        self: &Arc<Self>,
        addr: &str,
        target: NodeId,
    ) -> Result<quinn::Connection, CallError> {
        let mut slot = self.slot(addr).lock_owned().await;
        if let Some(connection) = &slot.connection {
            if connection.close_reason().is_none() && slot.peer == Some(target) {
                return Ok(connection.clone());
            }
            if connection.close_reason().is_none() {
                // Verified for another node: this address is not `target`.
                let message = wrong_node(target, slot.peer);
                connection.close(0u32.into(), b"not the node dialled");
                self.failed(&mut slot, message.clone());
                return Err(CallError::Unreachable {
                    addr: addr.to_string(),
                    message,
                });
            }
            slot.connection = None;
        }
        if let Some(at) = slot.retry_at
            && Instant::now() < at
        {
            return Err(CallError::Unreachable {
                addr: addr.to_string(),
                message: format!(
                    "not redialling yet after {} failed dials; last: {}",
                    slot.failures, slot.last_error
                ),
            });
        }
        let peers = self.clone();
        let node = target;
        let target = addr.to_string();
        let dial = tokio::spawn(async move {
            let result = peers.dial(&target).await.and_then(|connection| {
                let presented = peer_id(&connection);
                if presented == Some(node) {
                    Ok(connection)
                } else {
                    connection.close(0u32.into(), b"not the node dialled");
                    let message = wrong_node(node, presented);
                    tracing::warn!(addr = %target, node, error = %message, "raft peer refused");
                    Err(message)
                }
            });
            match &result {
                // The failure count stays until an RPC succeeds: a peer that
                // completes handshakes only to refuse our certificate must
                // still be backed off from exponentially.
                Ok(connection) => {
                    slot.connection = Some(connection.clone());
                    slot.peer = Some(node);
                    slot.retry_at = None;
                    slot.heard = Some((connection.stats().udp_rx.datagrams, Instant::now()));
                }
                Err(message) => peers.failed(&mut slot, message.clone()),
            }
            result.map_err(|message| CallError::Unreachable {
                addr: target,
                message,
            })
        });
        dial.await.unwrap_or_else(|e| {
            Err(CallError::Unreachable {
                addr: addr.to_string(),
                message: format!("dial task failed: {e}"),
            })
        })
    }

    /// Forgets past failures once a peer has answered. Skipped when a dial
    /// holds the slot: the next success will do it.
    fn succeeded(&self, addr: &str) {
        if let Ok(mut contacts) = self.contacts.lock() {
            contacts.insert(addr.to_owned(), Instant::now());
        }
        if let Ok(mut slot) = self.slot(addr).try_lock()
            && slot.failures > 0
        {
            slot.failures = 0;
            slot.last_error.clear();
        }
    }

    /// Records a failed dial (or a handshake the peer refused) and when the
    /// next one may be tried.
    fn failed(&self, slot: &mut Slot, message: String) {
        slot.connection = None;
        slot.peer = None;
        slot.failures = slot.failures.saturating_add(1);
        slot.retry_at = Some(Instant::now() + backoff_delay(&self.settings, slot.failures));
        slot.last_error = message;
    }

    async fn dial(&self, addr: &str) -> Result<quinn::Connection, String> {
        let Some((endpoint, config)) = &self.dialer else {
            return Err("this node has no [tls] and talks to no peers".into());
        };
        let server_name = host(addr);
        let attempt = async {
            // Resolved at every dial: a peer addressed by name may have
            // moved (a rescheduled pod) since the last connection.
            let target = resolve(&*self.resolver, addr, endpoint.local_addr().ok()).await?;
            endpoint
                .connect_with(config.clone(), target, server_name)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.settings.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no handshake within {:?}",
                self.settings.connect_timeout
            )),
        }
    }

    /// One request and its response on a new stream to node `target` at
    /// `addr`, within `ttl`, counted in `counted` (`target`'s counters).
    async fn call(
        self: &Arc<Self>,
        target: NodeId,
        addr: &str,
        request: &RaftRequest,
        ttl: Duration,
        counted: &PeerTraffic,
    ) -> Result<RaftResponse, CallError> {
        let exchange = async {
            let connection = self.connection(addr, target).await?;
            let stream = |source| CallError::Stream {
                addr: addr.to_string(),
                source,
            };
            let (mut send, mut recv) = match connection.open_bi().await {
                Ok(pair) => pair,
                Err(e) => return Err(self.connection_lost(addr, e).await),
            };
            let max = self.settings.max_frame;
            match write_frame(&mut send, request, max).await {
                Ok(bytes) => {
                    counted.sent(bytes);
                    self.settings.traffic.tally(0, request);
                }
                Err(FrameError::Codec(e @ CodecError::TooLarge { .. })) => {
                    return Err(CallError::TooLarge(e));
                }
                Err(e) => return Err(self.stream_error(addr, stream(e)).await),
            }
            send.finish().map_err(|e| CallError::Protocol {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
            match read_frame_sized(&mut recv, max).await {
                Ok((response, bytes)) => {
                    counted.received(bytes);
                    self.succeeded(addr);
                    Ok(response)
                }
                Err(e) => Err(self.stream_error(addr, stream(e)).await),
            }
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(RaftResponse::Failure(message))) => Err(CallError::Refused {
                addr: addr.to_string(),
                message,
                refusal: None,
            }),
            Ok(Ok(RaftResponse::Refused(refusal))) => Err(CallError::Refused {
                addr: addr.to_string(),
                message: refusal.to_string(),
                refusal: Some(refusal),
            }),
            Ok(result) => result,
            Err(_) => {
                self.timed_out(addr);
                Err(CallError::Timeout(ttl))
            }
        }
    }

    /// After a call to `addr` timed out: closes and forgets the cached
    /// connection only if nothing at all has arrived on it for
    /// [`NetworkSettings::dead_after`], so the next call redials (and
    /// resolves the name again). A timeout on a lossy or slow link whose
    /// packets still arrive keeps the connection: tearing it down would put
    /// a handshake (two more round trips, each as lossy) in front of every
    /// call, which is how a WAN with 2 % loss used to lose its leader. A peer
    /// that restarted is noticed sooner than that, by the stateless reset its
    /// new process answers our next packet with (see `Identity::reset_key`).
    /// Skipped when another call is dialling right now.
    fn timed_out(&self, addr: &str) {
        let slot = self.slot(addr);
        let Ok(mut slot) = slot.try_lock() else {
            return;
        };
        let Some(connection) = &slot.connection else {
            return;
        };
        let received = connection.stats().udp_rx.datagrams;
        let (dead, heard) = silent(
            slot.heard,
            received,
            Instant::now(),
            self.settings.dead_after,
        );
        slot.heard = heard;
        if !dead {
            return;
        }
        if let Some(connection) = slot.connection.take() {
            tracing::debug!(addr, "nothing heard on the raft connection: redialling");
            connection.close(0u32.into(), b"peer silent");
        }
    }

    async fn stream_error(&self, addr: &str, e: CallError) -> CallError {
        match &e {
            CallError::Stream { source, .. } => match source.connection_error() {
                Some(lost) => self.connection_lost(addr, lost.clone()).await,
                None => e,
            },
            _ => e,
        }
    }

    /// A connection the peer closed. With TLS 1.3 the client finishes its
    /// handshake before the server has checked the client's certificate, so
    /// a refused certificate shows up here, on the first stream, as a crypto
    /// close: that counts as a failed dial (and backs off) rather than a
    /// broken stream (retried at once).
    async fn connection_lost(&self, addr: &str, e: quinn::ConnectionError) -> CallError {
        let refused = matches!(
            &e,
            quinn::ConnectionError::ConnectionClosed(close)
                if (0x100..0x200).contains(&u64::from(close.error_code))
        );
        if refused {
            let message = format!("handshake refused: {e}");
            let slot = self.slot(addr);
            self.failed(&mut *slot.lock().await, message.clone());
            return CallError::Unreachable {
                addr: addr.to_string(),
                message,
            };
        }
        CallError::Stream {
            addr: addr.to_string(),
            source: FrameError::Read(quinn::ReadExactError::ReadError(
                quinn::ReadError::ConnectionLost(e),
            )),
        }
    }
}

/// The delay before the `failures`-th redial: doubling from
/// `backoff_min`, capped at `backoff_max`, and drawn from its upper half so
/// that nodes which lost a peer together do not redial in lockstep.
fn backoff_delay(settings: &NetworkSettings, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let ceiling = settings
        .backoff_min
        .saturating_mul(1 << exponent)
        .min(settings.backoff_max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
}

/// Whether a connection whose call just timed out is dead: nothing has
/// arrived on it (`received` datagrams in all) since the last look, and
/// that look is `dead_after` old. Returns the verdict and what to remember
/// for the next look.
fn silent(
    heard: Option<(u64, Instant)>,
    received: u64,
    now: Instant,
    dead_after: Duration,
) -> (bool, Option<(u64, Instant)>) {
    match heard {
        Some((seen, at)) if seen == received => {
            let dead = now.saturating_duration_since(at) >= dead_after;
            (dead, if dead { None } else { heard })
        }
        _ => (false, Some((received, now))),
    }
}

/// Why a server was refused: its certificate names another node.
fn wrong_node(target: NodeId, presented: Option<NodeId>) -> String {
    match presented {
        Some(id) => format!("the certificate presented is node {id}'s, not node {target}'s"),
        None => format!("the certificate presented names no node, not node {target}"),
    }
}

/// The factory openraft asks for a [`Connection`] per peer, and the way a
/// follower forwards writes to the leader. Cheap to clone; clones share the
/// connection cache.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    peers: Arc<Peers>,
}

impl Network {
    /// How long ago the peer at `addr` last answered an RPC from this node
    /// (on the leader, every member is contacted at least every heartbeat).
    pub fn last_contact(&self, addr: &str) -> Option<Duration> {
        let contacts = self.peers.contacts.lock().ok()?;
        contacts.get(addr).map(Instant::elapsed)
    }

    /// The smoothed round trip QUIC measures on the live connection to the
    /// peer at `addr`; `None` without one (or while a dial holds it).
    pub fn round_trip(&self, addr: &str) -> Option<Duration> {
        let slot = self.peers.slot(addr);
        let slot = slot.try_lock().ok()?;
        let connection = slot.connection.as_ref()?;
        connection
            .close_reason()
            .is_none()
            .then(|| connection.rtt())
    }

    pub(super) fn new(id: NodeId, peers: Arc<Peers>) -> Self {
        Self { id, peers }
    }

    /// One call to node `peer` at `addr` within `ttl`, counted in that
    /// peer's traffic: what every request of this node's own (forwards,
    /// reads, pre-votes, health reports) goes through.
    async fn ask(
        &self,
        peer: NodeId,
        addr: &str,
        request: &RaftRequest,
        ttl: Duration,
    ) -> Result<RaftResponse, CallError> {
        let counted = self.peers.settings.traffic.peer(peer);
        self.peers.call(peer, addr, request, ttl, &counted).await
    }

    /// Sends `command` to node `leader_id` at `leader` for it to propose,
    /// and waits (up to the forward timeout) until it is committed and
    /// applied there. A [`ForwardError::NotLeader`] names the current
    /// leader when known, for the caller to try next.
    pub async fn forward(
        &self,
        leader_id: NodeId,
        leader: &Member,
        command: Command,
    ) -> Result<Written, ForwardError> {
        let addr = &leader.raft_addr;
        let request = RaftRequest::Forward(command);
        let network = |e: CallError| ForwardError::Network {
            addr: addr.clone(),
            message: e.to_string(),
        };
        match self
            .ask(
                leader_id,
                addr,
                &request,
                self.peers.settings.forward_timeout,
            )
            .await
        {
            Ok(RaftResponse::Forward(result)) => result,
            Ok(other) => Err(network(unexpected(addr, &other))),
            Err(e) => Err(network(e)),
        }
    }

    /// Asks the leader (node `leader_id` at `leader`) for the log index a
    /// linearizable read must wait for; the caller then waits until it has
    /// applied that far.
    pub async fn read_index(
        &self,
        leader_id: NodeId,
        leader: &Member,
    ) -> Result<Option<u64>, ForwardError> {
        let addr = &leader.raft_addr;
        let network = |e: CallError| ForwardError::Network {
            addr: addr.clone(),
            message: e.to_string(),
        };
        match self
            .ask(
                leader_id,
                addr,
                &RaftRequest::ReadIndex,
                self.peers.settings.forward_timeout,
            )
            .await
        {
            Ok(RaftResponse::ReadIndex(result)) => result,
            Ok(other) => Err(network(unexpected(addr, &other))),
            Err(e) => Err(network(e)),
        }
    }
}

impl Network {
    /// Asks node `peer` whether it would vote for this node now (see
    /// [`crate::prevote`]); changes nothing there.
    pub async fn pre_vote(
        &self,
        peer: NodeId,
        member: &Member,
        asker: crate::prevote::PreVote,
    ) -> Result<crate::prevote::PreVoteAnswer, crate::prevote::AskError> {
        use crate::prevote::AskError;
        let addr = &member.raft_addr;
        match self
            .ask(
                peer,
                addr,
                &RaftRequest::PreVote(asker),
                self.peers.settings.forward_timeout,
            )
            .await
        {
            Ok(RaftResponse::PreVote(answer)) => Ok(answer),
            Ok(other) => Err(AskError::Network(unexpected(addr, &other).to_string())),
            Err(CallError::Refused {
                refusal: Some(refusal),
                ..
            }) => Err(AskError::Refused(refusal)),
            Err(e) => Err(AskError::Network(e.to_string())),
        }
    }
}

impl Network {
    /// Sends this node's health `report` to node `peer` at `member`, within
    /// `ttl`. Straight to the member, not through the leader or the log: a
    /// report only ever replaces the one before it, so nothing needs it
    /// ordered or durable, and the leader's replication stays free for
    /// configuration. `Err` says why it was not taken, for the log.
    pub async fn send_health(
        &self,
        peer: NodeId,
        member: &Member,
        report: proto::health::HealthReport,
        ttl: Duration,
    ) -> Result<(), String> {
        let addr = &member.raft_addr;
        match self
            .ask(peer, addr, &RaftRequest::Health(report), ttl)
            .await
        {
            Ok(RaftResponse::Health(taken)) => taken,
            Ok(other) => Err(unexpected(addr, &other).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        Connection {
            id: self.id,
            target,
            node: node.clone(),
            counted: self.peers.settings.traffic.peer(target),
            peers: self.peers.clone(),
        }
    }
}

/// Openraft's handle on one peer. It holds no connection of its own: calls
/// go through the shared per-address cache, dialled on first use.
pub struct Connection {
    id: NodeId,
    target: NodeId,
    node: Member,
    /// `target`'s traffic counters, looked up once for every call.
    counted: Arc<PeerTraffic>,
    peers: Arc<Peers>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Connection {
    async fn call(
        &self,
        request: &RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftResponse, CallError> {
        // Answer before openraft's hard TTL drops the call, so the stream
        // is closed by us and the error says what happened.
        self.peers
            .call(
                self.target,
                &self.node.raft_addr,
                request,
                option.soft_ttl(),
                &self.counted,
            )
            .await
    }

    // The error type is openraft's, as `RaftNetwork` returns it.
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(
        &self,
        result: Result<T, RaftError<NodeId, E>>,
    ) -> RpcResult<T, E> {
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn error<E: std::error::Error>(
        &self,
        e: CallError,
        action: RPCTypes,
    ) -> RPCError<NodeId, Member, E> {
        match e {
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout,
            }),
            CallError::Unreachable { .. } | CallError::Refused { .. } | CallError::TooLarge(_) => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            CallError::Stream { .. } | CallError::Protocol { .. } => {
                RPCError::Network(NetworkError::new(&e))
            }
        }
    }
}

fn unexpected(addr: &str, response: &RaftResponse) -> CallError {
    let kind = match response {
        RaftResponse::AppendEntries(_) => "AppendEntries",
        RaftResponse::Vote(_) => "Vote",
        RaftResponse::InstallSnapshot(_) => "InstallSnapshot",
        RaftResponse::Forward(_) => "Forward",
        RaftResponse::ReadIndex(_) => "ReadIndex",
        RaftResponse::Failure(_) => "Failure",
        RaftResponse::Refused(_) => "Refused",
        RaftResponse::PreVote(_) => "PreVote",
        RaftResponse::Health(_) => "Health",
    };
    CallError::Protocol {
        addr: addr.to_string(),
        message: format!("unexpected {kind} response"),
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let entries = rpc.entries.len() as u64;
        match self.call(&RaftRequest::AppendEntries(rpc), &option).await {
            Ok(RaftResponse::AppendEntries(result)) => self.remote(result),
            Ok(other) => Err(self.error(
                unexpected(&self.node.raft_addr, &other),
                RPCTypes::AppendEntries,
            )),
            // Openraft splits the batch and retries.
            Err(CallError::TooLarge(_)) if entries > 1 => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
            Err(e) => Err(self.error(e, RPCTypes::AppendEntries)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(&RaftRequest::InstallSnapshot(rpc), &option).await {
            Ok(RaftResponse::InstallSnapshot(result)) => self.remote(result),
            Ok(other) => Err(self.error(
                unexpected(&self.node.raft_addr, &other),
                RPCTypes::InstallSnapshot,
            )),
            Err(e) => Err(self.error(e, RPCTypes::InstallSnapshot)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(&RaftRequest::Vote(rpc), &option).await {
            Ok(RaftResponse::Vote(result)) => self.remote(result),
            Ok(other) => Err(self.error(unexpected(&self.node.raft_addr, &other), RPCTypes::Vote)),
            Err(e) => Err(self.error(e, RPCTypes::Vote)),
        }
    }

    fn backoff(&self) -> Backoff {
        let settings = self.peers.settings.clone();
        Backoff::new((1..).map(move |failures| backoff_delay(&settings, failures)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn only_a_connection_that_receives_nothing_is_presumed_dead() {
        let t0 = Instant::now();
        let after = Duration::from_millis(1500);
        let at = |ms| t0 + Duration::from_millis(ms);
        // First timeout: remembered, never dead.
        let (dead, heard) = silent(None, 10, t0, after);
        assert!(!dead);
        assert_eq!(heard, Some((10, t0)));
        // Packets keep arriving (a lossy, slow, live link): never dead,
        // however many calls time out.
        let (dead, heard) = silent(heard, 11, at(5000), after);
        assert!(!dead);
        assert_eq!(heard, Some((11, at(5000))));
        // Silent, but not for long enough yet.
        let (dead, heard) = silent(heard, 11, at(6000), after);
        assert!(!dead);
        assert_eq!(heard, Some((11, at(5000))));
        // Silent for `dead_after`: dead, and forgotten.
        assert_eq!(silent(heard, 11, at(6500), after), (true, None));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = NetworkSettings {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..NetworkSettings::default()
        };
        for _ in 0..50 {
            let first = backoff_delay(&settings, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff_delay(&settings, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff_delay(&settings, 1000);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
    }
}
