//! A provider's `Retry-After`, honoured in every region, over real
//! processes: `meridian` nodes in front of `meridian-mock` upstreams that
//! answer 429 with `Retry-After`. One node: the upstream gets no attempt
//! while it is cooled, traffic takes the fallback and comes back after; a
//! route with nothing else answers 429 with the wait left, without
//! touching the upstream; a hostile wait is capped. Three nodes: the node
//! that saw the 429 tells the others, which stop sending to it too. And
//! each priority class's service level in `/admin/v1/health` and
//! `/metrics`. Figures are printed with `eprintln!` (`-- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use proto::config::{ClassConfig, SloConfig};
use serde_json::{Value, json};
use support::cluster::{Cluster, Options, poll};
use support::config::{Config, key, route_to, tiers, upstream};
use support::{Answer, Mock, Node, chat_body};

/// Node 1 alone with upstreams `a` (tier 0) and `b` (its fallback) for
/// model `m`, and `only-a` with no fallback.
async fn node(a: &Mock, b: &Mock) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![upstream("a", a), upstream("b", b)];
            c.routes = vec![
                tiers("m", &[("a", "a-model"), ("b", "b-model")]),
                route_to("only-a", "a", "a-model"),
            ];
        },
        &[],
    )
    .await
}

/// What node `health` (its `/admin/v1/health`) says of `upstream`.
fn upstream_of(health: &Value, upstream: &str) -> Value {
    health["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == upstream)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn cooldown_ms(node: &Node, upstream: &str) -> u64 {
    let health = node.admin_get("/admin/v1/health", &[]).await.json();
    // Left out when it is 0.
    upstream_of(&health, upstream)["cooldown_ms"]
        .as_u64()
        .unwrap_or(0)
}

async fn chat(node: &Node, model: &str) -> Answer {
    node.chat(chat_body(model), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_with_retry_after_cools_the_upstream_and_traffic_takes_the_fallback() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = node(&a, &b).await;
    a.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 5}))
        .await;

    let first = chat(&node, "m").await;
    let seen = Instant::now();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-meridian-upstream"), "b", "failed over");
    assert_eq!(a.requests().await, 1);
    // The upstream is fine again at once, but asked for 5 s.
    a.behave(json!({"rate_limit_rate": 0.0})).await;
    let left = cooldown_ms(&node, "a").await;
    assert!(left > 0 && left <= 5_000, "{left}");

    // While it is cooled (as the node says after each request), nothing
    // goes to it: every request is answered by the fallback.
    let mut during = 0;
    loop {
        let answer = chat(&node, "m").await;
        assert_eq!(answer.status, StatusCode::OK);
        let upstream = answer.header("x-meridian-upstream").to_owned();
        if cooldown_ms(&node, "a").await == 0 {
            break;
        }
        // Still cooled after it: it was cooled when it was sent.
        assert_eq!(upstream, "b", "sent to a while cooled");
        assert_eq!(a.requests().await, 1, "an attempt reached a while cooled");
        during += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(seen.elapsed() < Duration::from_secs(30), "never over");
    }
    eprintln!(
        "{during} requests during the cooldown, all on b; over after {} ms",
        seen.elapsed().as_millis()
    );

    // Traffic comes back once it is over.
    let back = poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { (chat(&node, "m").await.header("x-meridian-upstream") == "a").then_some(()) },
    )
    .await;
    assert!(back.is_some(), "traffic never came back to a");
    let metrics = node.admin_get("/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("meridian_upstream_cooldown_seconds{upstream=\"a\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_target_cooled_the_client_gets_429_and_the_upstream_nothing() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = node(&a, &b).await;
    a.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 5}))
        .await;
    let first = chat(&node, "only-a").await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.requests().await, 1);

    let again = chat(&node, "only-a").await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = again.header("retry-after").parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    let message = again.error()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("Retry-After"), "{message}");
    assert_eq!(again.header("x-meridian-attempts"), "0");
    assert_eq!(a.requests().await, 1, "the cooled upstream was tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_retry_after_cools_for_ten_minutes_at_most() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = node(&a, &b).await;
    a.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 86_400}))
        .await;
    let first = chat(&node, "m").await;
    assert_eq!(first.header("x-meridian-upstream"), "b");
    let left = cooldown_ms(&node, "a").await;
    assert!(left > 590_000 && left <= 600_000, "{left}");
    let limited = chat(&node, "only-a").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.header("retry-after").parse().unwrap();
    assert!(wait <= 600, "{wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_class_reports_its_service_against_its_objective() {
    let a = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![upstream("a", &a)];
            c.routes = vec![route_to("m", "a", "a-model")];
            let mut pro = key("pro", "PRO_KEY");
            pro.class = Some("pro".into());
            c.keys = vec![pro, key("free", "FREE_KEY")];
            c.classes = vec![
                ClassConfig {
                    name: "pro".into(),
                    reserved: 0.5,
                    queue_ms: 0,
                    slo: Some(SloConfig {
                        success: 0.999,
                        p99_ms: Some(2_000),
                    }),
                },
                ClassConfig {
                    name: "free".into(),
                    reserved: 0.0,
                    queue_ms: 0,
                    slo: None,
                },
            ];
        },
        &[
            ("PRO_KEY", "sk-pro-0123456789abcdef0123456789"),
            ("FREE_KEY", "sk-free-0123456789abcdef0123456789"),
        ],
    )
    .await;
    let pro = ("authorization", "Bearer sk-pro-0123456789abcdef0123456789");
    let free = ("authorization", "Bearer sk-free-0123456789abcdef0123456789");
    for _ in 0..4 {
        assert_eq!(
            node.chat(chat_body("m"), &[pro]).await.status,
            StatusCode::OK
        );
    }
    // The free class's upstream fails it once: no upstream's answer.
    a.behave(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    assert_eq!(
        node.chat(chat_body("m"), &[free]).await.status,
        StatusCode::BAD_GATEWAY
    );
    let health = node.admin_get("/admin/v1/health", &[]).await.json();
    let classes = health["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{health}");
    let (p, f) = (&classes[0], &classes[1]);
    assert_eq!(
        (p["name"].as_str(), p["requests"].as_u64()),
        (Some("pro"), Some(4))
    );
    assert_eq!(p["success_ratio"], 1.0);
    assert!(p["p99_ms"].as_f64().unwrap() > 0.0, "{p}");
    assert_eq!(p["slo"], json!({"success": 0.999, "p99_ms": 2000}));
    assert_eq!(p["error_budget_left"], 1.0);
    assert_eq!(
        (f["name"].as_str(), f["requests"].as_u64()),
        (Some("free"), Some(1))
    );
    assert_eq!(f["success_ratio"], 0.0);
    assert_eq!(
        (f["p99_ms"].clone(), f["slo"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(f["error_budget_left"], Value::Null);

    let metrics = node.admin_get("/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "meridian_class_requests_total{class=\"pro\",outcome=\"success\"} 4",
        "meridian_class_requests_total{class=\"free\",outcome=\"error\"} 1",
        "meridian_class_success_ratio{class=\"free\"} 0",
        "meridian_class_error_budget_left{class=\"pro\"} 1",
        "meridian_class_p99_seconds{class=\"pro\"}",
    ] {
        assert!(text.contains(line), "{line} not in /metrics");
    }
}

/// Three regions: node 1 sees `a` answer 429 with `Retry-After: 5`; nodes
/// 2 and 3, which never sent to it, learn the cooldown from node 1's report
/// and send it nothing until it is over, then send to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_sees_the_429_and_every_region_leaves_the_upstream_alone() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    for (id, mock) in [("a", &a), ("b", &b)] {
        let body = json!({ "base_url": mock.base_url(), "region": "r1" });
        let reply = cluster
            .put(1, &format!("/admin/v1/upstreams/{id}"), &body)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let route = json!({ "tiers": [
        [{ "upstream": "a", "model": "a-model" }],
        [{ "upstream": "b", "model": "b-model" }],
    ] });
    cluster.put_route(1, "m", &route).await;
    for id in 1..=3 {
        let served = poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let reply = cluster.chat(id, "m", Duration::from_secs(2)).await.ok()?;
                (reply.status == StatusCode::OK).then_some(())
            },
        )
        .await;
        assert!(served.is_some(), "node {id} does not serve the route");
    }

    a.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 5}))
        .await;
    let before = a.requests().await;
    let reply = cluster.chat(1, "m", Duration::from_secs(5)).await.unwrap();
    let seen = Instant::now();
    assert_eq!(reply.header("x-meridian-upstream"), "b");
    a.behave(json!({"rate_limit_rate": 0.0})).await;

    // When do nodes 2 and 3 say `a` is cooled?
    for id in 2..=3 {
        let learned = poll(Duration::from_secs(5), Duration::from_millis(5), || async {
            let health = cluster.get(id, "/admin/v1/health").await.json();
            (upstream_of(&health, "a")["cooldown_ms"]
                .as_u64()
                .unwrap_or(0)
                > 0)
            .then(|| seen.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("node {id} never learned of the cooldown"));
        eprintln!(
            "node {id} learned of the cooldown {} ms after node 1's 429",
            learned.as_millis()
        );
    }
    assert_eq!(a.requests().await, before + 1);

    // While cooled everywhere, every region's traffic takes the fallback.
    let mut sent = 0;
    loop {
        let mut cooled = 0;
        for id in 1..=3 {
            let reply = cluster.chat(id, "m", Duration::from_secs(5)).await.unwrap();
            let health = cluster.get(id, "/admin/v1/health").await.json();
            if upstream_of(&health, "a")["cooldown_ms"]
                .as_u64()
                .unwrap_or(0)
                > 0
            {
                // Still cooled after it: it was cooled when it was sent.
                cooled += 1;
                assert_eq!(reply.header("x-meridian-upstream"), "b", "node {id}");
                sent += 1;
            }
        }
        // Cooled on all three at the end of the round: cooled on all three
        // throughout it (no 429 can start a new one), so `a` got nothing.
        // (Near the end, the node that saw the 429 is free a few ms before
        // the others, and its requests rightly go to `a` again.)
        if cooled == 3 {
            assert_eq!(
                a.requests().await,
                before + 1,
                "a node sent to a while cooled"
            );
        }
        if cooled == 0 {
            break;
        }
        assert!(seen.elapsed() < Duration::from_secs(30), "never over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{sent} requests on the three nodes while cooled, none to a");

    // And back on every node after.
    for id in 1..=3 {
        let back = poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let reply = cluster.chat(id, "m", Duration::from_secs(2)).await.ok()?;
                (reply.header("x-meridian-upstream") == "a").then_some(())
            },
        )
        .await;
        assert!(back.is_some(), "node {id} never sent to a again");
    }
}

/// Attempts node `id` made at `upstream` so far (every outcome), from its
/// `/metrics`.
async fn attempts(cluster: &Cluster, id: u64, upstream: &str) -> u64 {
    let text = cluster.get(id, "/metrics").await.text();
    let prefix = format!("meridian_upstream_attempts_total{{upstream=\"{upstream}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The measurement of docs/chaos/cooldown.md (`cargo test -p meridian --test
/// cooldown -- --ignored --nocapture`): three regions under steady traffic
/// (20 requests a second each) to a route of `a` with `b` as its fallback;
/// `a` answers every request 429 with `Retry-After: 5` for 5 s, then is
/// fine again. Each node's attempts at `a` (its own
/// `meridian_upstream_attempts_total`) are read every 50 ms: how many each
/// region sent during the 5 s, after the first report interval, and when
/// traffic came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
async fn measure_three_regions_leaving_a_rate_limited_upstream_alone() {
    let cluster = Cluster::start(3, Options::fast()).await;
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    for (id, mock) in [("a", &a), ("b", &b)] {
        let body = json!({ "base_url": mock.base_url(), "region": "r1" });
        let reply = cluster
            .put(1, &format!("/admin/v1/upstreams/{id}"), &body)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let route = json!({ "tiers": [
        [{ "upstream": "a", "model": "a-model" }],
        [{ "upstream": "b", "model": "b-model" }],
    ] });
    cluster.put_route(1, "m", &route).await;
    for id in 1..=3 {
        let served = poll(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let reply = cluster.chat(id, "m", Duration::from_secs(2)).await.ok()?;
                (reply.status == StatusCode::OK).then_some(())
            },
        )
        .await;
        assert!(served.is_some(), "node {id} does not serve the route");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for id in 1..=3u64 {
        let api = cluster.node(id).api.clone();
        let stop = stop.clone();
        load.spawn(async move {
            let http = support::cluster::Http::new();
            let (mut sent, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = http.chat(&api, "m", Duration::from_secs(5)).await;
                sent += 1;
                if reply.map_or(true, |r| r.status != StatusCode::OK) {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (id, sent, failed)
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut last = [0u64; 4];
    for id in 1..=3 {
        last[id as usize] = attempts(&cluster, id, "a").await;
    }
    a.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 5}))
        .await;
    let start = Instant::now();
    let mut timeline: Vec<(Duration, u64, u64)> = Vec::new();
    let mut healthy = false;
    while start.elapsed() < Duration::from_secs(12) {
        if !healthy && start.elapsed() >= Duration::from_secs(5) {
            a.behave(json!({"rate_limit_rate": 0.0})).await;
            healthy = true;
        }
        for id in 1..=3u64 {
            let now = attempts(&cluster, id, "a").await;
            if now > last[id as usize] {
                timeline.push((start.elapsed(), id, now - last[id as usize]));
                last[id as usize] = now;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(done) = load.join_next().await {
        let (id, sent, failed) = done.unwrap();
        eprintln!("node {id}: {sent} requests, {failed} not answered 200");
    }
    for id in 1..=3u64 {
        // The attempts of the first second, and the first two once `a`
        // is fine again.
        let first: Vec<String> = timeline
            .iter()
            .filter(|(at, n, _)| *n == id && at.as_secs_f64() < 1.0)
            .map(|(at, _, k)| format!("{k} at {:.2} s", at.as_secs_f64()))
            .collect();
        let back: Vec<String> = timeline
            .iter()
            .filter(|(at, n, _)| *n == id && at.as_secs_f64() >= 5.0)
            .take(2)
            .map(|(at, _, k)| format!("{k} at {:.2} s", at.as_secs_f64()))
            .collect();
        let during = |from: f64, to: f64| {
            timeline
                .iter()
                .filter(|(at, n, _)| *n == id && at.as_secs_f64() >= from && at.as_secs_f64() < to)
                .map(|(_, _, k)| k)
                .sum::<u64>()
        };
        eprintln!(
            "node {id}: attempts at a in [0, 1 s): {} ({}), [1 s, 5 s): {}, [5 s, 12 s): {} (first: {})",
            during(0.0, 1.0),
            first.join(", "),
            during(1.0, 5.0),
            during(5.0, 12.0),
            back.join(", ")
        );
    }
}
