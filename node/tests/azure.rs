//! Azure OpenAI as an upstream kind, over real sockets: a `meridian` node
//! in front of a `meridian-mock` called in Azure's path shape
//! (`/openai/deployments/{d}/…?api-version=…`, the key in `api-key`) and
//! another called as OpenAI, in one route: each answers, plain and
//! streamed, embeddings and a translated Messages call included, and a
//! failing one fails over to the other both ways.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use proto::config::{UpstreamConfig, UpstreamKind};
use serde_json::{Value, json};
use support::config::{Config, key, route, route_to, target, tiers, upstream};
use support::{Mock, Node};

const CLIENT: &str = "sk-client-0123456789";
const PROVIDER: &str = "sk-provider-azure-0123";
const ENV: [(&str, &str); 2] = [("TEST_CLIENT_KEY", CLIENT), ("TEST_PROVIDER_KEY", PROVIDER)];
const AUTH: (&str, &str) = ("authorization", "Bearer sk-client-0123456789");
const API_VERSION: &str = "2024-10-21";

/// `mock` as an Azure OpenAI resource: its base URL is the resource's
/// (no `/v1`), the key goes in `api-key`.
fn azure(id: &str, mock: &Mock) -> UpstreamConfig {
    let mut u = upstream(id, mock);
    u.base_url = format!("http://{}", mock.api);
    u.kind = UpstreamKind::Azure;
    u.api_version = Some(API_VERSION.to_owned());
    u.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
    u
}

/// `mock` as an OpenAI-compatible upstream holding the same key.
fn openai(id: &str, mock: &Mock) -> UpstreamConfig {
    let mut u = upstream(id, mock);
    u.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
    u
}

async fn mocks() -> (Mock, Mock) {
    (
        Mock::start(&["--api-key", PROVIDER]).await,
        Mock::start(&["--api-key", PROVIDER]).await,
    )
}

/// A node with the Azure upstream `az` and the OpenAI one `oai`, and the
/// routes `more` adds.
async fn node(az: &Mock, oai: &Mock, more: impl FnOnce(&mut Config)) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(azure("az", az));
            c.upstreams.push(openai("oai", oai));
            more(c);
        },
        &ENV,
    )
    .await
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn streamed(model: &str) -> Value {
    json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}],
    })
}

fn text(frames: &[bytes::Bytes]) -> String {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[tokio::test]
async fn an_azure_deployment_answers_chat_embeddings_and_messages() {
    let (az, oai) = mocks().await;
    let node = node(&az, &oai, |c| {
        c.routes.push(route_to("az-chat", "az", "gpt-4o-eu"));
        c.routes.push(route_to("az-embed", "az", "embed/small v3"));
    })
    .await;

    let answer = node.chat(chat("az-chat"), &[AUTH]).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    // The mock answers as the deployment, as Azure does.
    assert_eq!(answer.json()["model"], "gpt-4o-eu");
    assert_eq!(answer.header("x-meridian-upstream"), "az");
    assert!(
        answer
            .header("x-upstream-request-id")
            .starts_with("req_mock_"),
        "Azure's apim-request-id is given back"
    );
    let stats = az.stats().await;
    assert_eq!(stats["azure_requests"], 1, "{stats}");
    assert_eq!(stats["last_azure_deployment"], "gpt-4o-eu");
    assert_eq!(stats["last_api_version"], API_VERSION);
    assert_eq!(stats["last_api_key_seen"], true);
    assert_eq!(stats["last_authorization_seen"], false, "{stats}");

    let (status, headers, frames) = node
        .stream("/v1/chat/completions", streamed("az-chat"), &[AUTH])
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-upstream"], "az");
    let body = text(&frames);
    assert!(body.contains("\"gpt-4o-eu\""), "{body}");
    assert!(body.contains("\"usage\""), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    // The deployment is one path segment, escaped.
    let answer = node
        .post(
            "/v1/embeddings",
            json!({"model": "az-embed", "input": "hello"}).to_string(),
            &[AUTH],
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["object"], "list");
    assert_eq!(answer.json()["model"], "embed/small v3");
    assert_eq!(az.stats().await["last_azure_deployment"], "embed/small v3");

    // A Messages client reaches the deployment through the translation.
    let answer = node
        .post(
            "/v1/messages",
            json!({"model": "az-chat", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            &[("x-api-key", CLIENT), ("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["type"], "message");
    let stats = az.stats().await;
    assert_eq!(stats["azure_requests"], 4, "{stats}");
    assert_eq!(stats["by_path"]["/v1/chat/completions"], 3, "{stats}");
    assert_eq!(stats["outcomes"]["ok"], 4, "{stats}");
    assert_eq!(oai.requests().await, 0);
}

#[tokio::test]
async fn a_client_api_version_is_replaced_by_the_configured_one() {
    let (az, oai) = mocks().await;
    let node = node(&az, &oai, |c| c.routes.push(route_to("az-chat", "az", "d"))).await;
    // What the AzureOpenAI SDKs send on every request: accepted, and the
    // deployment's own configured version goes upstream.
    let answer = node
        .post(
            "/v1/chat/completions?api-version=2099-01-01",
            chat("az-chat").to_string(),
            &[AUTH],
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(az.stats().await["last_api_version"], API_VERSION);
    // Anything beside it, or a value that is no version, is refused.
    for (path, param) in [
        ("/v1/chat/completions?api-version=2099-01-01&x=%0d%0a", "x"),
        ("/v1/chat/completions?api-version=%0d%0a", "api-version"),
    ] {
        let answer = node.post(path, chat("az-chat").to_string(), &[AUTH]).await;
        assert_eq!(answer.status, 400);
        let error = answer.error();
        assert_eq!(error["param"], param, "{error}");
        assert_eq!(error["code"], "unsupported_parameter");
    }
    assert_eq!(az.requests().await, 1, "nothing refused was sent");
}

/// A plain and a streamed request to `route`, each answered by the next
/// tier's `to` (its own `model`) after the first tier failed.
async fn falls_over(node: &Node, route: &str, to: &str, model: &str) {
    let answer = node.chat(chat(route), &[AUTH]).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("x-meridian-upstream"), to);
    assert_eq!(answer.header("x-meridian-fallback"), "true");
    assert_eq!(answer.header("x-meridian-attempts"), "2");
    assert_eq!(answer.json()["model"], model);
    let (status, headers, frames) = node
        .stream("/v1/chat/completions", streamed(route), &[AUTH])
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-upstream"], to);
    assert_eq!(headers["x-meridian-fallback"], "true");
    let text = text(&frames);
    assert!(text.contains(&format!("\"{model}\"")), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn azure_and_openai_fail_over_to_each_other_both_ways() {
    let (az, oai) = mocks().await;
    let node = node(&az, &oai, |c| {
        c.routes
            .push(tiers("az-first", &[("az", "dep-a"), ("oai", "gpt-b")]));
        c.routes
            .push(tiers("oai-first", &[("oai", "gpt-b"), ("az", "dep-a")]));
        c.routes.push(route(
            "one-tier",
            vec![vec![target("az", "dep-a"), target("oai", "gpt-b")]],
        ));
    })
    .await;

    // Azure failing: the OpenAI target answers, plain and streamed.
    az.behave(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    falls_over(&node, "az-first", "oai", "gpt-b").await;
    // In one tier, every answer is the healthy target's, after one
    // attempt or two (a retry within the tier is no fallback: that header
    // names a later tier).
    for _ in 0..4 {
        let answer = node.chat(chat("one-tier"), &[AUTH]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-meridian-upstream"), "oai");
        assert!(["1", "2"].contains(&answer.header("x-meridian-attempts")));
        assert_eq!(answer.header("x-meridian-fallback"), "false");
    }
    assert!(az.stats().await["outcomes"]["error"].as_u64().unwrap() >= 2);

    // OpenAI failing: the Azure deployment answers.
    az.behave(json!({"error_rate": 0.0})).await;
    oai.behave(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    falls_over(&node, "oai-first", "az", "dep-a").await;
    assert_eq!(az.stats().await["last_api_version"], API_VERSION);
}
