//! What crosses the node in headers, over real sockets: the client's trace
//! context, user agent and `openai-beta` reach the provider (checked by
//! the mock's own record of what it saw), hostile values of them are
//! dropped or refused, the client's key and any other credential or
//! cookie never reach it, and the provider's request id comes back as
//! `x-upstream-request-id` unless it is hostile. Client query strings are
//! refused, naming their first parameter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use proto::config::{UpstreamConfig, UpstreamKind};
use serde_json::{Value, json};
use support::config::{Config, key, route_to, upstream};
use support::{Mock, Node};

const CLIENT: &str = "sk-client-0123456789";
const PROVIDER: &str = "sk-provider-headers-0123";
const ENV: [(&str, &str); 2] = [("TEST_CLIENT_KEY", CLIENT), ("TEST_PROVIDER_KEY", PROVIDER)];
const AUTH: (&str, &str) = ("authorization", "Bearer sk-client-0123456789");
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const MERIDIAN_UA: &str = concat!("meridian/", env!("CARGO_PKG_VERSION"));

/// Every header name an upstream request may carry: what the node sets,
/// and what HTTP itself adds.
const SENT: [&str; 11] = [
    "accept",
    "authorization",
    "content-length",
    "content-type",
    "host",
    "openai-beta",
    "traceparent",
    "tracestate",
    "user-agent",
    "x-request-id",
    "x-api-key",
];

fn keyed(mut u: UpstreamConfig) -> UpstreamConfig {
    u.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
    u
}

/// A node with an OpenAI upstream `oai` (route `m`) and a native Anthropic
/// one `nat` (route `claude`), both holding the provider key.
async fn node(oai: &Mock, nat: &Mock) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(keyed(upstream("oai", oai)));
            let mut native = keyed(upstream("nat", nat));
            native.kind = UpstreamKind::Anthropic;
            c.upstreams.push(native);
            c.routes.push(route_to("m", "oai", "gpt-x"));
            c.routes.push(route_to("claude", "nat", "claude-x"));
        },
        &ENV,
    )
    .await
}

async fn mocks() -> (Mock, Mock) {
    (
        Mock::start(&["--api-key", PROVIDER]).await,
        Mock::start(&["--api-key", PROVIDER]).await,
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn names(stats: &Value) -> Vec<String> {
    stats["last_header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn trace_context_and_user_agent_reach_the_upstream_and_credentials_do_not() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat).await;
    let hostile = [
        AUTH,
        ("traceparent", TRACEPARENT),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ("user-agent", "OpenAI/Python 1.40.0"),
        ("openai-beta", "assistants=v2"),
        ("x-api-key", CLIENT),
        ("api-key", CLIENT),
        ("cookie", "session=sk-client-0123456789"),
        ("proxy-authorization", "Basic c2stY2xpZW50"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-custom", "1"),
        ("openai-organization", "org-x"),
    ];
    let answer = node.chat(chat("m"), &hostile).await;
    // The mock holds the provider key: an answer proves it, not the
    // client's, was sent.
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let stats = oai.stats().await;
    assert_eq!(stats["last_traceparent"], TRACEPARENT);
    assert_eq!(
        stats["last_tracestate"],
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(
        stats["last_user_agent"],
        format!("{MERIDIAN_UA} OpenAI/Python 1.40.0")
    );
    assert_eq!(stats["last_openai_beta"], "assistants=v2");
    assert_eq!(stats["last_api_key_seen"], false);
    let seen = names(&stats);
    for name in &seen {
        assert!(
            SENT.contains(&name.as_str()),
            "{name} reached the upstream: {seen:?}"
        );
    }
    assert!(!seen.contains(&"x-api-key".to_owned()), "{seen:?}");

    // A native Anthropic target: the trace context and user agent too, the
    // key in x-api-key alone, no openai-beta.
    let answer = node
        .post(
            "/v1/messages",
            json!({"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            &hostile,
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let stats = nat.stats().await;
    assert_eq!(stats["last_traceparent"], TRACEPARENT);
    assert_eq!(
        stats["last_user_agent"],
        format!("{MERIDIAN_UA} OpenAI/Python 1.40.0")
    );
    assert_eq!(stats["last_openai_beta"], Value::Null);
    assert_eq!(stats["last_authorization_seen"], false);
    let seen = names(&stats);
    for name in &seen {
        assert!(
            SENT.contains(&name.as_str()) || name.starts_with("anthropic-"),
            "{name}: {seen:?}"
        );
    }
    // The provider's request id, by Anthropic's header, comes back.
    assert!(
        answer
            .header("x-upstream-request-id")
            .starts_with("req_mock_")
    );
}

#[tokio::test]
async fn hostile_trace_headers_and_user_agents_are_dropped_not_refused() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat).await;
    let long_state = format!("a={}", "x".repeat(600));
    let long_agent = "x".repeat(300);
    for (traceparent, tracestate, agent) in [
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "a=b",
            "caf\u{e9}",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "a=b",
            long_agent.as_str(),
        ),
        ("not a traceparent", "a=b", "\t"),
    ] {
        let answer = node
            .chat(
                chat("m"),
                &[
                    AUTH,
                    ("traceparent", traceparent),
                    ("tracestate", tracestate),
                    ("user-agent", agent),
                ],
            )
            .await;
        assert_eq!(answer.status, 200, "{traceparent}");
        let stats = oai.stats().await;
        assert_eq!(stats["last_traceparent"], Value::Null, "{traceparent}");
        assert_eq!(stats["last_tracestate"], Value::Null, "{traceparent}");
        assert_eq!(stats["last_user_agent"], MERIDIAN_UA, "{agent}");
    }
    // A valid traceparent passes while its oversized tracestate is dropped.
    let answer = node
        .chat(
            chat("m"),
            &[
                AUTH,
                ("traceparent", TRACEPARENT),
                ("tracestate", &long_state),
            ],
        )
        .await;
    assert_eq!(answer.status, 200);
    let stats = oai.stats().await;
    assert_eq!(stats["last_traceparent"], TRACEPARENT);
    assert_eq!(stats["last_tracestate"], Value::Null);
    assert_eq!(stats["last_user_agent"], MERIDIAN_UA);
}

#[tokio::test]
async fn a_bad_openai_beta_is_refused_naming_it() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat).await;
    let answer = node
        .chat(
            chat("m"),
            &[AUTH, ("openai-beta", "assistants=v2; evil=\"1\"")],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error()["param"], "openai-beta");
    assert_eq!(oai.requests().await, 0);
}

#[tokio::test]
async fn the_upstream_request_id_comes_back_unless_hostile() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat).await;
    let answer = node.chat(chat("m"), &[AUTH]).await;
    assert_eq!(answer.header("x-upstream-request-id"), "req_mock_0");
    let mut body = chat("m");
    body["stream"] = json!(true);
    let (status, headers, _) = node.stream("/v1/chat/completions", body, &[AUTH]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-upstream-request-id"], "req_mock_1");
    // The upstream's own 4xx, passed through, carries it too.
    let answer = node
        .chat(json!({"model": "m", "messages": "not a list"}), &[AUTH])
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("x-upstream-request-id"), "req_mock_2");

    for hostile in [
        "two words".to_owned(),
        "r".repeat(129),
        PROVIDER.to_owned(),
        "caf\u{e9}".to_owned(),
    ] {
        oai.behave(json!({"request_id": hostile})).await;
        let answer = node.chat(chat("m"), &[AUTH]).await;
        assert_eq!(answer.status, 200);
        assert!(
            answer.headers.get("x-upstream-request-id").is_none(),
            "{hostile}: {:?}",
            answer.headers
        );
        assert!(!format!("{:?}", answer.headers).contains(PROVIDER));
    }
    oai.behave(json!({"request_id": "chatcmpl-req-abc_123"}))
        .await;
    let answer = node.chat(chat("m"), &[AUTH]).await;
    assert_eq!(
        answer.header("x-upstream-request-id"),
        "chatcmpl-req-abc_123"
    );
}

#[tokio::test]
async fn client_query_strings_are_refused_naming_the_first_parameter() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat).await;
    let long = format!("/v1/chat/completions?{}=1", "q".repeat(10 * 1024));
    for (path, param) in [
        ("/v1/chat/completions?api-version=x&x=%0d%0a", "x"),
        ("/v1/chat/completions?api-version=%0d%0a", "api-version"),
        ("/v1/chat/completions?&&stream=true", "stream"),
        ("/v1/embeddings?model=m", "model"),
        (long.as_str(), &*"q".repeat(64)),
    ] {
        let answer = node.post(path, chat("m").to_string(), &[AUTH]).await;
        assert_eq!(answer.status, 400, "{path}");
        let error = answer.error();
        assert_eq!(error["param"], param, "{error}");
        assert_eq!(error["code"], "unsupported_parameter");
    }
    // Anthropic's clients get the refusal in their own shape.
    let answer = node
        .post(
            "/v1/messages?betas=true",
            json!({"model": "claude", "max_tokens": 16, "messages": []}).to_string(),
            &[("x-api-key", CLIENT)],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["type"], "error");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`betas`")
    );
    // The markers SDKs add are accepted and not passed on: the anthropic
    // SDK's `beta=true`, the AzureOpenAI SDK's `api-version`.
    let answer = node
        .post(
            "/v1/chat/completions?api-version=2024-10-21",
            chat("m").to_string(),
            &[AUTH],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // An empty query is no query.
    let answer = node
        .post("/v1/chat/completions?", chat("m").to_string(), &[AUTH])
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(oai.requests().await, 2);
    assert_eq!(nat.requests().await, 0);
}
