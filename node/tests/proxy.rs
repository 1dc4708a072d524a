//! The data plane over real sockets: `meridian` and `meridian-mock` as real
//! processes, every answer checked for status, headers and body, and the
//! mocks' own counts checked for what reached them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::json;
use support::config::{Config, key, route, route_to, target, tiers, upstream};
use support::{Mock, Node, chat_body};

/// A route `m` with tier 0 on `a` and tier 1 on `b`, with short timeouts.
async fn two_tiers(a: &Mock, b: &Mock) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![upstream("a", a), upstream("b", b)];
            let mut m = tiers("m", &[("a", "a-model"), ("b", "b-model")]);
            m.first_byte_timeout_ms = Some(400);
            m.request_timeout_ms = Some(5000);
            c.routes.push(m);
        },
        &[],
    )
    .await
}

#[tokio::test]
async fn plain_request_is_routed_rewritten_and_labelled() {
    let mock = Mock::start(&["--api-key", "sk-provider"]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            let mut a = upstream("a", &mock);
            a.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
            c.upstreams.push(a);
            let mut priced = target("a", "provider-model");
            priced.input_per_mtok = 1.0;
            priced.output_per_mtok = 2.0;
            c.routes.push(route("fast", vec![vec![priced]]));
        },
        &[
            ("TEST_CLIENT_KEY", "sk-client-0123456789"),
            ("TEST_PROVIDER_KEY", "sk-provider"),
        ],
    )
    .await;

    let answer = node
        .chat(
            chat_body("fast"),
            &[
                ("authorization", "Bearer sk-client-0123456789"),
                ("x-request-id", "req-42"),
            ],
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let v = answer.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["model"], "provider-model",
        "the provider saw its own model name"
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(answer.header("x-meridian-upstream"), "a");
    assert_eq!(answer.header("x-meridian-region"), "test-region");
    assert_eq!(answer.header("x-meridian-attempts"), "1");
    assert_eq!(answer.header("x-meridian-fallback"), "false");
    assert_eq!(answer.header("x-request-id"), "req-42");

    let stats = mock.stats().await;
    assert_eq!(stats["by_model"]["provider-model"], 1, "{stats}");
    assert_eq!(
        stats["outcomes"]["ok"], 1,
        "the provider key was accepted: {stats}"
    );

    // The log line names the request, the usage and the cost, never a key.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("request done"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("req-42") && line.contains("prompt_tokens=") && line.contains("cost_usd="),
        "{line}"
    );
    // Its layout, field by field, as operators' parsers read it (the node
    // writes tracing-subscriber's default layout its own way: log_line).
    let layout = regex::Regex::new(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  INFO request\{id=req-42\}: meridian::proxy::finish: request done key=\S+ route=fast upstream=a model=provider-model stream=false status=200 ttfb_ms=\d+ total_ms=\d+ prompt_tokens=\d+ completion_tokens=\d+ cached_tokens=\d+ cost_usd=[0-9.e-]+$",
    )
    .unwrap();
    assert!(layout.is_match(line), "{line}");
    assert!(
        !log.contains("sk-client") && !log.contains("sk-provider"),
        "a secret reached the log"
    );

    // /v1/models lists the routes.
    let models = node
        .get(
            "/v1/models",
            &[("authorization", "Bearer sk-client-0123456789")],
        )
        .await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["data"][0]["id"], "fast");
}

#[tokio::test]
async fn stream_arrives_chunk_by_chunk_with_usage() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"chunks": 5, "chunk_delay": {"fixed_ms": 30}}))
        .await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "a-model"));
        },
        &[],
    )
    .await;

    let mut body = chat_body("m");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, headers, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-meridian-upstream"], "a");
    // With 30 ms between chunks, every delayed chunk arrives as its own frame
    // (what the upstream sends together, like the last chunk, usage and
    // [DONE], may share one write).
    assert!(
        frames.len() >= 5,
        "chunks were buffered: {} frames",
        frames.len()
    );
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(text.matches("chat.completion.chunk").count(), 6, "{text}");
    assert!(text.contains("\"usage\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn fails_over_on_500_and_marks_the_fallback() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    let node = two_tiers(&a, &b).await;
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["model"], "b-model");
    assert_eq!(answer.header("x-meridian-upstream"), "b");
    assert_eq!(answer.header("x-meridian-attempts"), "2");
    assert_eq!(answer.header("x-meridian-fallback"), "true");
    assert_eq!(a.stats().await["outcomes"]["error"], 1);
}

#[tokio::test]
async fn fails_over_on_refused_connection() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"refuse": true})).await;
    let node = two_tiers(&a, &b).await;
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("x-meridian-upstream"), "b");
    assert_eq!(answer.header("x-meridian-fallback"), "true");
}

#[tokio::test]
async fn fails_over_on_a_stalled_upstream_within_the_first_byte_timeout() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"stall": true})).await;
    let node = two_tiers(&a, &b).await;
    let started = std::time::Instant::now();
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-upstream"), "b");
    // 400 ms first-byte timeout, then the fallback answers at once.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Streams too: a stall before the first chunk fails over.
    let mut body = chat_body("m");
    body["stream"] = json!(true);
    let (status, headers, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-upstream"], "b");
    assert!(String::from_utf8_lossy(frames.last().unwrap()).contains("[DONE]"));
}

#[tokio::test]
async fn fails_over_on_429() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 7}))
        .await;
    let node = two_tiers(&a, &b).await;
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-upstream"), "b");
    assert_eq!(a.stats().await["outcomes"]["rate_limited"], 1);
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_and_is_not_retried() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"chunks": 8, "cut_after_chunks": 3})).await;
    let node = two_tiers(&a, &b).await;
    let mut body = chat_body("m");
    body["stream"] = json!(true);
    let (status, headers, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-upstream"], "a");
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(text.matches("chat.completion.chunk").count(), 3, "{text}");
    let last = text.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("data: {\"error\""),
        "the stream must end with an error event: {text}"
    );
    assert!(last.contains("stream_interrupted"), "{last}");
    assert!(!text.contains("[DONE]"));
    // Once bytes reached the client nothing was retried: one call in all.
    assert_eq!(a.requests().await, 1);
    assert_eq!(b.requests().await, 0);
}

#[tokio::test]
async fn http2_upstreams_work() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            let mut h2 = upstream("h2", &mock);
            h2.http2 = true;
            c.upstreams.push(h2);
            c.routes.push(route_to("m", "h2", "x"));
        },
        &[],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(node.chat(chat_body("m"), &[]).await.status, 200);
    }
    let mut body = chat_body("m");
    body["stream"] = json!(true);
    let (status, _, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(frames.last().unwrap()).contains("[DONE]"));
    // Every request reached the upstream as HTTP/2, none as HTTP/1.
    let stats = mock.stats().await;
    assert_eq!(stats["by_version"]["HTTP/2"], 4, "{stats}");
    assert!(
        stats["by_version"]["HTTP/1"].as_u64().unwrap_or(0) == 0,
        "{stats}"
    );
}

#[tokio::test]
async fn completions_and_embeddings_are_proxied() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("c", "a", "c-up"));
            c.routes.push(route_to("e", "a", "e-up"));
        },
        &[],
    )
    .await;
    let c = node
        .post(
            "/v1/completions",
            json!({"model": "c", "prompt": "hi"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.json()["object"], "text_completion");
    let e = node
        .post(
            "/v1/embeddings",
            json!({"model": "e", "input": ["a", "b"]}).to_string(),
            &[],
        )
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.json()["data"].as_array().unwrap().len(), 2);
    assert_eq!(e.json()["model"], "e-up");
}

#[tokio::test]
async fn admin_health_shows_this_nodes_windows() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    a.behave(json!({"error_rate": 1.0})).await;
    let node = two_tiers(&a, &b).await;
    for _ in 0..5 {
        assert_eq!(node.chat(chat_body("m"), &[]).await.status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let health = node.admin_get("/admin/v1/health", &[]).await;
    assert_eq!(health.status, 200);
    let v = health.json();
    let by_id = |id: &str| {
        v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("b")["window"]["successes"], 5, "{v}");
    assert!(
        by_id("b")["window"]["ttfb_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert!(by_id("a")["window"]["errors"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(node.admin_get("/readyz", &[]).await.status, 200);
    assert_eq!(node.admin_get("/healthz", &[]).await.status, 200);
}

/// A stream limit past any instant the clock can hold
/// (`proxy.max_stream_ms` at TOML's largest integer) bounds nothing and
/// breaks nothing: the stream is relayed whole.
#[tokio::test]
async fn a_stream_limit_past_the_clocks_end_is_no_limit() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "a-model"));
            c.proxy.max_stream_ms = i64::MAX as u64;
        },
        &[],
    )
    .await;
    let mut body = chat_body("m");
    body["stream"] = json!(true);
    let (status, _, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("time limit"), "{text}");
}
