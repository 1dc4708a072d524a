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
use support::cluster::{Cluster, Options, SEED_ROUTE, poll, route};

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
    // Past twice the bound (no election can still be under way), a write
    // there is refused at once, naming why: no leader would answer.
    cut_off_for(&cluster, alone, 2 * Options::fast().election_timeout_ms).await;
    let t = std::time::Instant::now();
    let refused = cluster
        .put(alone, "/admin/v1/routes/cut-off", &route("x"))
        .await;
    eprintln!(
        "write on a cut-off follower: {} after {:?}",
        refused.status,
        t.elapsed()
    );
    assert_cut_off(&refused);
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

/// A key revoked on the majority while a node was away (frozen: a long
/// pause, a stalled VM) is refused there as soon as the node hears the
/// leader again: fail-static serves the last configuration, but never past
/// the first append that reaches it.
#[tokio::test]
async fn a_key_revoked_while_a_node_was_away_is_refused_there_on_return() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let away = cluster.up().into_iter().find(|&id| id != leader).unwrap();
    const REVOKED: &str = "sk-revoked-while-away-0123456789";
    for (name, key) in [
        ("kept", "sk-kept-while-away-0123456789"),
        ("revoked", REVOKED),
    ] {
        let reply = cluster
            .put(
                leader,
                &format!("/admin/v1/keys/{name}"),
                &serde_json::json!({ "key": key }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let api = cluster.node(away).api.clone();
    let chat = |key: &'static str| {
        let (http, api) = (cluster.http.clone(), api.clone());
        async move {
            http.chat_as(&api, SEED_ROUTE, Some(key), Duration::from_secs(5))
                .await
                .unwrap()
                .status
        }
    };
    let served = poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { (chat(REVOKED).await == StatusCode::OK).then_some(()) },
    )
    .await;
    assert!(served.is_some(), "node {away} never accepted the key");

    cluster.pause(away).await;
    let reply = cluster.delete(leader, "/admin/v1/keys/revoked").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    cluster.resume(away).await;
    let back = std::time::Instant::now();
    let refused = poll(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || async { (chat(REVOKED).await == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    eprintln!(
        "key revoked while away: refused on return after {:?} (heartbeat {} ms)",
        back.elapsed(),
        Options::fast().heartbeat_ms
    );
    assert!(
        refused.is_some(),
        "node {away} still honours the revoked key"
    );
    // Only that key: the one kept is still served there.
    assert_eq!(chat("sk-kept-while-away-0123456789").await, StatusCode::OK);
}

/// Waits until node `id` says (in `/readyz`) it has heard no quorum for
/// more than `ms`.
async fn cut_off_for(cluster: &Cluster, id: u64, ms: u64) {
    let past = poll(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async {
            let reply = cluster.get(id, "/readyz").await;
            (reply.json()["cut_off_ms"].as_u64()? > ms).then_some(())
        },
    )
    .await;
    assert!(
        past.is_some(),
        "node {id} never said it was cut off for {ms} ms"
    );
}

/// A refusal because the node heard no quorum: 503 `no_leader` with
/// Retry-After, saying nothing was proposed.
fn assert_cut_off(reply: &support::cluster::Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], "no_leader", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("heard no quorum") && message.contains("nothing was proposed"),
        "{message}"
    );
    assert_eq!(reply.header("retry-after"), "1", "{}", reply.text());
}

/// A leader whose followers are gone keeps openraft's leader state (0.9
/// has no step-down); it reports itself `isolated`, is not counted as the
/// leader, and refuses writes at once instead of holding them for the
/// write timeout.
#[tokio::test]
async fn an_isolated_leader_says_so_and_refuses_writes_at_once() {
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    for id in cluster.up() {
        if id != leader {
            cluster.kill_9(id).await;
        }
    }
    let isolated = poll(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            let view = cluster.view(leader).await;
            (view["role"] == "isolated").then_some(view)
        },
    )
    .await
    .expect("the leader never said it was isolated");
    assert!(
        isolated["quorum_ack_ms"].as_u64().unwrap() > Options::fast().election_timeout_ms,
        "{isolated}"
    );
    assert!(
        cluster
            .leader_within(Duration::from_millis(500))
            .await
            .is_none(),
        "an isolated leader is not counted as leading"
    );
    cut_off_for(&cluster, leader, 2 * Options::fast().election_timeout_ms).await;
    let t = std::time::Instant::now();
    let refused = cluster
        .put(leader, "/admin/v1/routes/isolated", &route("x"))
        .await;
    eprintln!(
        "write on an isolated leader: {} after {:?}",
        refused.status,
        t.elapsed()
    );
    assert_cut_off(&refused);
    // Hostile bodies are still judged first, never proposed.
    let bad = cluster
        .put(
            leader,
            "/admin/v1/routes/isolated",
            &serde_json::json!({"tiers": "x"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
}
