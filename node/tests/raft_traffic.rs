//! What the Raft links carry, as a real cluster's `/metrics` shows it: in a
//! three-node cluster the leader has sent bytes to and received bytes from
//! each peer, and each follower from and to the leader (two followers talk
//! to each other only in an election); the leader has shipped health
//! report entries; and each node knows the size of its own health report
//! (the figures `docs/cost-model.md` is checked against).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::cluster::{Cluster, Options, SEED_ROUTE, poll};

fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn the_leader_and_each_follower_count_bytes_both_ways() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    // Requests on every node: each then has upstream figures to report.
    for id in cluster.up() {
        for _ in 0..3 {
            let reply = cluster
                .chat(id, SEED_ROUTE, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    }
    let counted = poll(Duration::from_secs(20), Duration::from_millis(100), || async {
        let mut all = BTreeMap::new();
        for id in cluster.up() {
            let s = series(&cluster.get(id, "/metrics").await.text());
            let report = s.get("meridian_health_report_bytes").copied().unwrap_or(0.0);
            // The leader talks to each peer; a follower to the leader.
            let peers: Vec<u64> = if id == leader {
                cluster.up().into_iter().filter(|p| *p != id).collect()
            } else {
                vec![leader]
            };
            let peers_ok = peers.into_iter().all(|p| {
                ["sent", "received"].iter().all(|dir| {
                    let bytes = format!("meridian_raft_bytes_{dir}_total{{peer=\"{p}\"}}");
                    let msgs = format!("meridian_raft_messages_{dir}_total{{peer=\"{p}\"}}");
                    s.get(&bytes).copied().unwrap_or(0.0) > 0.0
                        && s.get(&msgs).copied().unwrap_or(0.0) > 0.0
                })
            });
            if !peers_ok || report <= 0.0 {
                return None;
            }
            all.insert(id, s);
        }
        Some(all)
    })
    .await
    .expect("the leader counts traffic with each peer, each follower with the leader, and each a health report size");

    // No node counts traffic with itself.
    for (id, s) in &counted {
        let own = format!("meridian_raft_bytes_sent_total{{peer=\"{id}\"}}");
        assert!(!s.contains_key(&own), "node {id} counts traffic to itself");
    }
    // The leader shipped health reports, each larger than the bare command
    // header, and the followers received them.
    let l = &counted[&leader];
    let sent = |kind: &str, what: &str| {
        l.get(&format!(
            "meridian_raft_{what}_total{{direction=\"sent\",kind=\"{kind}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert!(sent("report", "entries") > 0.0, "{l:?}");
    assert!(sent("report", "entry_bytes") / sent("report", "entries") > 20.0);
    for (id, s) in &counted {
        if *id == leader {
            continue;
        }
        let got = s
            .get("meridian_raft_entries_total{direction=\"received\",kind=\"report\"}")
            .copied()
            .unwrap_or(0.0);
        assert!(got > 0.0, "follower {id} received no report entries");
        // A follower forwards its own report: the leader counts it.
        let from = format!("meridian_raft_bytes_received_total{{peer=\"{id}\"}}");
        assert!(l.get(&from).copied().unwrap_or(0.0) > 0.0);
    }
}
