//! A key's limits over real sockets: `meridian` in front of `meridian-mock`
//! (answers with usage, targets with prices). The allowlist (403 and a
//! filtered `/v1/models`, in both dialects), rpm and tpm (429 with
//! `Retry-After` and OpenAI's headers), credits that run out (429
//! `insufficient_quota`) and a top-up that lets the key go on, and a key's
//! own `GET /v1/usage` adding up to the costs its answers said.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use proto::config::TargetConfig;
use proto::state::Command;
use serde_json::{Value, json};
use support::config::{Config, KeyConfig, key, route, route_to, target, upstream};
use support::{Answer, Mock, Node, chat_body, send};

const ACME: &str = "sk-acme-0123456789abcdef0123456789";
const FREE: &str = "sk-free-0123456789abcdef0123456789";

fn bearer(k: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {k}"))
}

fn limited(configure: impl FnOnce(&mut KeyConfig)) -> KeyConfig {
    let mut k = key("acme", "ACME_KEY");
    configure(&mut k);
    k
}

/// Routes `fast` and `big` on the mock; keys `acme` (as `limits` sets
/// it) and `free` (no limits).
async fn node(mock: &Mock, acme: KeyConfig) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![upstream("a", mock)];
            c.routes = vec![route_to("fast", "a", "m1"), route_to("big", "a", "m2")];
            c.keys = vec![acme, key("free", "FREE_KEY")];
        },
        &[("ACME_KEY", ACME), ("FREE_KEY", FREE)],
    )
    .await
}

async fn chat(node: &Node, k: &str, model: &str) -> Answer {
    let (h, v) = bearer(k);
    node.chat(chat_body(model), &[(h, &v)]).await
}

async fn messages(node: &Node, k: &str, model: &str) -> Answer {
    let body = json!({"model": model, "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hi"}]});
    node.post(
        "/v1/messages",
        body.to_string(),
        &[("x-api-key", k), ("anthropic-version", "2023-06-01")],
    )
    .await
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_refuses_and_hides_other_models_in_both_dialects() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, limited(|k| k.models = Some(vec!["fast".into()]))).await;

    assert_eq!(chat(&node, ACME, "fast").await.status, StatusCode::OK);
    let denied = chat(&node, ACME, "big").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let e = denied.error();
    assert_eq!(e["type"], "permission_error");
    assert_eq!(e["code"], "model_not_allowed");
    assert_eq!(e["param"], "model");
    assert!(!denied.headers.contains_key("x-ratelimit-limit-requests"));
    let denied = messages(&node, ACME, "big").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let v = denied.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(messages(&node, ACME, "fast").await.status, StatusCode::OK);
    // The other key is not limited.
    assert_eq!(chat(&node, FREE, "big").await.status, StatusCode::OK);

    let (h, v) = bearer(ACME);
    let list = node.get("/v1/models", &[(h, &v)]).await;
    assert_eq!(ids(&list.json()), ["fast"]);
    let (h, v) = bearer(FREE);
    let all = ids(&node.get("/v1/models", &[(h, &v)]).await.json());
    assert!(all.contains(&"big".to_owned()) && all.contains(&"fast".to_owned()));
    let (h, v) = bearer(ACME);
    assert_eq!(
        node.get("/v1/models/big", &[(h, &v)]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        node.get("/v1/models/fast", &[(h, &v)]).await.status,
        StatusCode::OK
    );
    // The Anthropic SDK's listing reads the same list.
    let list = node
        .get(
            "/v1/models",
            &[("x-api-key", ACME), ("anthropic-version", "2023-06-01")],
        )
        .await;
    assert!(!String::from_utf8_lossy(&list.body).contains("\"big\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_model_names_are_refused_cleanly() {
    let mock = Mock::start(&[]).await;
    let node = node(
        &mock,
        limited(|k| k.models = Some(vec!["fast".into(), "deepseek/*".into()])),
    )
    .await;
    let long = "f".repeat(10 * 1024);
    for model in [
        long.as_str(),
        "*",
        "fast*",
        "deepseek/../x",
        "fást🙂",
        "fast\u{0}",
    ] {
        let answer = chat(&node, ACME, model).await;
        assert!(
            answer.status.is_client_error(),
            "{}: {}",
            model.len(),
            answer.status
        );
        answer.error();
    }
    // `deepseek/*` lets the name through to the lookup, which knows no
    // such upstream; a literal `*` is only a pattern in the allowlist.
    assert_eq!(
        chat(&node, ACME, "deepseek/../x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(chat(&node, ACME, "*").await.status, StatusCode::FORBIDDEN);
    assert_eq!(chat(&node, ACME, "fast").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_refuses_with_retry_after_and_the_headers() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, limited(|k| k.rpm = Some(3))).await;
    for remaining in ["2", "1", "0"] {
        let ok = chat(&node, ACME, "fast").await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.header("x-ratelimit-limit-requests"), "3");
        assert_eq!(ok.header("x-ratelimit-remaining-requests"), remaining);
        assert!(ok.header("x-ratelimit-reset-requests").ends_with('s'));
        assert!(!ok.headers.contains_key("x-ratelimit-limit-tokens"));
    }
    let refused = chat(&node, ACME, "fast").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let e = refused.error();
    assert_eq!(e["type"], "requests");
    assert_eq!(e["code"], "rate_limit_exceeded");
    let wait: u64 = refused.header("retry-after").parse().unwrap();
    assert!(wait >= 1);
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), "0");
    let refused = messages(&node, ACME, "fast").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    assert!(refused.headers.contains_key("retry-after"));
    // Another key is not counted against it.
    assert_eq!(chat(&node, FREE, "fast").await.status, StatusCode::OK);
    let metrics = node.admin_get("/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("meridian_key_requests_total{key=\"acme\",outcome=\"rate_limited\"} 2"),
        "{text}"
    );
    assert!(text.contains("meridian_key_requests_total{key=\"acme\",outcome=\"admitted\"} 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_refuses_once_the_answers_tokens_are_counted() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, limited(|k| k.tpm = Some(5))).await;
    let ok = chat(&node, ACME, "fast").await;
    assert_eq!(ok.status, StatusCode::OK);
    let used = ok.json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used >= 5, "the mock's answer uses {used} tokens");
    assert_eq!(ok.header("x-ratelimit-limit-tokens"), "5");
    let refused = chat(&node, ACME, "fast").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let e = refused.error();
    assert_eq!(e["type"], "tokens");
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.header("x-ratelimit-remaining-tokens"), "0");
}

struct Env(Vec<(String, String)>);

impl meridian::routing::Secrets for Env {
    fn env(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn priced(upstream: &str, model: &str) -> TargetConfig {
    let mut t = target(upstream, model);
    // A dollar a token: every answer costs a few dollars.
    t.input_per_mtok = 1_000_000.0;
    t.output_per_mtok = 1_000_000.0;
    t
}

async fn post_in(api: &str, k: &str, body: Value) -> Answer {
    let (h, v) = bearer(k);
    let (status, headers, body) = send(
        Method::POST,
        &format!("http://{api}/v1/chat/completions"),
        &[(h, &v)],
        Some(body.to_string()),
    )
    .await;
    Answer {
        status,
        headers,
        body,
    }
}

async fn usage_in(api: &str, k: &str, query: &str) -> Answer {
    let (h, v) = bearer(k);
    let (status, headers, body) = send(
        Method::GET,
        &format!("http://{api}/v1/usage{query}"),
        &[(h, &v)],
        None,
    )
    .await;
    Answer {
        status,
        headers,
        body,
    }
}

/// In process, so the test can propose the top-up through Raft itself
/// (`Command::AddCredits`, what the admin API's credits endpoint proposes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_run_out_a_top_up_lets_the_key_go_on_and_usage_adds_up() {
    let mock = Mock::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = harness::config::node(1, "test-region", &dir.path().join("data"));
    config.upstreams = vec![upstream("a", &mock)];
    config.routes = vec![route("fast", vec![vec![priced("a", "m1")]])];
    config.keys = vec![limited(|k| k.credits_usd = Some(30.0))];
    let env = Env(vec![("ACME_KEY".into(), ACME.into())]);
    let node = meridian::node::Node::start(&config, Arc::new(env))
        .await
        .unwrap();
    assert!(node.ready(Duration::from_secs(20)).await);
    let api = node.api_addr.to_string();

    let mut costs = Vec::new();
    let mut refused = None;
    for _ in 0..200 {
        let answer = post_in(&api, ACME, chat_body("fast")).await;
        if answer.status == StatusCode::OK {
            costs.push(answer.header("x-meridian-cost-usd").parse::<f64>().unwrap());
            continue;
        }
        refused = Some(answer);
        break;
    }
    let refused = refused.expect("30 dollars at a dollar a token run out");
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let e = refused.error();
    assert_eq!(e["type"], "insufficient_quota");
    assert_eq!(e["code"], "insufficient_quota");
    assert!(!refused.headers.contains_key("retry-after"));
    let spent: f64 = costs.iter().sum();
    assert!(spent >= 30.0, "refused only once spent: {spent}");

    let applied = node
        .cluster
        .write(Command::AddCredits {
            key: "acme".into(),
            id: "topup-1".into(),
            nanos: 1_000 * 1_000_000_000,
        })
        .await
        .unwrap();
    assert!(matches!(
        applied,
        proto::state::CommandResponse::Applied { changed: true }
    ));
    let mut went_on = false;
    for _ in 0..100 {
        let answer = post_in(&api, ACME, chat_body("fast")).await;
        if answer.status == StatusCode::OK {
            costs.push(answer.header("x-meridian-cost-usd").parse::<f64>().unwrap());
            went_on = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(went_on, "the top-up lets the key go on");
    // A stream is counted when it ends.
    let stream = post_in(
        &api,
        ACME,
        json!({"model": "fast", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Say hi"}]}),
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&stream.body).to_string();
    let stream_cost = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v["usage"]["cost"].as_f64())
        .expect("the stream's usage carries its cost");
    costs.push(stream_cost);

    // The key's own usage, once reported, is the sum of what each answer
    // said it cost.
    let expected: f64 = costs.iter().sum();
    let mut last = Value::Null;
    for _ in 0..100 {
        let usage = usage_in(&api, ACME, "?by=model").await;
        assert_eq!(usage.status, StatusCode::OK);
        last = usage.json();
        let rows = last["rows"].as_array().unwrap();
        let requests: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if requests == costs.len() as u64 {
            let total: f64 = rows.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
            assert!((total - expected).abs() < 1e-6, "{total} != {expected}");
            assert_eq!(rows[0]["model"], "fast");
            assert_eq!(rows[0]["key"], "acme");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last["rows"][0]["requests"].as_u64(),
        Some(costs.len() as u64),
        "{last}"
    );
    let other = usage_in(&api, ACME, "?key=free").await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.error()["param"], "key");
    for (query, param) in [
        ("?from=yesterday", "from"),
        ("?from=2026-02-30", "from"),
        ("?to=%00", "to"),
        ("?by=week", "by"),
        ("?form=2026-01-01", "query"),
        ("?key=acme", "key"),
        ("?%ff=1", "query"),
    ] {
        let bad = usage_in(&api, ACME, query).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(bad.error()["param"], param, "{query}");
    }
    // The ledger agrees: added 1030, spent what the answers cost.
    let credits = node.cluster.applied().state.tenancy.credits["acme"].clone();
    assert_eq!(credits.added_nanos, 1_030 * 1_000_000_000);
    assert!(((credits.spent_nanos as f64 / 1e9) - expected).abs() < 1e-6);
    node.shutdown().await;
}

/// A key with credits (or `tpm`) cannot create a response run in the
/// background: its answer carries no usage, which arrives later where
/// nothing charges it, so the key could spend past its credits. The refusal
/// names the field and reaches no upstream; a key without such limits, and
/// the same key without `background`, are served.
#[tokio::test]
async fn a_metered_key_cannot_run_a_response_in_the_background() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            let mut a = upstream("a", &mock);
            a.responses = true;
            c.upstreams = vec![a];
            c.routes = vec![route_to("fast", "a", "m1")];
            c.keys = vec![
                limited(|k| k.credits_usd = Some(30.0)),
                key("free", "FREE_KEY"),
            ];
        },
        &[("ACME_KEY", ACME), ("FREE_KEY", FREE)],
    )
    .await;
    let create = |k: &'static str, body: Value| {
        let node = &node;
        async move {
            let (h, v) = bearer(k);
            node.post("/v1/responses", body.to_string(), &[(h, &v)])
                .await
        }
    };
    let before = mock.requests().await;
    let refused = create(
        ACME,
        json!({"model": "fast", "input": "hi", "background": true}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let error = &refused.json()["error"];
    assert_eq!(error["param"], "background", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("credits"),
        "{error}"
    );
    // A duplicate cannot hide it: the upstream might read either.
    let duplicate = r#"{"model":"fast","input":"hi","background":true,"background":false}"#;
    let (h, v) = bearer(ACME);
    let refused = node
        .post("/v1/responses", duplicate.to_owned(), &[(h, &v)])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        mock.requests().await,
        before,
        "nothing reached the upstream"
    );

    let served = create(ACME, json!({"model": "fast", "input": "hi"})).await;
    assert_eq!(served.status, StatusCode::OK, "{:?}", served.body);
    let served = create(
        FREE,
        json!({"model": "fast", "input": "hi", "background": true}),
    )
    .await;
    assert_eq!(served.status, StatusCode::OK, "{:?}", served.body);
}
