//! Provider-addressed models over real sockets: a `meridian` node in front
//! of `meridian-mock` upstreams, one OpenAI-compatible with no catalogue
//! (any model), one native Anthropic with declared models, reached as
//! `{upstream}/{model}` (or an alias's prefix) with no route, through both
//! APIs; routes winning over addressed names; the 404s and 400s of names
//! that reach nothing; and `/v1/models` with `/v1/models/{id}`. The mocks'
//! own records show the provider's model name each request arrived with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use proto::config::{UpstreamConfig, UpstreamKind};
use serde_json::json;
use support::config::{Config, key, route_to, upstream};
use support::{Answer, Mock, Node, chat_body};

const CLIENT: &str = "sk-client-0123456789";
const BEARER: (&str, &str) = ("authorization", "Bearer sk-client-0123456789");

/// Upstream `oai` (alias `openai`, no catalogue: any model) on `oai`,
/// native Anthropic `nat` declaring `claude-x` and `claude-y` on `nat`,
/// and a route literally named `oai/gpt-literal` that goes to `nat`.
async fn node(oai: &Mock, nat: &Mock) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            let mut o = upstream("oai", oai);
            o.aliases = vec!["openai".to_owned()];
            c.upstreams.push(o);
            let mut n: UpstreamConfig = upstream("nat", nat);
            n.kind = UpstreamKind::Anthropic;
            n.models = vec!["claude-x".to_owned(), "claude-y".to_owned()];
            c.upstreams.push(n);
            c.routes
                .push(route_to("oai/gpt-literal", "nat", "claude-x"));
            c.routes.push(route_to("fast", "oai", "gpt-fast"));
        },
        &[("TEST_CLIENT_KEY", CLIENT)],
    )
    .await
}

async fn chat(node: &Node, model: &str) -> Answer {
    node.chat(chat_body(model), &[BEARER]).await
}

async fn messages(node: &Node, model: &str) -> Answer {
    let body = json!({
        "model": model,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Say hi"}],
    });
    node.post("/v1/messages", body.to_string(), &[("x-api-key", CLIENT)])
        .await
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

#[tokio::test]
async fn addressed_models_reach_their_upstream_by_id_and_alias() {
    let (oai, nat) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = node(&oai, &nat).await;

    // No route: the upstream `oai` with its own model name.
    let a = chat(&node, "oai/gpt-4o").await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.header("x-meridian-upstream"), "oai");
    assert_eq!(a.header("x-meridian-attempts"), "1");
    assert_eq!(a.json()["model"], "gpt-4o");
    // An alias's prefix; the model keeps every slash after the first.
    let a = chat(&node, "openai/ft:gpt-4o:org/x").await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.header("x-meridian-upstream"), "oai");
    let stats = oai.stats().await;
    assert_eq!(stats["by_model"]["gpt-4o"], 1, "{stats}");
    assert_eq!(stats["by_model"]["ft:gpt-4o:org/x"], 1, "{stats}");

    // A route of that very name wins over the address.
    let a = chat(&node, "oai/gpt-literal").await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.header("x-meridian-upstream"), "nat");
    assert_eq!(nat.stats().await["by_model"]["claude-x"], 1);
    assert!(oai.stats().await["by_model"]["gpt-literal"].is_null());

    // The Messages API looks names up the same way: natively, and
    // translated to an OpenAI upstream.
    let a = messages(&node, "nat/claude-y").await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.json()["type"], "message");
    assert_eq!(nat.stats().await["by_model"]["claude-y"], 1);
    let a = messages(&node, "openai/gpt-4o-mini").await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.json()["type"], "message");
    assert_eq!(oai.stats().await["by_model"]["gpt-4o-mini"], 1);
    // And an OpenAI client reaches the Anthropic upstream, translated.
    let a = chat(&node, "nat/claude-x").await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.json()["object"], "chat.completion");

    // Addressed traffic is counted under one label per upstream.
    let metrics = node.admin_get("/metrics", &[]).await;
    let metrics = text(&metrics);
    assert!(
        metrics.contains(r#"meridian_requests_total{route="oai/*",upstream="oai",status="200"} 3"#),
        "{metrics}"
    );
    assert!(!metrics.contains("gpt-4o"), "no label per model: {metrics}");
}

#[tokio::test]
async fn names_that_reach_nothing_are_clear_4xx() {
    let (oai, nat) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = node(&oai, &nat).await;

    // Outside a declared catalogue: how many it has and how to list them.
    let a = chat(&node, "nat/claude-z").await;
    assert_eq!(a.status, 404, "{}", text(&a));
    let e = a.error();
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("2 models") && message.contains("GET /v1/models"),
        "{message}"
    );
    let a = messages(&node, "nat/claude-z").await;
    assert_eq!(a.status, 404, "{}", text(&a));
    assert_eq!(a.json()["error"]["type"], "not_found_error");
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 models")
    );

    // An unknown prefix: the usual 404.
    let a = chat(&node, "deepseek/deepseek-chat").await;
    assert_eq!(a.status, 404, "{}", text(&a));
    assert_eq!(a.error()["code"], "model_not_found");

    // Hostile names: a 400 naming `model` or a 404, never a 5xx or a
    // request reaching an upstream.
    let long = "x".repeat(10_000);
    let long_addressed = format!("oai/{long}");
    for (model, status) in [
        ("oai/", 400),
        ("openai/", 400),
        ("oai/a\u{0}b", 400),
        ("oai/\u{7f}", 400),
        ("oai/two words", 400),
        (long_addressed.as_str(), 400),
        ("/", 404),
        ("/oai", 404),
        ("..", 404),
        ("../oai/x", 404),
        ("a/", 404),
        ("/b", 404),
        ("\u{1}/x", 404),
        ("модель/x", 404),
        (long.as_str(), 404),
    ] {
        let a = chat(&node, model).await;
        assert_eq!(a.status.as_u16(), status, "{model:?}: {}", text(&a));
        let e = a.error();
        assert_eq!(e["param"], "model", "{model:?}: {e}");
        let a = messages(&node, model).await;
        assert_eq!(a.status.as_u16(), status, "{model:?}: {}", text(&a));
    }
    assert_eq!(oai.requests().await, 0);
    assert_eq!(nat.requests().await, 0);
    // Still serving.
    assert_eq!(chat(&node, "oai/m").await.status, 200);
}

#[tokio::test]
async fn models_are_listed_and_retrieved() {
    let (oai, nat) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = node(&oai, &nat).await;

    let list = node.get("/v1/models", &[BEARER]).await;
    assert_eq!(list.status, 200, "{}", text(&list));
    let v = list.json();
    let entries: Vec<(&str, &str)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [
            ("fast", "meridian"),
            ("nat/claude-x", "nat"),
            ("nat/claude-y", "nat"),
            ("oai/gpt-literal", "meridian"),
        ],
        "routes, then the declared catalogue; `oai` declares none"
    );

    // models.retrieve, the id's slash as written or escaped.
    for path in ["/v1/models/nat/claude-x", "/v1/models/nat%2Fclaude-x"] {
        let a = node.get(path, &[BEARER]).await;
        assert_eq!(a.status, 200, "{path}: {}", text(&a));
        assert_eq!(
            a.json(),
            json!({"id": "nat/claude-x", "object": "model", "created": 0, "owned_by": "nat"})
        );
    }
    let a = node.get("/v1/models/fast", &[BEARER]).await;
    assert_eq!(a.json()["owned_by"], "meridian");
    // An upstream without a catalogue takes any model, so it has each.
    let a = node.get("/v1/models/openai/gpt-4o", &[BEARER]).await;
    assert_eq!(a.status, 200, "{}", text(&a));
    assert_eq!(a.json()["owned_by"], "oai");
    for path in [
        "/v1/models/nat/claude-z",
        "/v1/models/nope",
        "/v1/models/oai%2F",
        "/v1/models/oai/%00",
    ] {
        let a = node.get(path, &[BEARER]).await;
        assert_eq!(a.status, 404, "{path}: {}", text(&a));
        assert_eq!(a.error()["code"], "model_not_found", "{path}");
    }
    let a = node.get("/v1/models/nat/claude-x", &[]).await;
    assert_eq!(a.status, 401, "{}", text(&a));
    let a = node
        .post("/v1/models/nat/claude-x", String::new(), &[BEARER])
        .await;
    assert_eq!(a.status, 405, "{}", text(&a));
    assert_eq!(a.header("allow"), "GET");
}
