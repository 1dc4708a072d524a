//! The Raft transport over real UDP sockets on localhost: who may talk
//! (mutual TLS against the cluster CA), what failures look like to
//! openraft, frame limits, and a three-node cluster on the sled store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use proto::state::{Command, CommandResponse, KeyRecord, Member};
use raft::network::frame::read_frame;
use raft::network::rpc::Refusal;
use raft::network::tls::{ALPN, Identity};
use raft::network::{
    ForwardError, HealthSink, NetworkSettings, RaftRequest, RaftResponse, RpcHandler, TlsPaths,
    Transport, Written,
};
use raft::prevote::{PreVote, PreVoteAnswer, Voter, campaign};
use raft::types::Raft;
use raft::{NodeId, TypeConfig};
use raft::{certs, store};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

/// A cluster's certificates for nodes `n1`, `n2`, … naming 127.0.0.1.
fn cluster_certs(nodes: usize) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<_> = (1..=nodes as u64)
        .map(|n| certs::NodeCert {
            name: format!("n{n}"),
            id: n,
            sans: vec!["127.0.0.1".to_string()],
        })
        .collect();
    certs::write_cluster(dir.path(), &nodes).unwrap();
    dir
}

/// Trust the CA in `ca_dir`; be `name` as issued in `cert_dir`.
fn paths(ca_dir: &Path, cert_dir: &Path, name: &str) -> TlsPaths {
    TlsPaths {
        ca: ca_dir.join("ca.pem"),
        cert: cert_dir.join(format!("{name}.pem")),
        key: cert_dir.join(format!("{name}.key")),
    }
}

fn fast() -> NetworkSettings {
    NetworkSettings {
        connect_timeout: Duration::from_millis(500),
        forward_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..NetworkSettings::default()
    }
}

fn bind(tls: &TlsPaths, settings: NetworkSettings) -> Transport {
    Transport::bind("127.0.0.1:0".parse().unwrap(), tls, settings).unwrap()
}

fn member(addr: SocketAddr) -> Member {
    Member {
        raft_addr: addr.to_string(),
        admin_addr: String::new(),
        region: "test".into(),
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(3))
}

fn vote_request() -> VoteRequest<NodeId> {
    VoteRequest::new(Vote::new(1, 2), None)
}

/// Answers every request plainly and counts what reached it, and from whom.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<AtomicUsize>,
    callers: Arc<std::sync::Mutex<Vec<NodeId>>>,
}

impl Recorder {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn callers(&self) -> Vec<NodeId> {
        self.callers.lock().unwrap().clone()
    }
}

impl RpcHandler for Recorder {
    async fn handle(&self, caller: NodeId, request: RaftRequest) -> RaftResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.callers.lock().unwrap().push(caller);
        match request {
            RaftRequest::AppendEntries(_) => {
                RaftResponse::AppendEntries(Ok(AppendEntriesResponse::Success))
            }
            RaftRequest::Vote(rpc) => {
                RaftResponse::Vote(Ok(VoteResponse::new(rpc.vote, None, true)))
            }
            RaftRequest::InstallSnapshot(rpc) => {
                RaftResponse::InstallSnapshot(Ok(InstallSnapshotResponse { vote: rpc.vote }))
            }
            RaftRequest::Forward(_) => RaftResponse::Forward(Ok(Written {
                response: CommandResponse::Applied { changed: true },
                index: 7,
            })),
            RaftRequest::ReadIndex => RaftResponse::ReadIndex(Ok(Some(7))),
            RaftRequest::PreVote(_) => RaftResponse::PreVote(PreVoteAnswer::Granted),
            RaftRequest::Health(_) => RaftResponse::Health(Ok(())),
        }
    }
}

/// A server `n1` answering with a [`Recorder`].
fn recorded_server(dir: &Path, settings: NetworkSettings) -> (Transport, Recorder, Member) {
    let server = bind(&paths(dir, dir, "n1"), settings);
    let recorder = Recorder::default();
    server.serve(recorder.clone());
    let member = member(server.local_addr().unwrap());
    (server, recorder, member)
}

/// A bare QUIC stream to `target` under node `name`'s certificate, for
/// writing frames by hand; the endpoint must outlive it.
async fn raw_stream(
    dir: &Path,
    name: &str,
    target: &Member,
) -> (quinn::Endpoint, quinn::SendStream, quinn::RecvStream) {
    let identity = Identity::load(&paths(dir, dir, name)).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(identity.client_config().unwrap()));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = endpoint
        .connect_with(config, target.raft_addr.parse().unwrap(), "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    (endpoint, send, recv)
}

async fn client_to(transport: &Transport, target: &Member) -> raft::network::Connection {
    transport.network(2).new_client(1, target).await
}

// ------------------------------------------------------------ who may talk

#[tokio::test]
async fn a_ca_signed_peer_completes_rpcs() {
    let dir = cluster_certs(2);
    let (_server, recorder, target) = recorded_server(dir.path(), fast());
    let client = bind(&paths(dir.path(), dir.path(), "n2"), fast());
    let mut connection = client_to(&client, &target).await;

    let vote = connection.vote(vote_request(), option()).await.unwrap();
    assert!(vote.vote_granted);
    let appended = connection
        .append_entries(
            AppendEntriesRequest {
                vote: Vote::new_committed(1, 2),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            },
            option(),
        )
        .await
        .unwrap();
    assert_eq!(appended, AppendEntriesResponse::Success);
    let forwarded = client
        .network(2)
        .forward(1, &target, Command::DeleteRoute { model: "m".into() })
        .await;
    assert_eq!(
        forwarded.map(|w| w.response),
        Ok(CommandResponse::Applied { changed: true })
    );
    assert_eq!(recorder.calls(), 3);
    // The server knows who called from the caller's certificate.
    assert_eq!(recorder.callers(), vec![2, 2, 2]);
}

#[tokio::test]
async fn a_peer_signed_by_another_ca_is_refused() {
    let ours = cluster_certs(1);
    let theirs = cluster_certs(2);
    let (_server, recorder, target) = recorded_server(ours.path(), fast());

    // Trusts our CA (so it accepts the server) but presents a certificate
    // from another CA: the server must refuse it.
    let intruder = bind(&paths(ours.path(), theirs.path(), "n2"), fast());
    let mut connection = client_to(&intruder, &target).await;
    let refused = connection.vote(vote_request(), option()).await;
    assert!(
        matches!(refused, Err(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    // Refusals back off like failed dials: the next call fails at once.
    let started = Instant::now();
    let again = connection.vote(vote_request(), option()).await;
    assert!(matches!(again, Err(RPCError::Unreachable(_))), "{again:?}");
    assert!(started.elapsed() < Duration::from_millis(100));

    // Wholly of another cluster: it does not trust our server either.
    let stranger = bind(&paths(theirs.path(), theirs.path(), "n2"), fast());
    let refused = client_to(&stranger, &target)
        .await
        .vote(vote_request(), option())
        .await;
    assert!(
        matches!(refused, Err(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    assert_eq!(recorder.calls(), 0, "no RPC may reach the server");
}

/// Writes `NAME.pem`/`NAME.key` into `dir`, signed by the CA there, as
/// `meridian certs` made them before certificates named their node: the
/// common name and the address, no `meridian:node:` SAN.
fn legacy_cert(dir: &Path, name: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, certs::common_name(&ca_der).unwrap());
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = Issuer::new(ca, &ca_key);
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn a_certificate_without_a_node_id_is_refused_both_ways() {
    let dir = cluster_certs(2);
    legacy_cert(dir.path(), "old");
    let (_server, recorder, target) = recorded_server(dir.path(), fast());

    // An old certificate dialling a current node: refused at the handshake.
    let old = bind(&paths(dir.path(), dir.path(), "old"), fast());
    let refused = client_to(&old, &target)
        .await
        .vote(vote_request(), option())
        .await;
    assert!(
        matches!(refused, Err(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    assert_eq!(recorder.calls(), 0, "no RPC may reach the server");

    // A current node dialling a server with an old certificate: it does
    // not take the server for any node.
    let old_server = bind(&paths(dir.path(), dir.path(), "old"), fast());
    let old_recorder = Recorder::default();
    old_server.serve(old_recorder.clone());
    let old_target = member(old_server.local_addr().unwrap());
    let client = bind(&paths(dir.path(), dir.path(), "n2"), fast());
    let refused = client_to(&client, &old_target)
        .await
        .vote(vote_request(), option())
        .await;
    assert!(
        matches!(refused, Err(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    assert_eq!(old_recorder.calls(), 0);
}

#[tokio::test]
async fn a_server_presenting_another_nodes_certificate_is_refused() {
    let dir = cluster_certs(3);
    // The server at this address holds node 1's certificate.
    let (_server, recorder, target) = recorded_server(dir.path(), fast());
    let client = bind(&paths(dir.path(), dir.path(), "n2"), fast());

    // Node 2 means to reach node 3 there: nothing is sent.
    let mut to_three = client.network(2).new_client(3, &target).await;
    let refused = to_three.vote(vote_request(), option()).await;
    match &refused {
        Err(RPCError::Unreachable(e)) => {
            assert!(e.to_string().contains("node 1's, not node 3's"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let append = to_three
        .append_entries(
            AppendEntriesRequest {
                vote: Vote::new_committed(1, 2),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            },
            option(),
        )
        .await;
    assert!(
        matches!(append, Err(RPCError::Unreachable(_))),
        "{append:?}"
    );
    let forwarded = client
        .network(2)
        .forward(3, &target, Command::DeleteRoute { model: "m".into() })
        .await;
    assert!(
        matches!(forwarded, Err(ForwardError::Network { .. })),
        "{forwarded:?}"
    );
    assert_eq!(recorder.calls(), 0, "nothing may be sent to the wrong node");

    // Meant for node 1, the same address is fine.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut to_one = client_to(&client, &target).await;
    let mut answered = false;
    for _ in 0..30 {
        if to_one.vote(vote_request(), option()).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered);
    assert_eq!(recorder.callers(), vec![2]);
}

#[tokio::test]
async fn a_peer_without_a_client_certificate_is_refused() {
    let dir = cluster_certs(1);
    let (_server, recorder, target) = recorded_server(dir.path(), fast());

    // A well-behaved TLS client that trusts the cluster CA but has no
    // certificate of its own.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = target.raft_addr.parse().unwrap();

    let attempt = async {
        let connection = endpoint
            .connect_with(config, addr, "127.0.0.1")
            .unwrap()
            .await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        let frame = proto::codec::encode(&RaftRequest::Vote(vote_request())).unwrap();
        send.write_all(&frame).await?;
        send.finish()?;
        let response: RaftResponse = read_frame(&mut recv, 1 << 20).await?;
        Ok::<_, Box<dyn std::error::Error>>(response)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(recorder.calls(), 0, "no RPC may reach the server");
}

// ---------------------------------------------------------- failure shapes

#[tokio::test]
async fn a_restarted_peer_is_redialled() {
    let dir = cluster_certs(2);
    let (server, recorder, target) = recorded_server(dir.path(), fast());
    let client = bind(&paths(dir.path(), dir.path(), "n2"), fast());
    let mut connection = client_to(&client, &target).await;
    connection.vote(vote_request(), option()).await.unwrap();

    server.close().await;
    drop(server);
    // The socket is freed once quinn's driver has seen the last handle go.
    let mut restarted = None;
    for _ in 0..50 {
        match Transport::bind(
            target.raft_addr.parse().unwrap(),
            &paths(dir.path(), dir.path(), "n1"),
            fast(),
        ) {
            Ok(t) => {
                restarted = Some(t);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let restarted = restarted.expect("the port is freed after close");
    restarted.serve(recorder.clone());

    let mut answered = false;
    for _ in 0..30 {
        if connection.vote(vote_request(), option()).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the restarted peer was never reached again");
    assert_eq!(recorder.calls(), 2);
}

#[tokio::test]
async fn an_unreachable_peer_is_reported_quickly() {
    let dir = cluster_certs(2);
    // A bound socket that never answers: the handshake can only time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = member(silent.local_addr().unwrap());
    let client = bind(&paths(dir.path(), dir.path(), "n2"), fast());
    let mut connection = client_to(&client, &target).await;

    let started = Instant::now();
    let first = connection.vote(vote_request(), option()).await;
    assert!(matches!(first, Err(RPCError::Unreachable(_))), "{first:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );

    let started = Instant::now();
    let second = connection.vote(vote_request(), option()).await;
    assert!(
        matches!(second, Err(RPCError::Unreachable(_))),
        "{second:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));

    // A TTL shorter than the handshake times the call out instead.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let short = RPCOption::new(Duration::from_millis(100));
    let timed_out = connection.vote(vote_request(), short).await;
    assert!(
        matches!(timed_out, Err(RPCError::Timeout(_))),
        "{timed_out:?}"
    );

    let forwarded = client
        .network(2)
        .forward(1, &target, Command::DeleteRoute { model: "m".into() })
        .await;
    assert!(
        matches!(forwarded, Err(ForwardError::Network { .. })),
        "{forwarded:?}"
    );
}

#[tokio::test]
async fn frames_over_the_limit_are_refused() {
    let dir = cluster_certs(2);
    let small = NetworkSettings {
        max_frame: 4096,
        ..fast()
    };
    let (_server, recorder, target) = recorded_server(dir.path(), small.clone());

    // The server reads the length first and refuses before reading on.
    let (_endpoint, mut send, mut recv) = raw_stream(dir.path(), "n2", &target).await;
    send.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    send.write_all(&[1, 0, 0, 0]).await.unwrap();
    let response: RaftResponse = read_frame(&mut recv, 1 << 20).await.unwrap();
    match response {
        RaftResponse::Failure(message) => assert!(message.contains("exceeds"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The sender refuses too, without sending: a batch that is too large
    // asks openraft to split it.
    let client = bind(&paths(dir.path(), dir.path(), "n2"), small);
    let mut peer = client_to(&client, &target).await;
    let entry = |index| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 2), index),
        payload: EntryPayload::Normal(Command::DeleteRoute {
            model: "x".repeat(3000),
        }),
    };
    let request = |entries| AppendEntriesRequest {
        vote: Vote::new_committed(1, 2),
        prev_log_id: None,
        entries,
        leader_commit: None,
    };
    let split = peer
        .append_entries(request(vec![entry(1), entry(2)]), option())
        .await;
    assert!(
        matches!(split, Err(RPCError::PayloadTooLarge(_))),
        "{split:?}"
    );
    let single = peer
        .append_entries(request(vec![entry(1)]), option())
        .await
        .unwrap();
    assert_eq!(single, AppendEntriesResponse::Success);
    assert_eq!(recorder.calls(), 1, "only the frame that fits arrives");
}

#[tokio::test]
async fn load_errors_name_the_file() {
    let dir = cluster_certs(1);
    let mut tls = paths(dir.path(), dir.path(), "n1");
    tls.key = dir.path().join("missing.key");
    let e = Transport::bind("127.0.0.1:0".parse().unwrap(), &tls, fast())
        .err()
        .unwrap();
    assert!(e.to_string().contains("missing.key"), "{e}");
    tls.key = dir.path().join("n1.pem");
    let e = Transport::bind("127.0.0.1:0".parse().unwrap(), &tls, fast())
        .err()
        .unwrap();
    assert!(e.to_string().contains("n1.pem"), "{e}");
}

// ------------------------------------------------- a cluster over the wire

fn key(name: &str) -> Command {
    Command::PutKey(KeyRecord {
        name: name.into(),
        sha256: "ab".repeat(32),
        limits: Default::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_elects_writes_and_forwards() {
    let dir = cluster_certs(3);
    let config = Arc::new(
        openraft::Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    );

    // Two-phase start, as a node does it: bind, build Raft on the
    // transport's network, then serve with that Raft.
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let transport = bind(&paths(dir.path(), dir.path(), &format!("n{id}")), fast());
        let (logs, machine) = store::open(&dir.path().join(format!("data{id}"))).unwrap();
        let applied = machine.subscribe();
        let raft = Raft::new(id, config.clone(), transport.network(id), logs, machine)
            .await
            .unwrap();
        transport.serve(raft.clone());
        nodes.insert(id, (transport, raft, applied));
    }
    let members: BTreeMap<NodeId, Member> = nodes
        .iter()
        .map(|(id, (t, _, _))| (*id, member(t.local_addr().unwrap())))
        .collect();
    nodes[&1].1.initialize(members.clone()).await.unwrap();

    let metrics = nodes[&1]
        .1
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    let leader = metrics.current_leader.unwrap();
    let follower = *members.keys().find(|id| **id != leader).unwrap();

    let written = nodes[&leader].1.client_write(key("direct")).await.unwrap();
    assert_eq!(written.data, CommandResponse::Applied { changed: true });

    // A follower's write goes to the leader over the transport.
    let network = nodes[&follower].0.network(follower);
    let forwarded = network
        .forward(leader, &members[&leader], key("forwarded"))
        .await;
    assert_eq!(
        forwarded.map(|w| w.response),
        Ok(CommandResponse::Applied { changed: true })
    );
    // Sent to a follower instead, it names the leader.
    match network
        .forward(follower, &members[&follower], key("lost"))
        .await
    {
        Err(ForwardError::NotLeader {
            leader_id: Some(id),
            leader: Some(m),
        }) => {
            assert_eq!(id, leader);
            assert_eq!(m, members[&leader]);
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // A follower's linearizable read: the leader names its read index (at
    // least the forwarded write), and a follower refuses, naming the leader.
    let read = network
        .read_index(leader, &members[&leader])
        .await
        .unwrap()
        .unwrap();
    assert!(
        read > written.log_id.index,
        "read index {read} is behind the writes"
    );
    assert!(matches!(
        network.read_index(follower, &members[&follower]).await,
        Err(ForwardError::NotLeader { leader_id: Some(id), .. }) if id == leader
    ));

    // Every node applies both writes.
    let last = nodes[&leader]
        .1
        .metrics()
        .borrow()
        .last_applied
        .unwrap()
        .index;
    for (id, (_, raft, applied)) in &nodes {
        raft.wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(last), "both writes")
            .await
            .unwrap();
        let keys: BTreeSet<String> = applied.borrow().state.keys.keys().cloned().collect();
        assert_eq!(
            keys,
            BTreeSet::from(["direct".to_string(), "forwarded".to_string()]),
            "node {id}"
        );
    }

    for (_, (transport, raft, _)) in nodes {
        raft.shutdown().await.unwrap();
        transport.close().await;
    }
}

/// Pre-vote in a real cluster: with openraft's own election timer off, the
/// campaigner elects a leader; a follower that hears its leader refuses a
/// pre-vote, and so does the leader while a quorum acknowledges it, so a
/// node that lost only its own link to the leader cannot raise the term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_votes_elect_a_leader_and_are_refused_while_it_is_heard() {
    let dir = cluster_certs(3);
    let config = Arc::new(
        openraft::Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    );
    let timing = campaign::Timing::of(&config);
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let transport = bind(&paths(dir.path(), dir.path(), &format!("n{id}")), fast());
        let (logs, machine) = store::open(&dir.path().join(format!("data{id}"))).unwrap();
        let raft = Raft::new(
            id,
            config.clone(),
            transport.network(id),
            logs.clone(),
            machine,
        )
        .await
        .unwrap();
        transport.serve(Voter::new(
            raft.clone(),
            logs.clone(),
            timing.lease,
            (1..=3).collect(),
        ));
        tokio::spawn(campaign::run(
            id,
            raft.clone(),
            transport.network(id),
            logs,
            timing,
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        ));
        nodes.insert(id, (transport, raft));
    }
    let members: BTreeMap<NodeId, Member> = nodes
        .iter()
        .map(|(id, (t, _))| (*id, member(t.local_addr().unwrap())))
        .collect();
    nodes[&1].1.initialize(members.clone()).await.unwrap();

    // Elected by the campaigner alone: openraft's timer is off.
    let metrics = nodes[&1]
        .1
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    let leader = metrics.current_leader.unwrap();
    let term = metrics.current_term;
    let mut followers = members.keys().filter(|id| **id != leader);
    let (a, b) = (*followers.next().unwrap(), *followers.next().unwrap());
    nodes[&leader].1.client_write(key("k")).await.unwrap();
    let last = nodes[&leader].1.metrics().borrow().last_log_index;
    nodes[&a]
        .1
        .wait(Some(Duration::from_secs(10)))
        .log_index_at_least(last, "replicated")
        .await
        .unwrap();

    // Follower `a` asks with a log as long as anyone's: refused by the
    // leader (a quorum acknowledges it) and by follower `b` (it hears it).
    let asker = PreVote {
        last_log_id: nodes[&a].1.metrics().borrow().last_applied,
    };
    let network = nodes[&a].0.network(a);
    for target in [leader, b] {
        let answer = network
            .pre_vote(target, &members[&target], asker.clone())
            .await
            .unwrap();
        assert_eq!(answer, PreVoteAnswer::LeaderAlive, "node {target}");
    }
    // An asker with an empty log would lose the real vote too.
    let behind = network
        .pre_vote(leader, &members[&leader], PreVote { last_log_id: None })
        .await
        .unwrap();
    assert_eq!(behind, PreVoteAnswer::LeaderAlive);

    // Kill the leader: the two others elect one of themselves.
    let (transport, raft) = nodes.remove(&leader).unwrap();
    raft.shutdown().await.unwrap();
    transport.close().await;
    drop(transport);
    let metrics = nodes[&a]
        .1
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != leader) && m.current_term > term,
            "a new leader",
        )
        .await
        .unwrap();
    assert!([a, b].contains(&metrics.current_leader.unwrap()));

    for (_, (transport, raft)) in nodes {
        raft.shutdown().await.unwrap();
        transport.close().await;
    }
}

/// A health report sent straight to a member is filed under the id the
/// sender's certificate proves, whatever the report says; a node of the CA
/// that is not a member gets its report refused, and nothing is filed.
#[tokio::test]
async fn health_reports_are_filed_under_the_senders_certificate_and_only_from_members() {
    let dir = cluster_certs(3);
    let config = Arc::new(
        openraft::Config {
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    );
    let one = bind(&paths(dir.path(), dir.path(), "n1"), fast());
    let (logs, machine) = store::open(&dir.path().join("data1")).unwrap();
    let raft = Raft::new(1, config, one.network(1), logs.clone(), machine)
        .await
        .unwrap();
    let filed: Arc<std::sync::Mutex<Vec<(NodeId, u64)>>> = Arc::default();
    let sink: HealthSink = {
        let filed = filed.clone();
        Arc::new(move |from, report: proto::health::HealthReport| {
            filed.lock().unwrap().push((from, report.seq));
            Ok(())
        })
    };
    one.serve(
        Voter::new(
            raft.clone(),
            logs,
            Duration::from_secs(1),
            (1..=2).collect(),
        )
        .with_health(sink),
    );
    let target = member(one.local_addr().unwrap());
    let two = bind(&paths(dir.path(), dir.path(), "n2"), fast());
    let members = BTreeMap::from([(1, target.clone()), (2, member(two.local_addr().unwrap()))]);
    raft.initialize(members).await.unwrap();

    let report = |seq| proto::health::HealthReport {
        seq,
        region: "r2".into(),
        window_ms: 30_000,
        ..Default::default()
    };
    let sent = two
        .network(2)
        .send_health(1, &target, report(5), Duration::from_secs(5))
        .await;
    assert_eq!(sent, Ok(()));
    assert_eq!(*filed.lock().unwrap(), vec![(2, 5)]);

    // Node 3's certificate is the CA's, but node 3 is no member.
    let three = bind(&paths(dir.path(), dir.path(), "n3"), fast());
    let refused = three
        .network(3)
        .send_health(1, &target, report(9), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(refused.contains("not a member"), "{refused}");
    assert_eq!(
        *filed.lock().unwrap(),
        vec![(2, 5)],
        "a stranger's report was filed"
    );
    // A stranger is answered before its request is read: a frame that
    // claims 32 MiB and sends four bytes of it gets the refusal at once,
    // not a wait for (and a buffer of) the rest.
    let (_endpoint, mut send, mut recv) = raw_stream(dir.path(), "n3", &target).await;
    send.write_all(&(32u32 << 20).to_be_bytes()).await.unwrap();
    send.write_all(&[1, 0, 0, 0]).await.unwrap();
    let response: RaftResponse =
        tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv, 1 << 20))
            .await
            .expect("the stranger's half-sent frame was waited for")
            .unwrap();
    assert!(
        matches!(
            response,
            RaftResponse::Refused(Refusal::NotAMember { caller: 3 })
        ),
        "{response:?}"
    );
}
