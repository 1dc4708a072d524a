//! Every kind of bad input gets the status and the OpenAI error body of
//! DESIGN.md section 7, over real sockets against a real `meridian`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::json;
use support::config::{Config, key, route_to, upstream, upstream_at};
use support::{Mock, Node, chat_body};

const KEY: &[(&str, &str)] = &[("authorization", "Bearer sk-client-0123456789")];

/// A node with client key `app`, upstream `a` on `mock` and route `m` to
/// it with short timeouts; `extra` changes anything else first.
async fn node_with_key(mock: &Mock, extra: impl FnOnce(&mut Config)) -> Node {
    Node::start_with(
        |c: &mut Config| {
            extra(c);
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(upstream("a", mock));
            let mut m = route_to("m", "a", "x");
            m.first_byte_timeout_ms = Some(300);
            m.request_timeout_ms = Some(3000);
            c.routes.push(m);
        },
        &[("TEST_CLIENT_KEY", "sk-client-0123456789")],
    )
    .await
}

#[tokio::test]
async fn client_mistakes_get_4xx_with_openai_errors() {
    let mock = Mock::start(&[]).await;
    let node = node_with_key(&mock, |c| c.proxy.max_request_bytes = 4096).await;

    let malformed = node
        .post("/v1/chat/completions", "{not json".into(), KEY)
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.error()["type"], "invalid_request_error");

    let no_model = node
        .post(
            "/v1/chat/completions",
            json!({"messages": []}).to_string(),
            KEY,
        )
        .await;
    assert_eq!(no_model.status, 400);
    assert_eq!(no_model.error()["param"], "model");

    let unknown = node.chat(chat_body("gpt-nope"), KEY).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error()["code"], "model_not_found");
    assert!(
        unknown.error()["message"]
            .as_str()
            .unwrap()
            .contains("gpt-nope")
    );

    let no_key = node.chat(chat_body("m"), &[]).await;
    assert_eq!(no_key.status, 401);
    assert_eq!(no_key.error()["code"], "invalid_api_key");

    let wrong_key = node
        .chat(chat_body("m"), &[("authorization", "Bearer sk-wrong")])
        .await;
    assert_eq!(wrong_key.status, 401);

    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(8000)}]});
    let too_large = node.chat(big, KEY).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.error()["code"], "request_too_large");

    let wrong_method = node.get("/v1/chat/completions", KEY).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), "POST");

    let unknown_path = node.post("/v1/nothing", "{}".into(), KEY).await;
    assert_eq!(unknown_path.status, 404);
    assert_eq!(unknown_path.error()["code"], "unknown_url");

    // Every error carries the request id and region, and none reached the provider.
    assert_eq!(unknown.header("x-meridian-region"), "test-region");
    assert_eq!(unknown.header("x-request-id").len(), 32);
    assert_eq!(mock.requests().await, 0);
}

#[tokio::test]
async fn upstream_client_errors_are_passed_through_not_retried() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"error_rate": 1.0, "error_status": 422}))
        .await;
    let node = node_with_key(&mock, |_| {}).await;
    let answer = node.chat(chat_body("m"), KEY).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.header("x-meridian-upstream"), "a");
    assert_eq!(mock.requests().await, 1);
}

#[tokio::test]
async fn all_upstreams_rate_limited_gives_429_with_retry_after() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 9}))
        .await;
    let node = node_with_key(&mock, |_| {}).await;
    let answer = node.chat(chat_body("m"), KEY).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), "9");
    assert_eq!(answer.error()["type"], "rate_limit_error");
    assert!(
        answer.error()["message"]
            .as_str()
            .unwrap()
            .contains("a/x: HTTP 429")
    );
}

#[tokio::test]
async fn all_upstreams_failing_gives_502_naming_the_attempts() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    let node = node_with_key(&mock, |_| {}).await;
    let answer = node.chat(chat_body("m"), KEY).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.header("x-meridian-attempts"), "1");
    let message = answer.error()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("a/x: HTTP 503"), "{message}");
}

#[tokio::test]
async fn all_upstreams_stalled_gives_504() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"stall": true})).await;
    let node = node_with_key(&mock, |_| {}).await;
    let answer = node.chat(chat_body("m"), KEY).await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.error()["code"], "upstream_timeout");
}

#[tokio::test]
async fn a_route_without_usable_upstreams_gives_503_and_not_ready() {
    let node = Node::start_with(
        |c: &mut Config| {
            let mut keyless = upstream_at("keyless", "http://127.0.0.1:9/v1");
            keyless.api_key_env = Some("TEST_UNSET_PROVIDER_KEY".to_owned());
            c.upstreams.push(keyless);
            c.routes.push(route_to("m", "keyless", "x"));
        },
        &[],
    )
    .await;
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error()["code"], "no_usable_upstream");
    assert_eq!(node.admin_get("/readyz", &[]).await.status, 503);
}

#[tokio::test]
async fn overload_gives_429_with_retry_after() {
    let mock = Mock::start(&[]).await;
    mock.behave(json!({"stall": true})).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.proxy.max_in_flight = 1;
            c.upstreams.push(upstream("a", &mock));
            let mut m = route_to("m", "a", "x");
            m.first_byte_timeout_ms = Some(10000);
            c.routes.push(m);
        },
        &[("TEST_CLIENT_KEY", "sk-client-0123456789")],
    )
    .await;
    // The first request holds the only slot while the upstream stalls.
    let slow = node.chat(chat_body("m"), KEY);
    tokio::pin!(slow);
    let second = async {
        while mock.requests().await == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        node.chat(chat_body("m"), KEY).await
    };
    let second = tokio::select! {
        first = &mut slow => panic!("the stalled request was answered: {}", first.status),
        second = second => second,
    };
    assert_eq!(second.status, 429);
    assert_eq!(second.error()["code"], "overloaded");
    assert_eq!(second.header("retry-after"), "1");
}

#[tokio::test]
async fn the_admin_api_wants_its_token() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[("MERIDIAN_ADMIN_TOKEN", "admin-secret-0001")],
    )
    .await;
    assert_eq!(node.admin_get("/admin/v1/health", &[]).await.status, 401);
    assert_eq!(
        node.admin_get("/admin/v1/health", &[("authorization", "Bearer nope")])
            .await
            .status,
        401
    );
    assert_eq!(
        node.admin_get(
            "/admin/v1/health",
            &[("authorization", "Bearer admin-secret-0001")]
        )
        .await
        .status,
        200
    );
    // Probes stay open for load balancers and GeoDNS.
    assert_eq!(node.admin_get("/readyz", &[]).await.status, 200);
}

/// A body must be a JSON object: an array, a string, a number or `null`
/// is a 400 naming no member, and nothing reaches the upstream (an array
/// like `["m", true]` once read as `model` and `stream`).
#[tokio::test]
async fn only_a_json_object_is_a_request() {
    let mock = Mock::start(&[]).await;
    let node = node_with_key(&mock, |_| {}).await;
    for body in [
        r#"["m", true]"#,
        r#"["m"]"#,
        r#"[{"model":"m","messages":[]}]"#,
        r#""m""#,
        "42",
        "null",
        "[]",
    ] {
        let answer = node.post("/v1/chat/completions", body.into(), KEY).await;
        assert_eq!(answer.status, 400, "{body}");
        let error = answer.error();
        assert!(
            error["message"].as_str().unwrap().contains("JSON object"),
            "{body}: {error}"
        );
        assert!(error["param"].is_null(), "{body}: {error}");
    }
    assert_eq!(mock.requests().await, 0);
}

/// Every 400 names the member at fault, however the body is written.
#[tokio::test]
async fn every_400_names_the_real_param() {
    let mock = Mock::start(&[]).await;
    let node = node_with_key(&mock, |_| {}).await;
    for (body, param) in [
        (r#"{"model":"m","model":"m"}"#, "model"),
        (r#"{"model":"m","mod\u0065l":"other"}"#, "model"),
        (r#"{"model":{"stream":true}}"#, "model"),
        (r#"{"messages":[],"stream":"model"}"#, "model"),
        (r#"{"model":"m","stream":"bool"}"#, "stream"),
        (r#"{"model":"m","stream":{"model":"m"}}"#, "stream"),
        (r#"{"model":"m","stream":false,"stream":true}"#, "stream"),
    ] {
        let answer = node.post("/v1/chat/completions", body.into(), KEY).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.error()["param"], param, "{body}");
    }
    assert_eq!(mock.requests().await, 0);
}

/// A model name is the client's: a `\n` in it cannot start a log line of
/// its own, and a 1 MiB one does not make a 1 MiB line.
#[tokio::test]
async fn hostile_model_names_cannot_forge_or_flood_log_lines() {
    let mock = Mock::start(&[]).await;
    let node = node_with_key(&mock, |c| c.proxy.max_request_bytes = 4194304).await;
    let forged = "x\n2026-01-01T00:00:00.000000Z ERROR forged: the node was breached\r\u{1b}[2J";
    let answer = node.chat(chat_body(forged), KEY).await;
    assert_eq!(answer.status, 404);
    // The client still reads its own model back, as sent.
    assert!(answer.error()["message"].as_str().unwrap().contains(forged));
    let huge = "m".repeat(1 << 20);
    assert_eq!(node.chat(chat_body(&huge), KEY).await.status, 404);

    let log = node.log();
    assert!(
        log.lines().all(|l| !l.starts_with("2026-01-01")),
        "a forged line: {log}"
    );
    assert!(!log.contains('\u{1b}'), "a raw escape sequence");
    assert!(log.contains(r"x\n2026-01-01"), "the model, escaped: {log}");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
    let cut = log.lines().find(|l| l.contains("mmmmmmmm")).unwrap();
    assert!(
        cut.contains(" bytes)"),
        "the cut says how long it was: {cut}"
    );
    assert_eq!(mock.requests().await, 0);
}
