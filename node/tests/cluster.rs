//! Raft replication with real processes: three `meridian` nodes on loopback
//! with mutual TLS over QUIC, one `meridian-mock` upstream, and the admin and
//! data planes exercised as an operator and a client would. Timing figures
//! are printed with `eprintln!` (`cargo test --test cluster -- --nocapture`).
//!
//! Tests that measure latencies run alone (see [`exclusive`]); the others
//! may share the machine. `cargo test -p meridian --test cluster --
//! --ignored --nocapture` runs the long ones (the 20,000-write log bound,
//! the latency and election measurements) and the tests marked
//! `ignore = "bug: …"`, which assert what the design promises and fail until
//! the bug they name is fixed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::{Cluster, Http, Options, SEED_ROUTE, percentile, poll, route};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, watch};
use tokio::task::JoinSet;

static MACHINE: RwLock<()> = RwLock::const_new(());

/// For tests that measure time or load the CPU: nothing else runs meanwhile.
async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// For tests that only check outcomes: they may run beside each other.
async fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

const POLL: Duration = Duration::from_millis(2);

/// A node that is not `leader`.
fn follower(cluster: &Cluster, leader: u64) -> u64 {
    cluster.up().into_iter().find(|&id| id != leader).unwrap()
}

/// Waits until the leader reports every running node with lag 0.
async fn caught_up(cluster: &Cluster) {
    let up = cluster.up();
    let ok = poll(CATCH_UP, Duration::from_millis(5), || async {
        // Asked afresh each time: a rejoining node may cause an election.
        let leader = cluster.leader_within(Duration::from_secs(1)).await?;
        let view = cluster.view(leader).await;
        let last = view["last_log_index"].as_u64();
        let all = view["members"].as_array().unwrap().iter().all(|m| {
            !up.contains(&m["id"].as_u64().unwrap()) || m["matched_index"].as_u64() == last
        });
        all.then_some(())
    })
    .await;
    assert!(ok.is_some(), "the running nodes did not catch up");
}

/// Data-plane traffic: every `every`, one chat request to each of `apis`,
/// until `stop`; counts answers with status 200 and records anything else.
async fn traffic(
    http: Http,
    apis: Vec<String>,
    every: Duration,
    sent: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> (u64, Vec<String>) {
    let mut ok = 0;
    let mut errors = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        for api in &apis {
            sent.fetch_add(1, Ordering::Relaxed);
            match http.chat(api, SEED_ROUTE, Duration::from_secs(5)).await {
                Ok(reply) if reply.status == StatusCode::OK => ok += 1,
                Ok(reply) => errors.push(format!("{api}: {} {}", reply.status, reply.text())),
                Err(e) => errors.push(format!("{api}: {e}")),
            }
        }
    }
    (ok, errors)
}

/// What a kill -9 of the leader cost.
struct Failover {
    old_leader: u64,
    new_leader: u64,
    /// From the SIGKILL to a survivor reporting itself leader of a later term.
    elected: Duration,
    /// From the SIGKILL to the first acknowledged write (attempts launched
    /// every 25 ms at the survivors in turn).
    first_write: Duration,
    /// Attempts that failed before that, as `status` or error text.
    failed_attempts: Vec<String>,
    /// Attempts launched until then (the others were still waiting).
    launched: usize,
}

/// Kills the leader with SIGKILL and measures how long until a survivor is
/// leader and until a write is acknowledged.
async fn kill_leader(cluster: &mut Cluster, model: &str) -> Failover {
    let old_leader = cluster.leader().await;
    let old_term = cluster.view(old_leader).await["term"].as_u64().unwrap();
    let killed = cluster.kill_9(old_leader).await;
    let survivors = cluster.up();
    let cluster = &*cluster;

    let election = async {
        let found = poll(
            Duration::from_secs(30),
            Duration::from_millis(5),
            || async {
                for &id in &survivors {
                    let Ok(reply) = cluster
                        .try_admin(
                            id,
                            Method::GET,
                            "/admin/v1/cluster",
                            None,
                            Duration::from_secs(1),
                        )
                        .await
                    else {
                        continue;
                    };
                    let view = reply.json();
                    if view["role"] == "leader" && view["term"].as_u64() > Some(old_term) {
                        return Some((id, killed.elapsed()));
                    }
                }
                None
            },
        )
        .await;
        found.expect("no new leader within 30 s of the kill")
    };

    let writes = async {
        let body = route(&format!("{model}-model"));
        let mut attempts: JoinSet<Result<support::cluster::Reply, String>> = JoinSet::new();
        let mut failed = Vec::new();
        let mut launched = 0;
        let mut next = tokio::time::Instant::now();
        for target in survivors.iter().cycle() {
            tokio::select! {
                Some(done) = attempts.join_next() => {
                    match done.unwrap() {
                        Ok(reply) if reply.status == StatusCode::OK => {
                            return (killed.elapsed(), failed, launched);
                        }
                        Ok(reply) => failed.push(format!("{} {}", reply.status, reply.json()["error"]["code"])),
                        Err(e) => failed.push(e),
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    assert!(killed.elapsed() < Duration::from_secs(30), "no write acknowledged within 30 s of the kill: {failed:?}");
                    let http = cluster.http.clone();
                    let url = format!("http://{}/admin/v1/routes/{model}", cluster.node(*target).admin);
                    let body = body.to_string();
                    attempts.spawn(async move {
                        http.send(Method::PUT, &url, Some(body), Duration::from_secs(15)).await
                    });
                    launched += 1;
                    next += Duration::from_millis(25);
                }
            }
        }
        unreachable!()
    };

    let ((new_leader, elected), (first_write, failed_attempts, launched)) =
        tokio::join!(election, writes);
    Failover {
        old_leader,
        new_leader,
        elected,
        first_write,
        failed_attempts,
        launched,
    }
}

impl Failover {
    /// How the write attempts before the first acknowledgement went.
    fn attempts(&self) -> String {
        let mut tally = std::collections::BTreeMap::<&str, usize>::new();
        for failure in &self.failed_attempts {
            *tally.entry(failure.as_str()).or_default() += 1;
        }
        format!(
            "{} attempts launched, failed: {tally:?}, still waiting: {}",
            self.launched,
            self.launched - self.failed_attempts.len() - 1
        )
    }
}

/// Test 1. A route written on a follower is acknowledged once committed and
/// then serves on every node within a second of the acknowledgement.
#[tokio::test]
async fn a_route_written_on_a_follower_serves_on_every_node_within_a_second() {
    let _machine = exclusive().await;
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let writer = follower(&cluster, leader);
    for id in 1..=3 {
        let before = cluster.chat(id, "fresh", Duration::from_secs(5)).await;
        assert_eq!(before.unwrap().status, StatusCode::NOT_FOUND);
    }

    let sent = Instant::now();
    let ack = cluster
        .put_route(writer, "fresh", &route("fresh-model"))
        .await;
    let acked = Instant::now();
    assert_eq!(ack["changed"], true, "{ack}");

    let serving = join_all((1..=3).map(|id| {
        let cluster = &cluster;
        async move {
            let found = poll(Duration::from_secs(1), POLL, || async {
                let reply = cluster
                    .chat(id, "fresh", Duration::from_secs(1))
                    .await
                    .ok()?;
                (reply.status == StatusCode::OK).then_some(reply)
            })
            .await;
            (id, acked.elapsed(), found)
        }
    }))
    .await;
    eprintln!(
        "write on follower {writer} (leader {leader}): acknowledged in {:?}",
        acked - sent
    );
    for (id, after, found) in serving {
        let reply = found.unwrap_or_else(|| panic!("node {id} did not serve `fresh` within 1 s"));
        eprintln!("node {id}: serving `fresh` {after:?} after the acknowledgement");
        assert!(after < Duration::from_secs(1));
        assert_eq!(reply.json()["model"], "fresh-model", "{}", reply.text());
    }
}

/// The longest a failover may take under openraft 0.9's rules as
/// `Cluster::start` configures it: a follower that heard from a leader waits
/// out the leader lease (`election_timeout_max`, twice the configured
/// timeout) plus its own election timeout (one to two times the configured
/// one) before it campaigns; plus half a second for the vote and the commit.
fn openraft_failover_bound(options: Options) -> Duration {
    Duration::from_millis(4 * options.election_timeout_ms + 500)
}

/// Test 2. kill -9 of the leader: a new leader is elected and a write is
/// acknowledged, while data-plane requests to the two survivors every 10 ms
/// see no error. The write must come within what openraft 0.9 allows (see
/// [`openraft_failover_bound`]); the design's two election timeouts are
/// asserted by `failover_takes_at_most_two_election_timeouts` (a known bug).
#[tokio::test]
async fn killing_the_leader_elects_another_and_traffic_sees_no_error() {
    let _machine = exclusive().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let apis: Vec<String> = cluster
        .up()
        .into_iter()
        .filter(|&id| id != leader)
        .map(|id| cluster.node(id).api.clone())
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let load = tokio::spawn(traffic(
        cluster.http.clone(),
        apis,
        Duration::from_millis(10),
        sent.clone(),
        stopped,
    ));
    poll(Duration::from_secs(5), POLL, || async {
        (sent.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await
    .unwrap();

    let failover = kill_leader(&mut cluster, "after-kill").await;
    // Traffic for a while under the new leader too.
    let after = sent.load(Ordering::Relaxed);
    poll(Duration::from_secs(5), POLL, || async {
        (sent.load(Ordering::Relaxed) >= after + 20).then_some(())
    })
    .await
    .unwrap();
    stop.send(true).unwrap();
    let (ok, errors) = load.await.unwrap();

    let limit = openraft_failover_bound(cluster.options);
    eprintln!(
        "kill -9 of leader {}: node {} leader after {:?}, first write acknowledged after {:?} \
         (limit {limit:?}); {}",
        failover.old_leader,
        failover.new_leader,
        failover.elected,
        failover.first_write,
        failover.attempts()
    );
    eprintln!(
        "data plane to the survivors: {ok} answers 200, {} errors",
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(ok >= 40, "only {ok} requests");
    assert_ne!(failover.new_leader, failover.old_leader);
    assert!(
        failover.first_write < limit,
        "first write after {:?}",
        failover.first_write
    );
    for id in cluster.up() {
        let reply = cluster
            .chat(id, "after-kill", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "node {id}: {}", reply.text());
    }
}

/// How long a restarted node may take to catch up. A node restarted soon
/// after a kill -9 is unreachable for the leader until the leader's QUIC
/// connection to the dead process times out (idle timeout, 10 s): see
/// `a_restarted_node_rejoins_promptly_without_an_election` (a known bug).
const CATCH_UP: Duration = Duration::from_secs(30);

/// Test 3a. A follower killed while changes are made gets them from the
/// leader's log when it comes back.
#[tokio::test]
async fn a_restarted_follower_catches_up_from_the_log() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let down = follower(&cluster, leader);
    caught_up(&cluster).await;
    cluster.kill_9(down).await;

    let models: Vec<String> = (0..5).map(|i| format!("while-down-{i}")).collect();
    for model in &models {
        cluster.put_route(leader, model, &route(model)).await;
    }
    cluster
        .delete(leader, &format!("/admin/v1/routes/{SEED_ROUTE}"))
        .await;
    let last = cluster.view(leader).await["last_log_index"]
        .as_u64()
        .unwrap();

    let term = cluster.view(leader).await["term"].clone();
    let restarted = Instant::now();
    cluster.restart(down).await;
    let ready = restarted.elapsed();
    let converged = poll(CATCH_UP, Duration::from_millis(5), || async {
        let routes = cluster.applied_routes(down).await;
        (models.iter().all(|m| routes.contains_key(m)) && !routes.contains_key(SEED_ROUTE))
            .then_some(restarted.elapsed())
    })
    .await
    .expect("the restarted follower did not apply the changes");
    let leader_now = cluster.leader().await;
    eprintln!(
        "follower {down} restarted: ready after {ready:?}, all 6 changes applied after \
         {converged:?}; term before {term}, after {} (leader {leader_now})",
        cluster.view(leader_now).await["term"]
    );
    assert!(
        cluster
            .wait_applied(down, last, Duration::from_secs(5))
            .await
    );
    let view = cluster.view(down).await;
    assert_eq!(
        view["snapshot_index"],
        Value::Null,
        "no snapshot was needed: {view}"
    );
    for model in &models {
        let reply = cluster.chat(down, model, Duration::from_secs(5)).await;
        assert_eq!(reply.unwrap().status, StatusCode::OK);
    }
}

/// Test 3b. With `snapshot_logs = 20`, a follower that was down while the
/// leader snapshotted and purged its log past the follower's last entry is
/// brought back by a snapshot.
#[tokio::test]
async fn a_restarted_follower_catches_up_from_a_snapshot() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::snapshot_every(20)).await;
    let leader = cluster.leader().await;
    let down = follower(&cluster, leader);
    caught_up(&cluster).await;
    let old_index = cluster.view(down).await["applied_index"].as_u64().unwrap();
    cluster.kill_9(down).await;

    let models: Vec<String> = (0..70).map(|i| format!("snap-{i}")).collect();
    let wrote = Instant::now();
    for model in &models {
        cluster.put_route(leader, model, &route(model)).await;
    }
    let wrote = wrote.elapsed();
    let purged = poll(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || async {
            let view = cluster.view(leader).await;
            let purged = view["purged_index"].as_u64()?;
            (purged > old_index).then_some(view)
        },
    )
    .await
    .unwrap_or_else(|| panic!("the leader did not purge past {old_index}"));
    let matched = purged["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == down)
        .unwrap()["matched_index"]
        .clone();
    eprintln!(
        "70 writes in {wrote:?}; follower {down} stopped at index {old_index} (leader's matched \
         index for it: {matched}); leader: last_log_index {}, snapshot_index {}, purged_index {}",
        purged["last_log_index"], purged["snapshot_index"], purged["purged_index"]
    );
    let last = purged["last_log_index"].as_u64().unwrap();

    let restarted = Instant::now();
    cluster.restart(down).await;
    let converged = poll(CATCH_UP, Duration::from_millis(5), || async {
        let routes = cluster.applied_routes(down).await;
        models
            .iter()
            .all(|m| routes.contains_key(m))
            .then_some(restarted.elapsed())
    })
    .await
    .expect("the restarted follower did not converge");
    assert!(
        cluster
            .wait_applied(down, last, Duration::from_secs(5))
            .await
    );
    let view = cluster.view(down).await;
    eprintln!(
        "follower {down} converged {converged:?} after its restart: applied_index {}, \
         snapshot_index {}, purged_index {}",
        view["applied_index"], view["snapshot_index"], view["purged_index"]
    );
    assert!(
        view["snapshot_index"].as_u64() > Some(old_index),
        "the follower holds a snapshot past its old index: {view}"
    );
    assert_eq!(
        cluster.applied_routes(down).await,
        cluster.applied_routes(leader).await
    );
}

/// A linearizable read on node `id`, retried while it answers 5xx: right
/// after a cluster restart the new leader refuses read-index requests with a
/// 500 ("not enough for a quorum") until a quorum has acknowledged it.
async fn read_current(cluster: &Cluster, id: u64, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = Vec::new();
    loop {
        let reply = cluster.get(id, path).await;
        if !reply.status.is_server_error() {
            if let Some(first) = refused.first() {
                eprintln!(
                    "GET {path} on node {id} was refused {} times first: {first}",
                    refused.len()
                );
            }
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            return reply.json();
        }
        refused.push(format!(
            "{} {}",
            reply.status,
            reply.json()["error"]["message"]
        ));
        assert!(
            Instant::now() < deadline,
            "GET {path} on node {id}: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every node's linearizable view of the routes and upstreams.
async fn state_on(cluster: &Cluster, id: u64) -> (Value, Value) {
    (
        read_current(cluster, id, "/admin/v1/routes").await,
        read_current(cluster, id, "/admin/v1/upstreams").await,
    )
}

/// Test 4. Stopping the whole cluster, gracefully and with kill -9, and
/// starting it again keeps every acknowledged change, deletions included
/// (the seed in the config files must not bring a deleted route back).
#[tokio::test]
async fn a_full_cluster_restart_keeps_every_committed_change() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let second = json!({ "base_url": format!("{}", cluster.mock.base_url()), "region": "r2" });

    // Batch A: writes through every node, a new upstream, and a deletion.
    for i in 0..9 {
        let via = i % 3 + 1;
        let model = format!("a-{i}");
        cluster.put_route(via, &model, &route(&model)).await;
    }
    let reply = cluster.put(2, "/admin/v1/upstreams/second", &second).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // Through the node that acknowledged the upstream: another node may not
    // have applied it yet (see `a_change_acknowledged_on_one_node_is_seen_by_the_next_write`).
    let reply = cluster
        .put(
            2,
            "/admin/v1/routes/a-0",
            &json!({ "tiers": [[{ "upstream": "second", "model": "moved" }]] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = cluster
        .delete(1, &format!("/admin/v1/routes/{SEED_ROUTE}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let expected_a = state_on(&cluster, 1).await;
    assert_eq!(expected_a.0.as_array().unwrap().len(), 9);

    let t = Instant::now();
    cluster.stop_all().await;
    let stopped = t.elapsed();
    let t = Instant::now();
    cluster.start_all().await;
    let started = t.elapsed();
    for id in 1..=3 {
        assert_eq!(state_on(&cluster, id).await, expected_a, "node {id}");
        let gone = cluster.chat(id, SEED_ROUTE, Duration::from_secs(5)).await;
        assert_eq!(gone.unwrap().status, StatusCode::NOT_FOUND);
        let moved = cluster
            .chat(id, "a-0", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(moved.json()["model"], "moved", "{}", moved.text());
    }
    eprintln!("SIGTERM of all 3 nodes: exited in {stopped:?}; restarted and ready in {started:?}");

    // Batch B, then kill -9 every node.
    for i in 0..9 {
        let via = i % 3 + 1;
        let model = format!("b-{i}");
        cluster.put_route(via, &model, &route(&model)).await;
    }
    let reply = cluster.delete(2, "/admin/v1/routes/a-1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let expected_b = state_on(&cluster, 3).await;
    assert_eq!(expected_b.0.as_array().unwrap().len(), 17);

    cluster.kill_all().await;
    let t = Instant::now();
    cluster.start_all().await;
    let started = t.elapsed();
    for id in 1..=3 {
        assert_eq!(state_on(&cluster, id).await, expected_b, "node {id}");
        let reply = cluster.chat(id, "b-8", Duration::from_secs(5)).await;
        assert_eq!(reply.unwrap().status, StatusCode::OK);
    }
    eprintln!("kill -9 of all 3 nodes: restarted and ready in {started:?}; 17 routes on each");
}

/// Test 5. A node whose certificate comes from another CA is refused: it
/// never joins (its Raft traffic fails the TLS handshake both ways), not
/// even when the operator adds it as a learner, and the cluster keeps working
/// with its term unchanged (no vote request of the stranger got through).
#[tokio::test]
async fn a_node_with_a_certificate_of_another_ca_is_refused() {
    let _machine = shared().await;
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let term = cluster.view(leader).await["term"].as_u64().unwrap();

    let mut stranger = cluster.spawn_stranger(4);
    // The operator adds it as a learner. openraft's add_learner waits until
    // the learner has caught up, which a refused node never does, so the
    // call is given a short deadline; the membership change itself is
    // committed before that wait.
    let add = cluster
        .try_admin(
            leader,
            Method::POST,
            "/admin/v1/members",
            Some(&json!({ "id": 4, "raft_addr": stranger.raft_addr(), "voter": false })),
            Duration::from_secs(3),
        )
        .await;
    eprintln!(
        "POST /admin/v1/members for the stranger: {}",
        match &add {
            Ok(reply) => format!("{} {}", reply.status, reply.text()),
            Err(e) => e.clone(),
        }
    );
    let listed = poll(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            let view = cluster.view(leader).await;
            view["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == 4)
                .cloned()
        },
    )
    .await
    .expect("the learner was not added to the membership");
    assert_eq!(listed["role"], "learner");

    // The cluster keeps taking writes meanwhile.
    for i in 0..5 {
        let model = format!("with-stranger-{i}");
        cluster.put_route(i % 3 + 1, &model, &route(&model)).await;
    }

    // The stranger campaigns (it thinks it is a voter of a new cluster) and
    // the leader replicates to it; over several election timeouts, nothing
    // gets through.
    let ready = support::cluster::read_ready(&mut stranger.child, Duration::from_secs(3)).await;
    assert!(ready.is_none(), "the stranger got ready: {ready:?}");
    assert!(
        stranger.child.try_wait().unwrap().is_none(),
        "the stranger exited"
    );
    let view = cluster.view(leader).await;
    let last = view["last_log_index"].as_u64().unwrap();
    let member = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .unwrap()
        .clone();
    eprintln!("leader's view of the stranger after 3 s: {member}; last_log_index {last}");
    assert!(
        member["matched_index"].as_u64().unwrap_or(0) == 0,
        "the stranger received log entries: {member}"
    );
    assert_eq!(member["lag"].as_u64().unwrap_or(last), last, "{member}");
    assert_eq!(view["term"].as_u64(), Some(term), "the term moved: {view}");
    assert_eq!(view["role"], "leader");
    for id in 1..=3 {
        let reply = cluster
            .chat(id, "with-stranger-4", Duration::from_secs(5))
            .await;
        assert_eq!(reply.unwrap().status, StatusCode::OK);
    }

    // Logs name the refusal.
    let refused = poll(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let logs: Vec<(String, String)> = (1..=3)
                .map(|id| (format!("node {id}"), cluster.log(id)))
                .chain([("stranger".into(), stranger.log())])
                .collect();
            let found: Vec<String> = logs
                .iter()
                .filter_map(|(who, log)| {
                    log.lines()
                        .find(|l| l.contains("refused at handshake"))
                        .map(|l| format!("{who}: {l}"))
                })
                .collect();
            (!found.is_empty()).then_some(found)
        },
    )
    .await
    .expect("no log line names the refused handshake");
    for line in &refused {
        eprintln!("{line}");
    }

    // The operator removes it again.
    let reply = cluster.delete(leader, "/admin/v1/members/4").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    cluster
        .put_route(leader, "after-removal", &route("x"))
        .await;
    let view = cluster.view(leader).await;
    assert!(
        view["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != 4),
        "{view}"
    );
}

/// Test 6. Invalid changes are refused with a 4xx naming the field, on a
/// follower as on the leader, and nothing is proposed: the state and the
/// Raft log stay as they were.
#[tokio::test]
async fn invalid_changes_are_refused_naming_the_field_and_change_nothing() {
    let _machine = shared().await;
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let other = follower(&cluster, leader);
    caught_up(&cluster).await;
    let before_routes = cluster.get(leader, "/admin/v1/routes").await.json();
    let before_upstreams = cluster.get(leader, "/admin/v1/upstreams").await.json();
    let before = cluster.view(leader).await;

    let target = |extra: Value| {
        let mut t = json!({ "upstream": "mock", "model": "m" });
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "tiers": [[t]] })
    };
    let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::PUT,
            format!("/admin/v1/routes/{SEED_ROUTE}"),
            Some(json!({ "tiers": [[{ "upstream": "nope", "model": "m" }]] })),
            "route.tiers[0][0].upstream",
        ),
        (
            Method::PUT,
            "/admin/v1/routes/new".into(),
            Some(target(json!({ "input_per_mtok": -1.0 }))),
            "route.tiers[0][0].input_per_mtok",
        ),
        (
            Method::PUT,
            "/admin/v1/routes/new".into(),
            Some(json!({ "tiers": [[{ "upstream": "mock", "model": "m" }]], "colour": "red" })),
            "colour",
        ),
        (
            Method::PUT,
            "/admin/v1/routes/new".into(),
            Some(target(json!({ "pirce": 1.0 }))),
            "tiers[0][0].pirce",
        ),
        (
            Method::PUT,
            "/admin/v1/routes/new".into(),
            Some(json!({ "tiers": [] })),
            "route.tiers",
        ),
        (
            Method::PUT,
            "/admin/v1/routes/new".into(),
            Some(json!({ "model": "other", "tiers": [[{ "upstream": "mock", "model": "m" }]] })),
            "model",
        ),
        (
            Method::PUT,
            "/admin/v1/routes/new".into(),
            Some(json!({ "tiers": [[{ "upstream": "mock", "model": "m" }]], "max_attempts": 0 })),
            "route.max_attempts",
        ),
        (
            Method::PUT,
            "/admin/v1/upstreams/bad".into(),
            Some(json!({ "base_url": "ftp://example.com/v1" })),
            "upstream.base_url",
        ),
        (
            Method::DELETE,
            "/admin/v1/upstreams/mock".into(),
            None,
            "id",
        ),
    ];
    for (i, (method, path, body, field)) in cases.iter().enumerate() {
        let via = if i % 2 == 0 { other } else { leader };
        let reply = cluster
            .admin(via, method.clone(), path, body.as_ref())
            .await;
        let error = &reply.json()["error"];
        eprintln!(
            "{method} {path} on node {via} -> {} param={} message={}",
            reply.status, error["param"], error["message"]
        );
        assert!(reply.status.is_client_error(), "{}", reply.text());
        assert_eq!(error["param"], *field, "{}", reply.text());
    }

    // Nothing proposed: the log grew only by the blank entry each new
    // term's leader appends (a loaded machine can delay heartbeats past an
    // election timeout).
    for id in [leader, other] {
        let after = cluster.view(id).await;
        let grew =
            after["last_log_index"].as_u64().unwrap() - before["last_log_index"].as_u64().unwrap();
        let elections = after["term"].as_u64().unwrap() - before["term"].as_u64().unwrap();
        assert!(grew <= elections, "node {id}: {before} -> {after}");
    }
    assert_eq!(
        cluster.get(other, "/admin/v1/routes").await.json(),
        before_routes
    );
    assert_eq!(
        cluster.get(other, "/admin/v1/upstreams").await.json(),
        before_upstreams
    );
    let reply = cluster
        .chat(other, SEED_ROUTE, Duration::from_secs(5))
        .await;
    assert_eq!(reply.unwrap().status, StatusCode::OK);
}

/// Writes `count` route changes to the leader with `concurrency` writers
/// (cycling over 10 models so the state stays small), then checks that every
/// node snapshotted and purged its log and reports the data dir sizes.
async fn log_stays_bounded(
    count: usize,
    snapshot_logs: u64,
    concurrency: usize,
) -> (Cluster, Vec<u64>) {
    let cluster = Cluster::start(3, Options::snapshot_every(snapshot_logs)).await;
    let leader = cluster.leader().await;
    let initial: Vec<u64> = (1..=3).map(|id| cluster.data_bytes(id)).collect();
    let next = AtomicU64::new(0);
    let t = Instant::now();
    let writers = (0..concurrency).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
            if i >= count {
                return;
            }
            let body =
                json!({ "tiers": [[{ "upstream": "mock", "model": "m", "input_per_mtok": i }]] });
            cluster
                .put_route(leader, &format!("w{}", i % 10), &body)
                .await;
        }
    });
    join_all(writers).await;
    let took = t.elapsed();
    caught_up(&cluster).await;

    let bound = 3 * snapshot_logs;
    let mut sizes = Vec::new();
    for id in 1..=3 {
        let view = poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let view = cluster.view(id).await;
                let last = view["last_log_index"].as_u64()?;
                let purged = view["purged_index"].as_u64()?;
                (last - purged <= bound).then_some(view)
            },
        )
        .await;
        let view = match view {
            Some(view) => view,
            None => panic!("node {id}: {:#}", cluster.view(id).await),
        };
        let bytes = cluster.data_bytes(id);
        eprintln!(
            "node {id}: last_log_index {}, snapshot_index {}, purged_index {}, data dir {} KiB \
             (was {} KiB after start)",
            view["last_log_index"],
            view["snapshot_index"],
            view["purged_index"],
            bytes / 1024,
            initial[id as usize - 1] / 1024
        );
        sizes.push(bytes);
    }
    eprintln!(
        "{count} writes ({concurrency} writers) in {took:?}: {:.0} writes/s",
        count as f64 / took.as_secs_f64()
    );
    let routes = cluster.applied_routes(follower(&cluster, leader)).await;
    assert_eq!(routes.len(), 11, "10 written routes and the seed");
    (cluster, sizes)
}

/// The data dir bound asserted by the log-bound tests. Measured per node
/// with `snapshot_logs = 100`: about 0.9 MiB after 2,000 writes; 1.7 MiB
/// after 4,000, then between 2.0 and 2.5 MiB (sled's `db` file, five 512 KiB
/// segments at most) every 4,000 writes up to 24,000.
const DATA_DIR_BOUND: u64 = 4 << 20;

/// Test 7. 2,000 config writes with `snapshot_logs = 100`: every node
/// snapshots and purges, so its log holds at most a few hundred entries and
/// its data dir stays small. It used to fail on a loaded machine with "no
/// quorum of voters acknowledged within 5s" a few seconds after start: each
/// write first confirms leadership for a linearizable read, one round of
/// heartbeats openraft bounds by the heartbeat interval (75 ms here), and a
/// follower whose Raft core was waiting on an fsync (of the log, behind the
/// whole state the state machine wrote and flushed per batch then) missed
/// it. The read is now retried until the write timeout, and a batch flushes
/// only the committed mark (a few bytes) besides the log.
#[tokio::test]
async fn the_log_is_purged_and_the_data_dir_stays_bounded() {
    let _machine = exclusive().await;
    let (_cluster, sizes) = log_stays_bounded(2_000, 100, 8).await;
    for (i, bytes) in sizes.iter().enumerate() {
        assert!(*bytes < DATA_DIR_BOUND, "node {}: {bytes} bytes", i + 1);
    }
}

/// Test 7, long version: 20,000 writes.
#[tokio::test]
#[ignore = "slow: 20,000 writes; run with --ignored"]
async fn the_log_stays_bounded_over_20000_writes() {
    let _machine = exclusive().await;
    let (cluster, sizes) = log_stays_bounded(20_000, 100, 8).await;
    for (i, bytes) in sizes.iter().enumerate() {
        assert!(*bytes < DATA_DIR_BOUND, "node {}: {bytes} bytes", i + 1);
    }

    // An observation while a long log is at hand: adding a member that
    // cannot be reached, now that the log index is past openraft's
    // replication_lag_threshold (5000), waits for it to catch up.
    let leader = cluster.leader().await;
    let t = Instant::now();
    let add = cluster
        .try_admin(
            leader,
            Method::POST,
            "/admin/v1/members",
            Some(&json!({ "id": 9, "raft_addr": "127.0.0.1:9", "voter": false })),
            Duration::from_secs(5),
        )
        .await;
    eprintln!(
        "POST /admin/v1/members for an unreachable node at log index {}: {:?} after {:?}",
        cluster.view(leader).await["last_log_index"],
        add.map(|r| (r.status, r.text())),
        t.elapsed()
    );
}

/// Sequential PUTs of a route to node `id`: the latency of each.
async fn commit_latencies(cluster: &Cluster, id: u64, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let body = json!({ "tiers": [[{ "upstream": "mock", "model": format!("m{i}") }]] });
        let t = Instant::now();
        cluster.put_route(id, "latency", &body).await;
        samples.push(t.elapsed());
    }
    samples
}

fn summary(samples: &[Duration]) -> String {
    format!(
        "p50 {:?}, p90 {:?}, p99 {:?}, max {:?} (n = {})",
        percentile(samples, 50.0),
        percentile(samples, 90.0),
        percentile(samples, 99.0),
        percentile(samples, 100.0),
        samples.len()
    )
}

/// Kills the leader `kills` times (restarting it after each), and reports
/// the time to a new leader and to the first acknowledged write.
async fn elections(options: Options, kills: usize) {
    let mut cluster = Cluster::start(3, options).await;
    let mut elected = Vec::new();
    let mut written = Vec::new();
    for k in 0..kills {
        caught_up(&cluster).await;
        let failover = kill_leader(&mut cluster, &format!("kill-{k}")).await;
        eprintln!(
            "kill {k}: leader {} killed; node {} leader after {:?}; first write acknowledged \
             after {:?}; {}",
            failover.old_leader,
            failover.new_leader,
            failover.elected,
            failover.first_write,
            failover.attempts()
        );
        elected.push(failover.elected);
        written.push(failover.first_write);
        cluster.restart(failover.old_leader).await;
    }
    eprintln!(
        "heartbeat {} ms, election timeout {} ms: new leader {}",
        options.heartbeat_ms,
        options.election_timeout_ms,
        summary(&elected)
    );
    eprintln!("first acknowledged write {}", summary(&written));
}

/// Test 8. Commit latency of config writes (to the leader and through a
/// follower) on a local 3-node cluster, and election times after kill -9.
#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_commit_latency_and_election_time() {
    let _machine = exclusive().await;
    {
        let cluster = Cluster::start(3, Options::fast()).await;
        let leader = cluster.leader().await;
        let other = follower(&cluster, leader);
        commit_latencies(&cluster, leader, 20).await; // warm-up
        let direct = commit_latencies(&cluster, leader, 300).await;
        let forwarded = commit_latencies(&cluster, other, 300).await;
        eprintln!("commit latency, PUT to the leader: {}", summary(&direct));
        eprintln!("commit latency, PUT to a follower: {}", summary(&forwarded));
    }
    elections(Options::fast(), 7).await;
}

/// Test 8 with the configuration's default timing (500 ms heartbeats, 5 s
/// elections).
#[tokio::test]
#[ignore = "measurement, about two minutes; run with --ignored --nocapture"]
async fn measure_election_time_with_default_timing() {
    let _machine = exclusive().await;
    elections(Options::defaults(), 3).await;
}

/// Design: a new leader and an accepted write within two election timeouts
/// of losing the leader. Usually it takes about one; a first round that fails
/// (a candidate with a shorter log, a split vote) costs about one more, so
/// over several kills the median must be within two and none beyond three.
#[tokio::test]
async fn failover_takes_at_most_two_election_timeouts() {
    let _machine = exclusive().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let timeout = Duration::from_millis(cluster.options.election_timeout_ms);
    let mut times = Vec::new();
    for kill in 0..3 {
        let failover = kill_leader(&mut cluster, &format!("after-kill-{kill}")).await;
        eprintln!(
            "kill {kill}: new leader after {:?}, first write after {:?} (election timeout {timeout:?})",
            failover.elected, failover.first_write
        );
        times.push(failover.first_write);
        let down = cluster.down();
        for id in down {
            cluster.restart(id).await;
        }
        caught_up(&cluster).await;
    }
    times.sort();
    assert!(
        times[1] < 2 * timeout,
        "median failover {:?} over 2 x {timeout:?}: {times:?}",
        times[1]
    );
    assert!(
        times[2] < 3 * timeout,
        "slowest failover {:?} over 3 x {timeout:?}: {times:?}",
        times[2]
    );
}

/// A node restarted right after a kill -9 is caught up within a couple of
/// seconds, and its return costs no election (the term stays).
#[tokio::test]
async fn a_restarted_node_rejoins_promptly_without_an_election() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let down = follower(&cluster, leader);
    caught_up(&cluster).await;
    cluster.kill_9(down).await;
    cluster.put_route(leader, "while-down", &route("x")).await;
    let term = cluster.view(leader).await["term"].as_u64();
    let last = cluster.view(leader).await["last_log_index"]
        .as_u64()
        .unwrap();
    let restarted = Instant::now();
    cluster.restart(down).await;
    let caught = cluster.wait_applied(down, last, CATCH_UP).await;
    let took = restarted.elapsed();
    // Long enough for the restarted node's election timer (lease plus
    // timeout) to fire if it still hears no leader.
    tokio::time::sleep(openraft_failover_bound(cluster.options)).await;
    let now = cluster.leader().await;
    let view = cluster.view(now).await;
    eprintln!(
        "caught up: {caught} after {took:?}; term {term:?} -> {}, leader {leader} -> {now}",
        view["term"]
    );
    assert!(took < Duration::from_secs(2), "caught up after {took:?}");
    if view["term"].as_u64() != term {
        // Who campaigned, and when, for the failure's diagnosis.
        for id in 1..=3 {
            for line in cluster.log(id).lines().filter(|l| {
                l.contains("do trigger election")
                    || l.contains("vote is changing")
                    || l.contains("meridian ready")
                    || l.contains("starting")
                    || l.contains("WARN meridian")
            }) {
                eprintln!("DEBUG n{id}: {line}");
            }
        }
    }
    assert_eq!(view["term"].as_u64(), term, "the restart cost an election");
}

/// Design: a node without a certificate of the cluster CA is refused. Asked
/// to add it as a voter, the cluster must not make it one (it has not
/// replicated a single entry), and must keep tolerating one failure.
#[tokio::test]
async fn a_node_of_another_ca_is_never_made_a_voter() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let stranger = cluster.spawn_stranger(4);
    // Asked of a follower, a membership change is refused with a 421 that
    // names the leader's admin API, and changes nothing.
    let on_follower = cluster
        .post(
            follower(&cluster, leader),
            "/admin/v1/members",
            &json!({ "id": 4, "raft_addr": stranger.raft_addr(), "voter": true }),
        )
        .await;
    assert_eq!(
        on_follower.status,
        StatusCode::MISDIRECTED_REQUEST,
        "{}",
        on_follower.text()
    );
    let admin = format!("http://{}", cluster.node(leader).admin);
    assert!(
        on_follower.text().contains(&admin),
        "{}",
        on_follower.text()
    );
    assert_eq!(
        cluster.view(leader).await["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let add = cluster
        .try_admin(
            leader,
            Method::POST,
            "/admin/v1/members",
            Some(&json!({ "id": 4, "raft_addr": stranger.raft_addr(), "voter": true })),
            Duration::from_secs(10),
        )
        .await;
    let view = cluster.view(leader).await;
    let voters = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .count();
    eprintln!(
        "POST members (voter): {:?}; voters now {voters}",
        add.map(|r| (r.status, r.text()))
    );
    // A 3-voter cluster survives one failure; with a dead-weight 4th voter
    // it does not.
    let down = follower(&cluster, leader);
    cluster.kill_9(down).await;
    let write = cluster
        .try_admin(
            leader,
            Method::PUT,
            "/admin/v1/routes/one-down",
            Some(&route("x")),
            Duration::from_secs(10),
        )
        .await;
    eprintln!(
        "write with one legitimate voter down: {:?}",
        write.as_ref().map(|r| r.status)
    );
    assert_eq!(voters, 3, "{view:#}");
    assert_eq!(write.unwrap().status, StatusCode::OK);
}

/// Design (section 7 and the admin errors): without a quorum, a write is
/// answered 503 with Retry-After, not left hanging.
#[tokio::test]
async fn a_write_without_a_quorum_is_refused_in_time() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    for id in cluster.up() {
        if id != leader {
            cluster.kill_9(id).await;
        }
    }
    let t = Instant::now();
    let reply = cluster
        .try_admin(
            leader,
            Method::PUT,
            "/admin/v1/routes/no-quorum",
            Some(&route("x")),
            Duration::from_secs(15),
        )
        .await;
    eprintln!(
        "write on the leader without a quorum: {:?} after {:?}",
        reply.as_ref().map(|r| (r.status, r.text())),
        t.elapsed()
    );
    assert_eq!(reply.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Design: invalid admin config gets a 4xx naming the field, type errors
/// included.
#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused_naming_the_field() {
    let _machine = shared().await;
    let cluster = Cluster::start(1, Options::fast()).await;
    let cases = [
        (json!({ "tiers": "fast" }), "tiers"),
        (
            json!({ "tiers": [[{ "upstream": "mock", "model": "m", "input_per_mtok": "cheap" }]] }),
            "input_per_mtok",
        ),
    ];
    for (body, field) in cases {
        let reply = cluster.put(1, "/admin/v1/routes/typed", &body).await;
        eprintln!("{body} -> {} {}", reply.status, reply.text());
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let param = reply.json()["error"]["param"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(param.contains(field), "param {param:?} for {body}");
    }
}

/// Design: a change is acknowledged only after it is committed, so a
/// later change that depends on it must be accepted on any node.
#[tokio::test]
async fn a_change_acknowledged_on_one_node_is_seen_by_the_next_write() {
    let _machine = shared().await;
    let cluster = Cluster::start(3, Options::fast()).await;
    let leader = cluster.leader().await;
    let other = follower(&cluster, leader);
    let upstream = json!({ "base_url": cluster.mock.base_url() });
    let mut refused = Vec::new();
    for i in 0..200 {
        let reply = cluster
            .put(leader, &format!("/admin/v1/upstreams/u{i}"), &upstream)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let route = json!({ "tiers": [[{ "upstream": format!("u{i}"), "model": "m" }]] });
        let reply = cluster
            .put(other, &format!("/admin/v1/routes/r{i}"), &route)
            .await;
        if reply.status != StatusCode::OK {
            refused.push(format!("{i}: {} {}", reply.status, reply.text()));
        }
    }
    eprintln!(
        "{} of 200 dependent writes refused: {refused:#?}",
        refused.len()
    );
    assert!(refused.is_empty());
}

/// A leader frozen while the others elected another (a long pause, a
/// stalled VM) still believes it leads when it wakes. Writes that reached it
/// meanwhile wait for the new leader and are committed; none is answered
/// `no_leader` because leadership moved under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_to_a_deposed_leader_wait_for_the_new_one() {
    let _machine = shared().await;
    let cluster = Arc::new(Cluster::start(3, Options::fast()).await);
    let old = cluster.leader().await;
    let others: Vec<u64> = cluster.up().into_iter().filter(|&id| id != old).collect();
    cluster.pause(old).await;
    let elected = poll(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || async {
            let mut leaders = Vec::new();
            for &id in &others {
                let view = cluster
                    .admin_client(id)
                    .view(Duration::from_secs(1))
                    .await?;
                leaders.push(view.leader?);
            }
            (leaders.iter().all(|&l| l == leaders[0] && l != old)).then(|| leaders[0])
        },
    )
    .await;
    let Some(new) = elected else {
        cluster.resume(old).await;
        panic!("the two others elected no leader while {old} was frozen");
    };
    // Sent while it sleeps: it reads them as it wakes, beside the new
    // leader's heartbeats that depose it.
    let writes: Vec<_> = (0..6)
        .map(|i| {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let body = json!({ "base_url": cluster.mock.base_url() });
                cluster
                    .put(old, &format!("/admin/v1/upstreams/while-frozen-{i}"), &body)
                    .await
            })
        })
        .collect();
    // Frozen past twice the cut-off bound (2 s here), where a node that
    // heard no quorum refuses writes at once: it must see that it was not
    // listening, rather than refuse before it reads the new leader's word.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    cluster.resume(old).await;
    for (i, write) in writes.into_iter().enumerate() {
        let reply = write.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "write {i}: {}", reply.text());
    }
    // Committed by the new leader: every node has them.
    for id in cluster.up() {
        let upstreams = cluster.get(id, "/admin/v1/upstreams").await.json();
        let frozen = upstreams
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("while-frozen-"))
            })
            .count();
        assert_eq!(frozen, 6, "node {id} (new leader {new})");
    }
}

/// A write forwarded by a follower to a leader that has just died is sent
/// again to the new leader once one is elected, within the write timeout:
/// the client gets its 200, not a 503 for the dead leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_forwarded_to_a_dead_leader_lands_on_the_new_one() {
    let _machine = shared().await;
    let mut cluster = Cluster::start(3, Options::fast()).await;
    let old = cluster.leader().await;
    let via = follower(&cluster, old);
    cluster.kill_9(old).await;
    let t = Instant::now();
    let body = json!({ "base_url": cluster.mock.base_url() });
    let reply = cluster
        .put(via, "/admin/v1/upstreams/after-death", &body)
        .await;
    eprintln!(
        "write forwarded to a dead leader: {} after {:?}",
        reply.status,
        t.elapsed()
    );
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let new = cluster.leader().await;
    assert_ne!(new, old);
    let upstreams = cluster.get(new, "/admin/v1/upstreams").await.json();
    assert!(
        upstreams
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == "after-death"),
        "{upstreams}"
    );
}

/// A node stopped before it is ready drains and exits 0 rather than being
/// killed by the signal's default action: it listens for SIGTERM from its
/// start, so a supervisor that stops it at once, or as soon as it reads
/// the ready line, gets a clean stop. Node 2 here is a new node waiting to
/// be added (its pre-votes refused), so it is never ready.
#[tokio::test]
async fn a_node_not_yet_ready_stops_cleanly_on_sigterm() {
    let cluster = Cluster::start(1, Options::fast()).await;
    let mut waiting = cluster.spawn_joiner(2);
    assert!(
        waiting.listening(Duration::from_secs(20)).await,
        "node 2 never bound its Raft port:\n{}",
        waiting.log()
    );
    let (status, by_itself) =
        harness::process::terminate(&mut waiting.child, Duration::from_secs(30))
            .await
            .unwrap();
    assert!(
        by_itself,
        "node 2 did not stop after SIGTERM:\n{}",
        waiting.log()
    );
    assert!(status.success(), "{status}; log:\n{}", waiting.log());
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
    assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
    assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
}
