//! Upstream capacity and priority classes over real sockets: `meridian` in
//! front of a slow `meridian-mock` whose upstream has `max_concurrency = 4`
//! with pro reserving half of it. Free requests past their share are shed
//! with 429 `overloaded` and `Retry-After` (in both dialects) while pro
//! requests are served at once; with a fallback tier the free overflow goes
//! there instead; a free class with a queue waits for a slot; hostile
//! values of the new fields are refused with the field named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use http::StatusCode;
use proto::config::ClassConfig;
use serde_json::json;
use support::config::{Config, KeyConfig, key, tiers, upstream};
use support::{Answer, Mock, Node, chat_body};

const PRO: &str = "sk-pro-0123456789abcdef0123456789ab";
const FREE: &str = "sk-free-0123456789abcdef0123456789";

fn classes(free_queue_ms: u64) -> Vec<ClassConfig> {
    vec![
        ClassConfig {
            name: "pro".into(),
            reserved: 0.5,
            queue_ms: 0,
            slo: None,
        },
        ClassConfig {
            name: "free".into(),
            reserved: 0.0,
            queue_ms: free_queue_ms,
            slo: None,
        },
    ]
}

fn keys() -> Vec<KeyConfig> {
    let mut pro = key("pro", "PRO_KEY");
    pro.class = Some("pro".into());
    // No class: the last one, free.
    vec![pro, key("free", "FREE_KEY")]
}

/// Route `fast` to upstream `a` (capacity 4) on `slow`, then, when
/// `fallback` is given, to upstream `b` on it.
async fn node(slow: &Mock, fallback: Option<&Mock>, free_queue_ms: u64) -> Node {
    Node::start_with(
        |c: &mut Config| {
            let mut a = upstream("a", slow);
            a.max_concurrency = Some(4);
            c.upstreams = vec![a];
            let mut targets = vec![("a", "m1")];
            if let Some(b) = fallback {
                c.upstreams.push(upstream("b", b));
                targets.push(("b", "m1"));
            }
            c.routes = vec![tiers("fast", &targets)];
            c.keys = keys();
            c.classes = classes(free_queue_ms);
        },
        &[("PRO_KEY", PRO), ("FREE_KEY", FREE)],
    )
    .await
}

async fn chat(node: &Node, k: &str) -> Answer {
    let auth = format!("Bearer {k}");
    node.chat(chat_body("fast"), &[("authorization", &auth)])
        .await
}

async fn messages(node: &Node, k: &str) -> Answer {
    let body = json!({"model": "fast", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hi"}]});
    node.post(
        "/v1/messages",
        body.to_string(),
        &[("x-api-key", k), ("anthropic-version", "2023-06-01")],
    )
    .await
}

/// Attempts in flight to upstream `id`, as the node reports them.
async fn in_flight(node: &Node, id: &str) -> u64 {
    let health = node.admin_get("/admin/v1/health", &[]).await.json();
    health["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .map_or(0, |u| u["in_flight"].as_u64().unwrap())
}

async fn until_in_flight(node: &Node, id: &str, n: u64) {
    for _ in 0..400 {
        if in_flight(node, id).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("upstream {id} never had {n} in flight");
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn assert_shed(a: &Answer) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.header("retry-after").parse::<u64>().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pro_is_served_from_its_reserve_while_free_past_its_share_is_shed() {
    let slow = Mock::start(&[]).await;
    // Slow enough that every request below is sent while the first ones
    // are still in flight (the test waits for them to be, not for a time).
    slow.behave(json!({"first_byte": {"fixed_ms": 6000}})).await;
    let node = std::sync::Arc::new(node(&slow, None, 0).await);

    let free: Vec<_> = (0..8)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { chat(&node, FREE).await })
        })
        .collect();
    // Free fills its share, 2 of the 4 slots.
    until_in_flight(&node, "a", 2).await;
    let pro: Vec<_> = (0..2)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { chat(&node, PRO).await })
        })
        .collect();
    until_in_flight(&node, "a", 4).await;
    // Full: a free Anthropic client is shed in its own shape, as a 429.
    let shed = messages(&node, FREE).await;
    assert_shed(&shed);
    let v = shed.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");

    for p in pro {
        let p = p.await.unwrap();
        assert_eq!(
            p.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&p.body)
        );
        assert_eq!(p.header("x-meridian-attempts"), "1");
    }
    let mut statuses = Vec::new();
    for f in free {
        let f = f.await.unwrap();
        if f.status == StatusCode::TOO_MANY_REQUESTS {
            assert_shed(&f);
            let e = f.error();
            assert_eq!(e["code"], "overloaded");
            assert_eq!(e["type"], "rate_limit_error");
            assert!(e["message"].as_str().unwrap().contains("`free`"), "{e}");
        }
        statuses.push(f.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429, 429, 429]);
    // Only what was admitted reached the provider.
    assert_eq!(slow.requests().await, 4);
    // Every slot went back.
    until_in_flight(&node, "a", 0).await;

    let metrics = String::from_utf8_lossy(&node.admin_get("/metrics", &[]).await.body).into_owned();
    assert_eq!(
        metric(
            &metrics,
            "meridian_shed_total{class=\"free\",reason=\"upstream_capacity\"}"
        ),
        7.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "meridian_shed_total{class=\"pro\",reason=\"upstream_capacity\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fallback_tier_the_free_overflow_goes_there_instead() {
    let slow = Mock::start(&[]).await;
    slow.behave(json!({"first_byte": {"fixed_ms": 3000}})).await;
    let spare = Mock::start(&[]).await;
    let node = std::sync::Arc::new(node(&slow, Some(&spare), 0).await);

    let free: Vec<_> = (0..8)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { chat(&node, FREE).await })
        })
        .collect();
    let mut by_upstream: Vec<(String, String)> = Vec::new();
    for f in free {
        let f = f.await.unwrap();
        assert_eq!(
            f.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&f.body)
        );
        by_upstream.push((
            f.header("x-meridian-upstream").to_owned(),
            f.header("x-meridian-fallback").to_owned(),
        ));
    }
    by_upstream.sort();
    let on_a = by_upstream.iter().filter(|(u, _)| u == "a").count();
    assert_eq!(on_a, 2, "{by_upstream:?}");
    assert!(
        by_upstream
            .iter()
            .all(|(u, fallback)| (u == "a") == (fallback == "false")),
        "{by_upstream:?}"
    );
    assert_eq!(slow.requests().await, 2);
    assert_eq!(spare.requests().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_with_a_queue_waits_for_a_slot_instead_of_being_shed() {
    let slow = Mock::start(&[]).await;
    slow.behave(json!({"first_byte": {"fixed_ms": 20}})).await;
    // Free may wait up to 20 s, far more than a slot takes to free. Sixty
    // requests race for free's two slots: one that finds a slot in its plan
    // but loses it to another before its turn waits again, never shed.
    let node = std::sync::Arc::new(node(&slow, None, 20_000).await);
    let free: Vec<_> = (0..60)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { chat(&node, FREE).await })
        })
        .collect();
    for f in free {
        let f = f.await.unwrap();
        assert_eq!(
            f.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&f.body)
        );
    }
    assert_eq!(slow.requests().await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_sheds_the_lowest_class_first() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"stall": true})).await;
    let node = std::sync::Arc::new(
        Node::start_with(
            |c: &mut Config| {
                c.upstreams = vec![upstream("a", &mock)];
                c.routes = vec![tiers("fast", &[("a", "m1")])];
                c.keys = keys();
                c.classes = classes(0);
                // Free may fill 1 of the node's 2 slots; pro both.
                c.proxy.max_in_flight = 2;
            },
            &[("PRO_KEY", PRO), ("FREE_KEY", FREE)],
        )
        .await,
    );
    let first = {
        let node = node.clone();
        tokio::spawn(async move { chat(&node, FREE).await })
    };
    while mock.requests().await < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shed = chat(&node, FREE).await;
    assert_shed(&shed);
    assert_eq!(shed.error()["code"], "overloaded");
    let pro = {
        let node = node.clone();
        tokio::spawn(async move { chat(&node, PRO).await })
    };
    // The pro request got the node's last slot and reached the provider.
    while mock.requests().await < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = String::from_utf8_lossy(&node.admin_get("/metrics", &[]).await.body).into_owned();
    assert_eq!(
        metric(
            &metrics,
            "meridian_shed_total{class=\"free\",reason=\"node_in_flight\"}"
        ),
        1.0,
        "{metrics}"
    );
    first.abort();
    pro.abort();
}

fn meridian(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hostile_capacity_and_class_values_are_refused_with_the_field_named() {
    const BASE: &str = "[node]\nid = 1\nregion = \"eu\"\n\n[listen]\napi = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n";
    const UPSTREAM: &str = "[[upstreams]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    const ROUTE: &str =
        "\n[[routes]]\nmodel = \"m\"\ntiers = [[{ upstream = \"a\", model = \"x\" }]]\n";
    let class = |name: &str, extra: &str| format!("[[classes]]\nname = \"{name}\"\n{extra}\n");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{UPSTREAM}max_concurrency = 0\n"),
            "upstreams[0].max_concurrency",
        ),
        (
            format!("{UPSTREAM}max_concurrency = -4\n"),
            "max_concurrency",
        ),
        (
            format!("{UPSTREAM}max_concurrency = 99999999999\n"),
            "max_concurrency",
        ),
        (format!("{UPSTREAM}rpm = 0\n"), "upstreams[0].rpm"),
        (
            format!("{UPSTREAM}{}", class("pro", "reserved = 1.5")),
            "classes[0].reserved",
        ),
        (
            format!("{UPSTREAM}{}", class("pro", "reserved = nan")),
            "classes[0].reserved",
        ),
        (
            format!("{UPSTREAM}{}", class("pro", "reserved = -0.5")),
            "classes[0].reserved",
        ),
        (
            format!(
                "{UPSTREAM}{}{}",
                class("pro", "reserved = 0.7"),
                class("team", "reserved = 0.4")
            ),
            "classes[1].reserved",
        ),
        (
            format!("{UPSTREAM}{}", class("pro", "queue_ms = 99999999")),
            "classes[0].queue_ms",
        ),
        (
            format!("{UPSTREAM}{}{}", class("pro", ""), class("pro", "")),
            "classes[1].name",
        ),
    ];
    for (body, field) in cases {
        // The route after the upstream's fields; the classes are tables of
        // their own, so the route goes before them.
        let text = match body.find("[[classes]]") {
            Some(at) => format!("{BASE}{}{ROUTE}\n{}", &body[..at], &body[at..]),
            None => format!("{BASE}{body}{ROUTE}"),
        };
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let (code, stderr) = meridian(&["config", "check", file.path().to_str().unwrap()]);
        assert_eq!(code, 64, "{text}\n{stderr}");
        assert!(
            stderr.contains(field),
            "{field} not named in: {stderr}\n{text}"
        );
    }
}
