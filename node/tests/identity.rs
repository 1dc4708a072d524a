//! Node identity with real processes: three `meridian` nodes on loopback
//! with mutual TLS over QUIC, and an adversary built on the Raft
//! transport's public API that holds a CA-signed certificate (of a member,
//! or of a node never added) and sends raw Raft requests, as the attacks of
//! issue #11 did. Every attack must be refused, nothing applied, no node
//! left diverging, no process panicking; a `meridian serve` presenting
//! another node's certificate cannot join; a removed node's certificate
//! stops working; and a node whose Raft core stops exits non-zero.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use proto::config::{RouteConfig, UpstreamConfig};
use proto::state::{Command, KeyRecord, Member, NodeInfo};
use raft::TypeConfig;
use raft::network::{ForwardError, NetworkSettings, TlsPaths, Transport};
use serde_json::{Value, json};
use support::cluster::{Cluster, Options, poll, route, write_certs};

/// A process that is not a node but holds a node certificate of the
/// cluster's CA, and talks Raft through the real transport.
struct Adversary {
    transport: Transport,
    /// The node id its certificate names.
    id: u64,
}

impl Adversary {
    /// Presents `NAME.pem` from `certs` (which names node `id`).
    fn new(certs: &Path, name: &str, id: u64) -> Adversary {
        let tls = TlsPaths {
            ca: certs.join("ca.pem"),
            cert: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}.key")),
        };
        let settings = NetworkSettings {
            connect_timeout: Duration::from_secs(2),
            forward_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..NetworkSettings::default()
        };
        let transport = Transport::bind("127.0.0.1:0".parse().unwrap(), &tls, settings).unwrap();
        Adversary { transport, id }
    }

    /// Sends a write for node `target` to propose.
    async fn forward(&self, cluster: &Cluster, target: u64, command: Command) -> String {
        let answer = self
            .transport
            .network(self.id)
            .forward(target, &member(cluster, target), command)
            .await;
        match answer {
            Err(ForwardError::Network { message, .. }) => message,
            other => panic!("the forward to node {target} was not refused: {other:?}"),
        }
    }

    /// Sends an AppendEntries to node `target`; the refusal's text.
    async fn append(
        &self,
        cluster: &Cluster,
        target: u64,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<String, String> {
        let mut peer = self
            .transport
            .network(self.id)
            .new_client(target, &member(cluster, target))
            .await;
        match peer.append_entries(rpc, option()).await {
            Err(RPCError::Unreachable(e)) => Ok(e.to_string()),
            other => Err(format!("{other:?}")),
        }
    }

    /// Sends a Vote to node `target`; the refusal's text.
    async fn vote(&self, cluster: &Cluster, target: u64, rpc: VoteRequest<u64>) -> String {
        let mut peer = self
            .transport
            .network(self.id)
            .new_client(target, &member(cluster, target))
            .await;
        match peer.vote(rpc, option()).await {
            Err(RPCError::Unreachable(e)) => e.to_string(),
            other => panic!("the vote to node {target} was not refused: {other:?}"),
        }
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(3))
}

fn member(cluster: &Cluster, id: u64) -> Member {
    Member {
        raft_addr: cluster.node(id).raft_addr(),
        ..Member::default()
    }
}

fn forged_route() -> Command {
    let route: RouteConfig = serde_json::from_value(json!({
        "model": "forged",
        "tiers": [[{ "upstream": "evil", "model": "x" }]],
    }))
    .unwrap();
    Command::PutRoute(route)
}

fn forged_upstream() -> Command {
    let upstream: UpstreamConfig = serde_json::from_value(json!({
        "id": "evil",
        "base_url": "http://127.0.0.1:9/v1",
    }))
    .unwrap();
    Command::PutUpstream(upstream)
}

fn forged_key() -> Command {
    Command::PutKey(KeyRecord {
        name: "forged".into(),
        sha256: "ab".repeat(32),
        limits: Default::default(),
    })
}

/// An entry as the leader `leader` of `term` would write it.
fn entry(term: u64, leader: u64, index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, leader), index),
        payload: EntryPayload::Normal(command),
    }
}

fn log_id(term: u64, leader: u64, index: u64) -> Option<LogId<u64>> {
    Some(LogId::new(CommittedLeaderId::new(term, leader), index))
}

/// What a node has applied that an attack could change: upstreams, routes,
/// keys (names) and what each member announced.
async fn applied(cluster: &Cluster, id: u64) -> Value {
    let mut out = serde_json::Map::new();
    for kind in ["upstreams", "routes", "keys"] {
        let reply = cluster
            .get(id, &format!("/admin/v1/{kind}?stale=true"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        out.insert(kind.into(), reply.json());
    }
    let view = cluster.view(id).await;
    let members: BTreeMap<String, Value> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].to_string(),
                json!([m["admin_addr"], m["role"], m["raft_addr"]]),
            )
        })
        .collect();
    out.insert("members".into(), json!(members));
    Value::Object(out)
}

/// Writes a route on the leader and waits until every running node has
/// applied it: a follower cut off from the leader's log never does.
async fn barrier(cluster: &Cluster, leader: u64, model: &str) {
    cluster.put_route(leader, model, &route("x")).await;
    for id in cluster.up() {
        cluster
            .await_route(id, model, Duration::from_secs(10))
            .await;
    }
}

/// Every running node alive, ready, and on the same applied state, with no
/// trace of the forged writes.
async fn nobody_diverged(cluster: &mut Cluster, leader: u64, term: u64, barrier_model: &str) {
    barrier(cluster, leader, barrier_model).await;
    let reference = applied(cluster, leader).await;
    let text = reference.to_string();
    for forged in ["forged", "evil", "127.0.0.1:9/", "attacker"] {
        assert!(
            !text.contains(forged),
            "{forged} was applied: {reference:#}"
        );
    }
    for id in cluster.up() {
        assert_eq!(applied(cluster, id).await, reference, "node {id} diverged");
        assert!(
            cluster
                .wait_exit(id, Duration::from_millis(1))
                .await
                .is_none(),
            "node {id} exited"
        );
        let ready = cluster.get(id, "/readyz").await;
        assert_eq!(ready.status, StatusCode::OK, "node {id}: {}", ready.text());
        let log = cluster.log(id);
        assert!(!log.contains("panicked"), "node {id} panicked:\n{log}");
        let view = cluster.view(id).await;
        assert_eq!(view["term"].as_u64(), Some(term), "node {id}: {view}");
        assert_eq!(view["leader"].as_u64(), Some(leader), "node {id}: {view}");
    }
    // The data plane does not know the forged key.
    let reply = cluster
        .chat(leader, barrier_model, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn every_attack_with_a_ca_signed_certificate_is_refused() {
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    barrier(&cluster, leader, "before").await;
    let view = cluster.view(leader).await;
    let term = view["term"].as_u64().unwrap();
    let mut others = cluster.up().into_iter().filter(|&id| id != leader);
    // The attacker holds the certificate of one follower and attacks the
    // other (and the leader).
    let (insider, victim) = (others.next().unwrap(), others.next().unwrap());
    let certs = cluster.certs();
    // A certificate of the cluster's CA for a node that was never added.
    write_certs(&certs, &["n9".to_string()]);
    let outsider = Adversary::new(&certs, "n9", 9);
    let inside = Adversary::new(&certs, &format!("n{insider}"), insider);

    // Forward(PutRoute / PutUpstream / PutKey) from a non-member.
    for command in [forged_route(), forged_upstream(), forged_key()] {
        let refused = outsider.forward(&cluster, leader, command).await;
        assert!(refused.contains("node 9 is not a member"), "{refused}");
    }
    // ReadIndex too: a non-member learns nothing.
    let read = outsider
        .transport
        .network(9)
        .read_index(leader, &member(&cluster, leader))
        .await;
    assert!(
        matches!(&read, Err(ForwardError::Network { message, .. }) if message.contains("not a member")),
        "{read:?}"
    );

    // Forward(Announce { id: leader, admin_addr: attacker }) with a member's
    // certificate.
    let announce = Command::Announce {
        id: leader,
        info: NodeInfo {
            admin_addr: "127.0.0.1:1 attacker".into(),
            region: "attacker".into(),
        },
    };
    let refused = inside.forward(&cluster, leader, announce).await;
    assert!(
        refused.contains(&format!(
            "node {insider} sent Forward(Announce) claiming to be node {leader}"
        )),
        "{refused}"
    );

    // AppendEntries to a follower, posing as the leader in its own term,
    // with the next entry a forged route.
    let last = cluster.view(victim).await["last_log_index"]
        .as_u64()
        .unwrap();
    let posing = AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: log_id(term, leader, last),
        entries: vec![entry(term, leader, last + 1, forged_route())],
        leader_commit: log_id(term, leader, last + 1),
    };
    let refused = inside.append(&cluster, victim, posing).await.unwrap();
    assert!(
        refused.contains(&format!(
            "node {insider} sent AppendEntries claiming to be node {leader}"
        )),
        "{refused}"
    );
    // The same from a non-member: refused before its request is even read.
    let posing = AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: log_id(term, leader, last),
        entries: vec![entry(term, leader, last + 1, forged_route())],
        leader_commit: None,
    };
    let refused = outsider.append(&cluster, victim, posing).await.unwrap();
    assert!(refused.contains("node 9 is not a member"), "{refused}");

    // AppendEntries with a higher term and a conflicting entry below the
    // commit index, posing as the leader.
    let conflicting = AppendEntriesRequest {
        vote: Vote::new_committed(term + 5, leader),
        prev_log_id: log_id(term, leader, 1),
        entries: vec![entry(term + 5, leader, 2, forged_route())],
        leader_commit: log_id(term + 5, leader, 2),
    };
    let refused = inside.append(&cluster, victim, conflicting).await.unwrap();
    assert!(refused.contains("claiming to be node"), "{refused}");

    // Vote as a non-member, and as another node.
    let refused = outsider
        .vote(
            &cluster,
            victim,
            VoteRequest::new(Vote::new(term + 5, 9), None),
        )
        .await;
    assert!(refused.contains("node 9 is not a member"), "{refused}");
    let refused = inside
        .vote(
            &cluster,
            victim,
            VoteRequest::new(Vote::new(term + 5, leader), log_id(term + 5, leader, 1000)),
        )
        .await;
    assert!(
        refused.contains(&format!(
            "node {insider} sent Vote claiming to be node {leader}"
        )),
        "{refused}"
    );
    // The answer reveals nothing of the victim's vote or log.
    assert!(!refused.contains("last_log_id"), "{refused}");

    nobody_diverged(&mut cluster, leader, term, "after-attacks").await;
    let admin_addr = cluster.node(leader).admin.clone();
    let listed = cluster.view(victim).await["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == leader)
        .unwrap()["admin_addr"]
        .clone();
    assert_eq!(listed, json!(admin_addr));
    // Each refusal is logged at warn with the caller and what it claimed.
    let logs = format!("{}{}", cluster.log(leader), cluster.log(victim));
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("raft request refused")
            && l.contains(&format!("caller={insider}"))
            && l.contains(&format!("claiming to be node {leader}"))),
        "no warning names the impersonation"
    );

    // A removed node's certificate stops working when it is removed.
    let reply = cluster
        .delete(leader, &format!("/admin/v1/members/{insider}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let removed = Adversary::new(&certs, &format!("n{insider}"), insider);
    let refused = poll(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let answer = removed
                .transport
                .network(insider)
                .forward(leader, &member(&cluster, leader), forged_key())
                .await;
            match answer {
                Err(ForwardError::Network { message, .. }) if message.contains("not a member") => {
                    Some(message)
                }
                Ok(applied) => panic!("a removed node's write was applied: {applied:?}"),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        refused.is_some(),
        "the removed node's certificate still works"
    );
    let refused = removed
        .vote(
            &cluster,
            victim,
            VoteRequest::new(
                Vote::new(term + 7, insider),
                log_id(term + 7, insider, 1000),
            ),
        )
        .await;
    assert!(
        refused.contains(&format!("node {insider} is not a member")),
        "{refused}"
    );
    cluster.kill_9(insider).await;
    let after = cluster.view(leader).await["term"].as_u64().unwrap();
    nobody_diverged(&mut cluster, leader, after, "after-removal").await;
}

#[tokio::test]
async fn a_node_presenting_another_nodes_certificate_cannot_join() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let term = cluster.view(leader).await["term"].as_u64().unwrap();
    let holder = cluster.up().into_iter().find(|&id| id != leader).unwrap();
    // Node 4, with a valid certificate of the cluster's CA: node `holder`'s.
    let mut impostor = cluster.spawn_impostor(4, holder);
    let add = cluster
        .try_admin(
            leader,
            Method::POST,
            "/admin/v1/members",
            Some(&json!({ "id": 4, "raft_addr": impostor.raft_addr(), "voter": false })),
            Duration::from_secs(3),
        )
        .await;
    eprintln!(
        "POST /admin/v1/members for the impostor: {}",
        match &add {
            Ok(reply) => format!("{} {}", reply.status, reply.text()),
            Err(e) => e.clone(),
        }
    );
    for i in 0..3 {
        let model = format!("with-impostor-{i}");
        cluster.put_route(i % 3 + 1, &model, &route(&model)).await;
    }
    let ready = support::cluster::read_ready(&mut impostor.child, Duration::from_secs(3)).await;
    assert!(ready.is_none(), "the impostor got ready: {ready:?}");
    let view = cluster.view(leader).await;
    let listed = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .cloned()
        .expect("node 4 is not listed");
    assert_eq!(
        listed["matched_index"].as_u64().unwrap_or(0),
        0,
        "the impostor received the log: {listed}"
    );
    assert_eq!(view["term"].as_u64(), Some(term), "the term moved: {view}");
    assert_eq!(view["role"], "leader");
    // The leader refused the server at node 4's address for its certificate.
    let refused = poll(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let log = cluster.log(leader);
            log.lines()
                .find(|l| l.contains(&format!("node {holder}'s, not node 4's")))
                .map(str::to_owned)
        },
    )
    .await;
    assert!(refused.is_some(), "the leader's log names no refusal");
    // It found a cluster running at the members of its file and did not
    // bootstrap one, so it never campaigned (a Vote claiming to be node 4
    // with node `holder`'s certificate is refused anyway: see
    // `every_attack_with_a_ca_signed_certificate_is_refused`).
    assert!(
        impostor
            .log()
            .contains("a cluster already runs at the members of this file"),
        "{}",
        impostor.log()
    );
    let reply = cluster.delete(leader, "/admin/v1/members/4").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(cluster.view(leader).await["term"].as_u64(), Some(term));
}

/// `meridian certs` names each node's id; a name without one is refused
/// with status 64 and writes nothing.
#[test]
fn the_certs_command_names_node_ids() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .arg("certs")
            .arg("--dir")
            .arg(&certs)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["n1", "eu-west=7"]);
    assert!(out.status.success(), "{out:?}");
    let id = |name: &str| {
        let pem = std::fs::read(certs.join(format!("{name}.pem"))).unwrap();
        raft::certs::node_id(&CertificateDer::from_pem_slice(&pem).unwrap()).unwrap()
    };
    assert_eq!((id("n1"), id("eu-west")), (1, 7));
    for bad in ["eu-west", "n1x", "x=-1", "x=", "n"] {
        let out = run(&["n2", bad]);
        assert_eq!(out.status.code(), Some(64), "{bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("has no node id"), "{bad}: {stderr}");
        assert!(!certs.join("n2.pem").exists(), "{bad}: n2.pem was written");
    }
}

/// A member (here, an adversary holding a member's certificate and
/// speaking as that member, which the identity rules allow) sends a
/// follower an AppendEntries with a higher term and an entry conflicting
/// with one the follower has committed. Raft assumes no member does that;
/// openraft's core stops on it. The node must then say so and exit
/// non-zero (systemd restarts it on its data dir) rather than serve on as a
/// zombie, and come back when restarted.
#[tokio::test]
async fn a_node_whose_raft_core_stops_exits_non_zero() {
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    barrier(&cluster, leader, "before").await;
    let mut others = cluster.up().into_iter().filter(|&id| id != leader);
    let (insider, victim) = (others.next().unwrap(), others.next().unwrap());
    let view = cluster.view(victim).await;
    let term = view["term"].as_u64().unwrap();
    let committed = view["commit_index"].as_u64().unwrap();
    let inside = Adversary::new(&cluster.certs(), &format!("n{insider}"), insider);
    let conflicting = AppendEntriesRequest {
        vote: Vote::new_committed(term + 1, insider),
        prev_log_id: log_id(term, leader, committed - 2),
        entries: vec![entry(term + 1, insider, committed - 1, forged_route())],
        leader_commit: log_id(term + 1, insider, committed - 1),
    };
    let answer = inside.append(&cluster, victim, conflicting).await;
    eprintln!("conflicting AppendEntries below the commit index: {answer:?}");
    let status = cluster.wait_exit(victim, Duration::from_secs(20)).await;
    let log = cluster.log(victim);
    let status = status.unwrap_or_else(|| panic!("node {victim} kept running; its log:\n{log}"));
    assert!(!status.success(), "node {victim} exited with {status}");
    assert_eq!(status.code(), Some(1), "{status}");
    let said = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("the Raft core stopped"))
        .unwrap_or_else(|| panic!("no error line names the stopped core:\n{log}"));
    eprintln!("{said}");
    cluster.restart(victim).await;
    barrier(&cluster, cluster.leader().await, "after-restart").await;
}

/// The identity rules let a legitimate node join: node 4 with its own
/// certificate, added by the operator, catches up, becomes a voter and
/// announces itself.
#[tokio::test]
async fn a_node_with_its_own_certificate_joins() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    barrier(&cluster, leader, "before").await;
    let term = cluster.view(leader).await["term"].as_u64().unwrap();
    let mut joiner = cluster.spawn_joiner(4);
    assert!(
        joiner.listening(Duration::from_secs(20)).await,
        "node 4 never bound its Raft port:\n{}",
        joiner.log()
    );
    add_and_await(&cluster, leader, &mut joiner).await;
    let view = cluster.view(leader).await;
    let listed = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .cloned()
        .unwrap();
    assert_eq!(listed["role"], "voter", "{listed}");
    // Its announcement (its own id) was taken.
    let announced = poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let view = cluster.view(leader).await;
            let four = view["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == 4)
                .cloned()?;
            four["admin_addr"].is_string().then_some(four)
        },
    )
    .await;
    assert!(announced.is_some(), "node 4 never announced itself");
    // Started before it was added, node 4 wanted to campaign in the cluster
    // of its own file (the runbook's "started the other way round"), but
    // its pre-votes are refused while it is not a member (and while the
    // members hear their leader), so it never raised its term: joining
    // costs no election.
    barrier(&cluster, leader, "after-join").await;
    let after = cluster.view(leader).await["term"].as_u64().unwrap();
    assert_eq!(after, term, "adding node 4 cost an election");
    assert!(
        !joiner.log().contains("raft request refused"),
        "{}",
        joiner.log()
    );
}

/// Removing the leader itself: it must still replicate and commit the
/// change that removes it (its followers take it until that change is
/// committed on them), then the others carry on without it.
#[tokio::test]
async fn the_leader_can_remove_itself() {
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    barrier(&cluster, leader, "before").await;
    let reply = cluster
        .try_admin(
            leader,
            Method::DELETE,
            &format!("/admin/v1/members/{leader}"),
            None,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    cluster.kill_9(leader).await;
    let next = cluster
        .leader_within(Duration::from_secs(10))
        .await
        .expect("the remaining nodes elect no leader");
    assert_ne!(next, leader);
    barrier(&cluster, next, "after-removing-the-leader").await;
    let view = cluster.view(next).await;
    let ids: Vec<u64> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert!(!ids.contains(&leader), "{view}");
    assert_eq!(ids.len(), 2, "{view}");
}

/// A node waiting to be added takes Raft only from the members its file
/// names. Another node of the same CA (here the leader of a cluster of its
/// own) tries to add it first: the waiting node refuses it, stays free, and
/// the real cluster then adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_waiting_to_be_added_cannot_be_captured_by_another_node_of_the_ca() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let mut rogue = cluster.spawn_rogue(4);
    let (_, rogue_admin) = support::cluster::read_ready(&mut rogue.child, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("the rogue node never got ready:\n{}", rogue.log()));
    let mut joiner = cluster.spawn_joiner(5);
    assert!(
        joiner.listening(Duration::from_secs(20)).await,
        "node 5 never bound its Raft port:\n{}",
        joiner.log()
    );

    let captured = cluster
        .http
        .send(
            Method::POST,
            &format!("http://{rogue_admin}/admin/v1/members"),
            Some(json!({ "id": 5, "raft_addr": joiner.raft_addr(), "voter": true }).to_string()),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    // A voter is promoted only once it holds the log: node 5 never took it.
    assert_eq!(
        captured.status,
        StatusCode::GATEWAY_TIMEOUT,
        "node 5 was captured by node 4's cluster: {}",
        captured.text()
    );
    assert_eq!(captured.json()["error"]["code"], "not_caught_up");
    let refused = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            joiner
                .log()
                .contains("node 4 is not in this node's cluster.members")
                .then_some(())
        },
    )
    .await;
    assert!(
        refused.is_some(),
        "node 5 never said why:\n{}",
        joiner.log()
    );

    add_and_await(&cluster, leader, &mut joiner).await;
}

/// Adds `joiner` as a voter on `leader` (asserting a 200) and waits until it
/// prints its ready line.
async fn add_and_await(cluster: &Cluster, leader: u64, joiner: &mut support::cluster::Stranger) {
    let add = cluster
        .try_admin(
            leader,
            Method::POST,
            "/admin/v1/members",
            Some(&json!({ "id": joiner.id, "raft_addr": joiner.raft_addr(), "voter": true })),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(
        add.status,
        StatusCode::OK,
        "{}\n{}",
        add.text(),
        joiner.log()
    );
    let ready = support::cluster::read_ready(&mut joiner.child, Duration::from_secs(20)).await;
    assert!(
        ready.is_some(),
        "node {} never got ready:\n{}",
        joiner.id,
        joiner.log()
    );
}
