//! A cluster whose Raft members are addressed by DNS name, as a Kubernetes
//! StatefulSet's pods are (`meridian-us-0.meridian-us-raft…:7080`): here
//! `localhost:PORT` for each node, the one name that resolves offline. It
//! forms, elects a leader, commits a write and serves it; `members add`
//! takes a name too, refuses malformed ones naming `raft_addr`, and a name
//! that does not resolve is retried at each dial without harming the rest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use support::cluster::{Cluster, Options, poll, route};

#[tokio::test]
async fn a_cluster_addressed_by_dns_names_forms_commits_and_serves() {
    let cluster = Cluster::start_at(3, Options::fast(), "localhost").await;
    let leader = cluster.leader().await;

    // The membership keeps the names as written.
    let view = cluster.view(leader).await;
    let members = view["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{view}");
    for member in members {
        let addr = member["raft_addr"].as_str().unwrap();
        assert!(addr.starts_with("localhost:"), "{member}");
    }

    // A write on a follower is forwarded to the leader by name, committed,
    // and served by every node.
    let writer = (1..=3).find(|&id| id != leader).unwrap();
    let ack = cluster
        .put_route(writer, "named", &route("named-model"))
        .await;
    assert_eq!(ack["changed"], true, "{ack}");
    for id in 1..=3 {
        let served = poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let reply = cluster
                    .chat(id, "named", Duration::from_secs(2))
                    .await
                    .ok()?;
                (reply.status == StatusCode::OK).then_some(reply)
            },
        )
        .await
        .unwrap_or_else(|| panic!("node {id} never served `named`"));
        assert_eq!(served.json()["model"], "named-model", "{}", served.text());
    }

    // Malformed addresses are refused naming the field; nothing is added.
    let long = format!("{}:7080", "a".repeat(300));
    for bad in [
        "",
        "localhost",
        "localhost:0",
        "localhost:70000",
        "bad host:7080",
        "bad_host:7080",
        "::1:7080",
        long.as_str(),
    ] {
        let reply = cluster
            .post(
                leader,
                "/admin/v1/members",
                &json!({ "id": 9, "raft_addr": bad, "voter": false }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["error"]["param"], "raft_addr", "{bad:?}");
    }
    let view = cluster.view(leader).await;
    assert_eq!(view["members"].as_array().unwrap().len(), 3, "{view}");

    // A well-formed name that does not resolve (a pod not scheduled yet) is
    // accepted; dialling it fails and is retried, and the cluster goes on.
    // openraft's add_learner waits for the learner to catch up, which it
    // never does, so the call gets a short deadline; the membership change
    // is committed before that wait.
    let _ = cluster
        .try_admin(
            leader,
            Method::POST,
            "/admin/v1/members",
            Some(&json!({ "id": 9, "raft_addr": "meridian-9.no-such-node.invalid:7080", "voter": false })),
            Duration::from_secs(3),
        )
        .await;
    let listed = poll(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let view = cluster.view(leader).await;
            view["members"]
                .as_array()?
                .iter()
                .find(|m| m["id"] == 9)
                .cloned()
        },
    )
    .await
    .expect("the unresolvable learner was not added");
    assert_eq!(listed["raft_addr"], "meridian-9.no-such-node.invalid:7080");
    assert_eq!(listed["role"], "learner");
    for i in 0..3 {
        let model = format!("after-unresolvable-{i}");
        cluster.put_route(i % 3 + 1, &model, &route(&model)).await;
    }
    // The leader's log says why the learner gets nothing.
    let logged = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            cluster
                .log(leader)
                .contains("cannot resolve `meridian-9.no-such-node.invalid`")
                .then_some(())
        },
    )
    .await;
    assert!(logged.is_some(), "{}", cluster.log(leader));
    let reply = cluster.delete(leader, "/admin/v1/members/9").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    for id in 1..=3 {
        let served = poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let reply = cluster
                    .chat(id, "after-unresolvable-2", Duration::from_secs(2))
                    .await
                    .ok()?;
                (reply.status == StatusCode::OK).then_some(())
            },
        )
        .await;
        assert!(served.is_some(), "node {id} stopped serving new routes");
    }
    for id in 1..=3 {
        let log = cluster.log(id);
        assert!(!log.contains("panicked"), "node {id} panicked:\n{log}");
    }
}

/// `meridian members add` checks the address before calling the node: a
/// malformed one is a usage error naming it, and nothing is sent.
#[test]
fn members_add_refuses_a_malformed_address_before_calling_the_node() {
    for (bad, words) in [
        ("localhost:0", "the port must be a number from 1 to 65535"),
        ("bad host:7080", "neither an IP address nor a DNS name"),
        ("nowhere", "no port"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["members", "add", "4", bad, "--admin", "http://127.0.0.1:1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("<RAFT_ADDR>"), "{bad}: {stderr}");
        assert!(stderr.contains(words), "{bad}: {stderr}");
        assert!(!stderr.contains("cannot reach"), "{bad}: {stderr}");
    }
}
