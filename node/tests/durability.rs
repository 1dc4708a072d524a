//! What the Raft store keeps across kill -9, with real processes: a node's
//! applied state is durable only at its snapshots, and the log after the
//! last snapshot is re-applied on start (`raft/src/store/state_machine.rs`).
//! So these tests snapshot often (`snapshot_logs = 20`) and kill right after
//! acknowledged writes that lie past the last snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use support::cluster::{Cluster, Options, SEED_ROUTE, poll, route};

/// How often the tests snapshot: a few snapshots per test, with writes
/// after the last.
const SNAPSHOT_LOGS: u64 = 20;

/// The routes node `id` serves, read linearizably (through the leader's
/// read index), retried while it answers 5xx: right after a restart the
/// cluster may have no leader yet.
async fn routes_on(cluster: &Cluster, id: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = cluster.get(id, "/admin/v1/routes").await;
        if reply.status == StatusCode::OK {
            let mut models: Vec<String> = reply
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["model"].as_str().unwrap().to_owned())
                .collect();
            models.sort();
            return models;
        }
        assert!(
            Instant::now() < deadline,
            "GET /admin/v1/routes on node {id}: {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes routes `prefix-0` .. `prefix-{count - 1}` through node `via`; each
/// is acknowledged (200) before the next is sent.
async fn write_routes(cluster: &Cluster, via: u64, prefix: &str, count: usize) -> Vec<String> {
    let models: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    for model in &models {
        cluster.put_route(via, model, &route(model)).await;
    }
    models
}

/// Writes more routes (`prefix-more-N`) through node `leader` until its
/// last log entry lies past its last snapshot, so the writes just
/// acknowledged exist on its disk only in the log. Returns its view then.
async fn past_the_snapshot(
    cluster: &Cluster,
    leader: u64,
    prefix: &str,
    expected: &mut Vec<String>,
) -> Value {
    let mut i = 0;
    loop {
        let view = cluster.view(leader).await;
        let snapshot = view["snapshot_index"].as_u64().unwrap_or(0);
        let last = view["last_log_index"].as_u64().unwrap();
        if snapshot > 0 && last > snapshot {
            return view;
        }
        assert!(i < 100, "no snapshot on node {leader}: {view}");
        let model = format!("{prefix}-more-{i}");
        cluster.put_route(leader, &model, &route(&model)).await;
        expected.push(model);
        i += 1;
    }
}

/// kill -9 of the leader right after it acknowledged writes past its last
/// snapshot, then of every node: each time, every acknowledged write is
/// there after the restart, on every node.
#[tokio::test]
async fn acknowledged_writes_past_the_last_snapshot_survive_kill_9() {
    let mut cluster = Cluster::start(3, Options::snapshot_every(SNAPSHOT_LOGS)).await;
    let leader = cluster.leader().await;

    // Past two snapshots and not on one (the seed and the members' own
    // entries come before).
    let mut expected = write_routes(&cluster, leader, "a", 47).await;
    let view = past_the_snapshot(&cluster, leader, "a", &mut expected).await;
    cluster.kill_9(leader).await;
    eprintln!(
        "killed leader {leader} at last_log_index {}, snapshot_index {}",
        view["last_log_index"], view["snapshot_index"]
    );
    cluster.restart(leader).await;
    let last = view["last_log_index"].as_u64().unwrap();
    assert!(
        cluster
            .wait_applied(leader, last, Duration::from_secs(30))
            .await,
        "the restarted node did not re-apply up to {last}: {}",
        cluster.view(leader).await
    );
    expected.push(SEED_ROUTE.to_owned());
    expected.sort();
    for id in 1..=3 {
        assert_eq!(routes_on(&cluster, id).await, expected, "node {id}");
    }

    let leader = cluster.leader().await;
    expected.extend(write_routes(&cluster, leader, "b", 33).await);
    let view = past_the_snapshot(&cluster, leader, "b", &mut expected).await;
    expected.sort();
    cluster.kill_all().await;
    eprintln!(
        "killed every node at last_log_index {}, snapshot_index {}",
        view["last_log_index"], view["snapshot_index"]
    );
    cluster.start_all().await;
    for id in 1..=3 {
        let got = routes_on(&cluster, id).await;
        if got != expected {
            for other in 1..=3 {
                eprintln!("node {other}: {}", cluster.view(other).await);
                eprintln!("{}", cluster.log(other));
            }
        }
        assert_eq!(got, expected, "node {id}");
    }
}

/// A follower whose own log was purged behind its snapshot is killed; the
/// cluster goes on writing; restarted, it comes back from its snapshot and
/// the rest of its log, and catches up with the leader's log.
#[tokio::test]
async fn a_node_restarted_after_its_log_was_purged_catches_up() {
    let mut cluster = Cluster::start(3, Options::snapshot_every(SNAPSHOT_LOGS)).await;
    let leader = cluster.leader().await;
    let down = cluster.up().into_iter().find(|&id| id != leader).unwrap();

    write_routes(&cluster, leader, "a", 70).await;
    let purged = poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let view = cluster.view(down).await;
            (view["purged_index"].as_u64()? > 0).then_some(view)
        },
    )
    .await;
    let Some(purged) = purged else {
        panic!("node {down} did not purge: {}", cluster.view(down).await);
    };
    eprintln!(
        "node {down} before the kill: applied_index {}, snapshot_index {}, purged_index {}",
        purged["applied_index"], purged["snapshot_index"], purged["purged_index"]
    );
    cluster.kill_9(down).await;

    write_routes(&cluster, leader, "b", 10).await;
    let last = cluster.view(leader).await["last_log_index"]
        .as_u64()
        .unwrap();
    cluster.restart(down).await;
    assert!(
        cluster
            .wait_applied(down, last, Duration::from_secs(30))
            .await,
        "node {down} did not catch up to {last}: {}",
        cluster.view(down).await
    );
    assert_eq!(
        cluster.applied_routes(down).await,
        cluster.applied_routes(leader).await
    );
    assert_eq!(
        routes_on(&cluster, down).await.len(),
        81,
        "80 written and the seed"
    );
}
