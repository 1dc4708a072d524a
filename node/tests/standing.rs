//! Knowing when a node is out of its cluster, with real processes: a node
//! the cluster removed serves nothing (its data plane answers 503
//! `node_removed`, `/readyz` 503) and campaigns no more; a node cut off
//! from every peer keeps serving the configuration it applied last
//! (fail-static) while `/readyz` says for how long it has heard no quorum
//! and `/readyz?strict=true` answers 503, so GeoDNS can prefer other
//! regions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::cluster::{Cluster, Options, SEED_ROUTE, poll};

#[tokio::test]
async fn a_removed_node_serves_nothing_and_says_why() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let removed = cluster.up().into_iter().find(|&id| id != leader).unwrap();
    let before = cluster
        .chat(removed, SEED_ROUTE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    let term = cluster.view(leader).await["term"].as_u64().unwrap();

    let reply = cluster
        .delete(leader, &format!("/admin/v1/members/{removed}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // The removal reaches the node, which stops serving.
    let ready = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let reply = cluster.get(removed, "/readyz").await;
            (reply.status == StatusCode::SERVICE_UNAVAILABLE && reply.json()["removed"] == true)
                .then_some(reply)
        },
    )
    .await;
    assert!(ready.is_some(), "node {removed} never said it was removed");
    let answer = cluster
        .chat(removed, SEED_ROUTE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert_eq!(
        answer.json()["error"]["code"],
        "node_removed",
        "{}",
        answer.text()
    );
    assert!(
        cluster.log(removed).contains("removed from the cluster"),
        "{}",
        cluster.log(removed)
    );

    // It does not campaign: the others keep their leader and term for
    // longer than its election wait.
    tokio::time::sleep(Duration::from_millis(
        3 * Options::fast().election_timeout_ms,
    ))
    .await;
    let view = cluster.view(leader).await;
    assert_eq!(view["term"].as_u64(), Some(term), "{view}");
    assert_eq!(view["role"], "leader", "{view}");
    // The others still serve.
    let other = cluster.up().into_iter().find(|&id| id != removed).unwrap();
    let served = cluster
        .chat(other, SEED_ROUTE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
}

#[tokio::test]
async fn a_node_cut_off_from_its_cluster_keeps_serving_and_says_so() {
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let alone = cluster.up().into_iter().find(|&id| id != leader).unwrap();
    let ready = cluster.get(alone, "/readyz?strict=true").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(ready.json()["cut_off_ms"].is_null(), "{}", ready.text());

    for id in cluster.up() {
        if id != alone {
            cluster.kill_9(id).await;
        }
    }
    // Past one election timeout without a quorum, it says so.
    let cut_off = poll(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            let reply = cluster.get(alone, "/readyz?strict=true").await;
            (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
        },
    )
    .await
    .expect("/readyz?strict=true never answered 503 on the cut-off node");
    let body = cut_off.json();
    assert!(
        body["cut_off_ms"].as_u64().unwrap() > Options::fast().election_timeout_ms,
        "{body}"
    );
    // Plain /readyz (Kubernetes' probe) stays 200: the node still serves,
    // from the configuration it applied last.
    let plain = cluster.get(alone, "/readyz").await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text());
    assert!(plain.json()["cut_off_ms"].is_u64(), "{}", plain.text());
    let served = cluster
        .chat(alone, SEED_ROUTE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());

    // Hostile query strings are refused or ignored, never a crash.
    for query in ["strict=banana", "strict=", "strict=1&strict=0", "x=%ff%fe"] {
        let reply = cluster.get(alone, &format!("/readyz?{query}")).await;
        assert!(
            reply.status == StatusCode::OK
                || reply.status == StatusCode::SERVICE_UNAVAILABLE
                || reply.status == StatusCode::BAD_REQUEST,
            "{query}: {} {}",
            reply.status,
            reply.text()
        );
    }

    // The cluster back: it hears a quorum again.
    cluster.start_all().await;
    let heard = poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let reply = cluster.get(alone, "/readyz?strict=true").await;
            (reply.status == StatusCode::OK).then_some(reply)
        },
    )
    .await;
    assert!(
        heard.is_some(),
        "node {alone} never heard its cluster again"
    );
}
