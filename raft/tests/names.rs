//! Peers addressed by DNS name (`localhost:PORT` here, a StatefulSet pod's
//! name in Kubernetes): the name is resolved at each dial, the certificate
//! must still list it, and the peer is still known by the node id its
//! certificate names. A name that does not resolve is a clear, retried
//! error, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::Vote;
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{VoteRequest, VoteResponse};
use proto::state::{Command, CommandResponse, Member};
use raft::NodeId;
use raft::certs;
use raft::network::{
    Lookup, NetworkSettings, RaftRequest, RaftResponse, Resolve, RpcHandler, TlsPaths, Transport,
    Written,
};
use tempfile::TempDir;

/// Certificates for `n1` and `n2` listing `sans`.
fn cluster_certs(sans: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<_> = (1..=2)
        .map(|n| certs::NodeCert {
            name: format!("n{n}"),
            id: n,
            sans: sans.iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    certs::write_cluster(dir.path(), &nodes).unwrap();
    dir
}

fn paths(dir: &TempDir, name: &str) -> TlsPaths {
    TlsPaths {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join(format!("{name}.pem")),
        key: dir.path().join(format!("{name}.key")),
    }
}

fn settings() -> NetworkSettings {
    NetworkSettings {
        connect_timeout: Duration::from_millis(500),
        forward_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(200),
        ..NetworkSettings::default()
    }
}

fn bind(dir: &TempDir, name: &str) -> Transport {
    Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        &paths(dir, name),
        settings(),
    )
    .unwrap()
}

fn member(raft_addr: String) -> Member {
    Member {
        raft_addr,
        admin_addr: String::new(),
        region: "test".into(),
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(3))
}

fn vote() -> VoteRequest<NodeId> {
    VoteRequest::new(Vote::new(1, 2), None)
}

/// Grants every vote and counts the calls that reached it.
#[derive(Clone, Default)]
struct Granting(Arc<AtomicUsize>);

impl RpcHandler for Granting {
    async fn handle(&self, _caller: NodeId, request: RaftRequest) -> RaftResponse {
        self.0.fetch_add(1, Ordering::SeqCst);
        match request {
            RaftRequest::Vote(rpc) => {
                RaftResponse::Vote(Ok(VoteResponse::new(rpc.vote, None, true)))
            }
            RaftRequest::Forward(_) => RaftResponse::Forward(Ok(Written {
                response: CommandResponse::Applied { changed: true },
                index: 7,
            })),
            _ => RaftResponse::Failure("not in this test".into()),
        }
    }
}

/// Node 1 serving on 127.0.0.1, addressed as `localhost:PORT`.
fn server(dir: &TempDir) -> (Transport, Granting, Member) {
    let server = bind(dir, "n1");
    let handler = Granting::default();
    server.serve(handler.clone());
    let port = server.local_addr().unwrap().port();
    (server, handler, member(format!("localhost:{port}")))
}

#[tokio::test]
async fn a_peer_addressed_by_name_completes_rpcs() {
    let dir = cluster_certs(&["127.0.0.1", "localhost"]);
    let (_server, handler, target) = server(&dir);
    let client = bind(&dir, "n2");
    let mut connection = client.network(2).new_client(1, &target).await;
    let granted = connection.vote(vote(), option()).await.unwrap();
    assert!(granted.vote_granted);
    let forwarded = client
        .network(2)
        .forward(1, &target, Command::DeleteRoute { model: "m".into() })
        .await;
    assert_eq!(
        forwarded.map(|w| w.response),
        Ok(CommandResponse::Applied { changed: true })
    );
    assert_eq!(handler.0.load(Ordering::SeqCst), 2);
    // Contact is recorded under the address as the membership spells it.
    assert!(client.network(2).last_contact(&target.raft_addr).is_some());
}

#[tokio::test]
async fn a_name_the_certificate_does_not_list_is_refused() {
    // The certificate names node 1 and 127.0.0.1, but not `localhost`.
    let dir = cluster_certs(&["127.0.0.1"]);
    let (_server, handler, target) = server(&dir);
    let client = bind(&dir, "n2");
    let mut connection = client.network(2).new_client(1, &target).await;
    let refused = connection.vote(vote(), option()).await;
    assert!(
        matches!(&refused, Err(RPCError::Unreachable(_))),
        "{refused:?}"
    );
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unreachable_and_retried() {
    let dir = cluster_certs(&["127.0.0.1", "localhost"]);
    let client = bind(&dir, "n2");
    // `.invalid` never resolves (RFC 2606).
    let target = member("no-such-node.invalid:7080".into());
    let mut connection = client.network(2).new_client(1, &target).await;
    let first = connection.vote(vote(), option()).await;
    let Err(RPCError::Unreachable(e)) = first else {
        panic!("{first:?}")
    };
    assert!(
        e.to_string()
            .contains("cannot resolve `no-such-node.invalid`"),
        "{e}"
    );
    // Past the backoff the name is looked up again, and fails the same way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = connection.vote(vote(), option()).await;
    let Err(RPCError::Unreachable(e)) = again else {
        panic!("{again:?}")
    };
    assert!(e.to_string().contains("cannot resolve"), "{e}");
    assert!(!e.to_string().contains("not redialling yet"), "{e}");
    // Forwarding to a leader at such a name fails the same way.
    let forwarded = client
        .network(2)
        .forward(1, &target, Command::DeleteRoute { model: "m".into() })
        .await;
    assert!(
        format!("{forwarded:?}").contains("no-such-node.invalid"),
        "{forwarded:?}"
    );
}

/// A resolver whose one name moves, as a rescheduled pod's does; counts
/// the lookups.
#[derive(Default)]
struct Moving {
    at: Mutex<Option<SocketAddr>>,
    lookups: AtomicUsize,
}

impl Resolve for Moving {
    fn lookup<'a>(&'a self, addr: &'a str) -> Lookup<'a> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = match addr {
            "meridian-1.raft.test:7080" => *self.at.lock().unwrap(),
            _ => None,
        };
        Box::pin(async move {
            found
                .map(|a| vec![a])
                .ok_or_else(|| std::io::Error::other("no such name"))
        })
    }
}

#[tokio::test]
async fn a_peer_that_moved_is_found_at_its_new_address_on_the_next_dial() {
    let dir = cluster_certs(&["meridian-1.raft.test"]);
    let resolver = Arc::new(Moving::default());
    let client = Transport::bind_resolving(
        "127.0.0.1:0".parse().unwrap(),
        &paths(&dir, "n2"),
        settings(),
        resolver.clone(),
    )
    .unwrap();
    let target = member("meridian-1.raft.test:7080".into());

    let before = bind(&dir, "n1");
    let first = Granting::default();
    before.serve(first.clone());
    *resolver.at.lock().unwrap() = Some(before.local_addr().unwrap());
    let mut connection = client.network(2).new_client(1, &target).await;
    assert!(
        connection
            .vote(vote(), option())
            .await
            .unwrap()
            .vote_granted
    );
    assert_eq!(first.0.load(Ordering::SeqCst), 1);
    let lookups = resolver.lookups.load(Ordering::SeqCst);

    // Node 1 is rescheduled: the old endpoint closes, a new one (same
    // certificate) listens elsewhere, and the name now points there.
    before.close().await;
    drop(before);
    let after = bind(&dir, "n1");
    let second = Granting::default();
    after.serve(second.clone());
    *resolver.at.lock().unwrap() = Some(after.local_addr().unwrap());

    // The call on the closed connection may fail; a later one redials,
    // looks the name up again, and reaches the moved node.
    let mut reached = false;
    for _ in 0..50 {
        if let Ok(answer) = connection.vote(vote(), option()).await {
            assert!(answer.vote_granted);
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reached, "the moved peer was never reached");
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert!(resolver.lookups.load(Ordering::SeqCst) > lookups);
}
