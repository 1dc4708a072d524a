//! What the Raft links carry, as a real cluster's `/metrics` shows it: in a
//! three-node cluster every node has sent bytes to and received bytes from
//! each peer (the leader replicates to each follower, and every member
//! sends its health reports straight to every other); each node sent and
//! received reports, and the leader relays none of the followers'; and each
//! node knows the size of its own health report (the figures
//! `docs/cost-model.md` is checked against).

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
async fn every_node_counts_bytes_both_ways_with_each_peer() {
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
    let counted = poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let mut all = BTreeMap::new();
            for id in cluster.up() {
                let s = series(&cluster.get(id, "/metrics").await.text());
                let report = s
                    .get("meridian_health_report_bytes")
                    .copied()
                    .unwrap_or(0.0);
                // Every node talks to each peer: reports go member to member.
                let peers: Vec<u64> = cluster.up().into_iter().filter(|p| *p != id).collect();
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
        },
    )
    .await
    .expect("every node counts traffic with each peer, and a health report size");

    // No node counts traffic with itself.
    for (id, s) in &counted {
        let own = format!("meridian_raft_bytes_sent_total{{peer=\"{id}\"}}");
        assert!(!s.contains_key(&own), "node {id} counts traffic to itself");
    }
    // Every node sent its reports and received the others', each larger
    // than a bare header.
    let count = |s: &BTreeMap<String, f64>, dir: &str, what: &str| {
        s.get(&format!(
            "meridian_raft_{what}_total{{direction=\"{dir}\",kind=\"report\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    for (id, s) in &counted {
        for dir in ["sent", "received"] {
            let n = count(s, dir, "entries");
            assert!(n > 0.0, "node {id} {dir} no reports: {s:?}");
            assert!(count(s, dir, "entry_bytes") / n > 20.0);
        }
    }
    // The leader sends its own reports only: it relays none of the
    // followers' (in the log, it sent every member's to every follower,
    // about three times what it received).
    let l = &counted[&leader];
    let (sent, received) = (count(l, "sent", "entries"), count(l, "received", "entries"));
    assert!(
        sent <= received * 1.25 + 4.0,
        "the leader sent {sent} reports and received {received}"
    );
}
