//! The admin API on a real node: upstreams, routes and client keys changed
//! at run time, each change validated (a 4xx naming the field, nothing
//! proposed) and visible to the data plane once acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::config::{Config, route_to, upstream};
use support::{Mock, Node, chat_body, send};

async fn admin(
    node: &Node,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = send(
        method,
        &format!("http://{}{path}", node.admin),
        &[],
        body.map(|b| b.to_string()),
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn applied_index(node: &Node) -> u64 {
    admin(node, Method::GET, "/admin/v1/cluster", None).await.1["applied_index"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn config_changes_apply_at_once_and_bad_ones_change_nothing() {
    let (a, b) = (Mock::start(&[]).await, Mock::start(&[]).await);
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &a));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[],
    )
    .await;

    // The seed is the cluster's state.
    let (status, routes) = admin(&node, Method::GET, "/admin/v1/routes", None).await;
    assert_eq!(status, 200);
    assert_eq!(routes[0]["model"], "m");

    // A new upstream and a route to it serve as soon as they are acknowledged.
    let (status, body) = admin(
        &node,
        Method::PUT,
        "/admin/v1/upstreams/b",
        Some(json!({"base_url": b.base_url()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], true);
    let route = json!({"tiers": [[{"upstream": "b", "model": "b-model"}], [{"upstream": "a", "model": "x"}]]});
    let (status, _) = admin(
        &node,
        Method::PUT,
        "/admin/v1/routes/new",
        Some(route.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let answer = node.chat(chat_body("new"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["model"], "b-model");
    // The same write again changes nothing.
    assert_eq!(
        admin(&node, Method::PUT, "/admin/v1/routes/new", Some(route))
            .await
            .1["changed"],
        false
    );

    // Invalid changes: 400 naming the field, and no log entry proposed.
    let before = applied_index(&node).await;
    let cases = [
        (
            "/admin/v1/routes/bad",
            json!({"tiers": [[{"upstream": "nope", "model": "x"}]]}),
            "route.tiers[0][0].upstream",
        ),
        (
            "/admin/v1/routes/bad",
            json!({"tiers": [[{"upstream": "a", "model": "x", "input_per_mtok": -1}]]}),
            "route.tiers[0][0].input_per_mtok",
        ),
        (
            "/admin/v1/routes/bad",
            json!({"tiers": [], "surprise": 1}),
            "surprise",
        ),
        (
            "/admin/v1/routes/bad",
            json!({"model": "other", "tiers": []}),
            "model",
        ),
        (
            "/admin/v1/upstreams/c",
            json!({"base_url": "ftp://x"}),
            "upstream.base_url",
        ),
        ("/admin/v1/upstreams/c", json!({}), "base_url"),
    ];
    for (path, body, field) in cases {
        let (status, answer) = admin(&node, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["param"], field, "{answer}");
    }
    let (status, answer) = admin(&node, Method::DELETE, "/admin/v1/upstreams/b", None).await;
    assert_eq!(status, 400, "an upstream in use cannot go: {answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("new"));
    let (status, _, _) = send(
        Method::PUT,
        &format!("http://{}/admin/v1/routes/x", node.admin),
        &[],
        Some("{not json".into()),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(applied_index(&node).await, before, "nothing was proposed");

    // Deleting the route makes it unknown to clients.
    assert_eq!(
        admin(&node, Method::DELETE, "/admin/v1/routes/new", None)
            .await
            .0,
        200
    );
    assert_eq!(node.chat(chat_body("new"), &[]).await.status, 404);
    assert_eq!(
        admin(&node, Method::GET, "/admin/v1/routes/new", None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn client_keys_are_hashed_on_arrival_and_never_shown() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams.push(upstream("a", &mock));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[],
    )
    .await;
    // No keys: open (on loopback).
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 200);

    let (status, _) = admin(
        &node,
        Method::PUT,
        "/admin/v1/keys/team-a",
        Some(json!({"key": "sk-team-a-secret"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        node.chat(chat_body("m"), &[]).await.status,
        401,
        "a configured key closes the door"
    );
    let with_key = [("authorization", "Bearer sk-team-a-secret")];
    assert_eq!(node.chat(chat_body("m"), &with_key).await.status, 200);

    let (_, keys) = admin(&node, Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(keys, json!([{"name": "team-a"}]));
    assert!(
        !node.log().contains("sk-team-a-secret"),
        "the key reached the log"
    );
    let (status, answer) = admin(
        &node,
        Method::PUT,
        "/admin/v1/keys/short",
        Some(json!({"key": "abc"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["param"], "key");

    // The last key stays: deleting it would open the door again.
    let (status, answer) = admin(&node, Method::DELETE, "/admin/v1/keys/team-a", None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "last_key");
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 401);
    assert_eq!(node.chat(chat_body("m"), &with_key).await.status, 200);
}

#[tokio::test]
async fn cluster_view_of_a_single_node() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(|c: &mut Config| c.upstreams.push(upstream("a", &mock)), &[]).await;
    // The node announces its region and admin address through the log right
    // after the seed, so they appear shortly after the ready line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (status, view) = loop {
        let (status, view) = admin(&node, Method::GET, "/admin/v1/cluster", None).await;
        if !view["members"][0]["region"].is_null() || std::time::Instant::now() > deadline {
            break (status, view);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(status, 200);
    assert_eq!(view["role"], "leader");
    assert_eq!(view["leader"], 1);
    assert_eq!(view["members"][0]["region"], "test-region");
    assert_eq!(view["members"][0]["admin_addr"], node.admin.as_str());
    assert!(view["term"].as_u64().unwrap() >= 1);
}

/// Hostile or careless admin requests each get the 4xx they always got,
/// as the typed error envelope; the answers parse as their wire types.
#[tokio::test]
async fn hostile_requests_get_their_4xx_and_answers_their_types() {
    use proto::api::admin::{ClusterView, Events, HealthAnswer, Readiness, WriteAck};
    use proto::api::openai::ErrorEnvelope;

    let mock = Mock::start(&[]).await;
    let node = Node::start_with(|c: &mut Config| c.upstreams.push(upstream("a", &mock)), &[]).await;
    let raw = |method: Method, path: &str, body: &str| {
        let url = format!("http://{}{path}", node.admin);
        let body = body.to_owned();
        async move { send(method, &url, &[], Some(body)).await }
    };
    // Method, path, body; the status, code and param the node answered
    // before the admin API had an error type.
    type Case = (
        Method,
        &'static str,
        &'static str,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            Method::PUT,
            "/admin/v1/routes/x",
            "{not json",
            400,
            "invalid_config",
            None,
        ),
        (
            Method::PUT,
            "/admin/v1/routes/x",
            "[1, 2]",
            400,
            "invalid_config",
            None,
        ),
        (
            Method::PUT,
            "/admin/v1/routes/x",
            "\"tiers\"",
            400,
            "invalid_config",
            None,
        ),
        (
            Method::PUT,
            "/admin/v1/upstreams/a",
            "{\"id\": \"b\"}",
            400,
            "invalid_config",
            Some("id"),
        ),
        (
            Method::PUT,
            "/admin/v1/keys/k",
            "{\"key\": \"k\", \"sha256\": \"00\"}",
            400,
            "invalid_config",
            Some("key"),
        ),
        (
            Method::PUT,
            "/admin/v1/keys/k",
            "{\"key\": \"short\"}",
            400,
            "invalid_config",
            Some("key"),
        ),
        (
            Method::PUT,
            "/admin/v1/keys/k",
            "{\"kee\": \"x\"}",
            400,
            "invalid_config",
            Some("kee"),
        ),
        (
            Method::POST,
            "/admin/v1/members",
            "{\"id\": 0, \"raft_addr\": \"127.0.0.1:1\"}",
            400,
            "invalid_config",
            Some("id"),
        ),
        (
            Method::POST,
            "/admin/v1/members",
            "{\"id\": 5, \"raft_addr\": \"nowhere\"}",
            400,
            "invalid_config",
            Some("raft_addr"),
        ),
        (
            Method::POST,
            "/admin/v1/members",
            "{\"id\": 5, \"raft_addr\": \"127.0.0.1:1\", \"vote\": true}",
            400,
            "invalid_config",
            Some("vote"),
        ),
        (
            Method::POST,
            "/admin/v1/members",
            "{\"id\": -1}",
            400,
            "invalid_config",
            None,
        ),
        (
            Method::DELETE,
            "/admin/v1/members/9",
            "",
            404,
            "not_found",
            Some("id"),
        ),
        (
            Method::DELETE,
            "/admin/v1/members/1",
            "",
            409,
            "last_voter",
            Some("id"),
        ),
        (
            Method::DELETE,
            "/admin/v1/routes/nope",
            "",
            404,
            "not_found",
            None,
        ),
        (
            Method::GET,
            "/admin/v1/upstreams/nope",
            "",
            404,
            "not_found",
            None,
        ),
        (
            Method::GET,
            "/admin/v1/keys/nope",
            "",
            404,
            "not_found",
            None,
        ),
    ];
    for (method, path, body, status, code, param) in cases {
        let shown = format!("{method} {path} {}", &body[..body.len().min(60)]);
        let (got, headers, bytes) = raw(method, path, body).await;
        assert_eq!(
            got.as_u16(),
            status,
            "{shown}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(headers["content-type"], "application/json", "{shown}");
        let e: ErrorEnvelope<'static> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e.error.kind, "invalid_request_error", "{shown}");
        assert_eq!(e.error.code.as_deref(), Some(code), "{shown}");
        if param.is_some() {
            assert_eq!(e.error.param.as_deref(), param, "{shown}");
        }
    }

    let get = |path: &'static str| {
        let url = format!("http://{}{path}", node.admin);
        async move {
            let (status, _, bytes) = send(Method::GET, &url, &[], None).await;
            assert_eq!(status, 200, "{path}");
            bytes
        }
    };
    let view: ClusterView = serde_json::from_slice(&get("/admin/v1/cluster").await).unwrap();
    assert_eq!((view.id, view.leader), (1, Some(1)));
    let health: HealthAnswer = serde_json::from_slice(&get("/admin/v1/health").await).unwrap();
    assert_eq!(health.upstreams[0].id, "a");
    let events: Events = serde_json::from_slice(&get("/admin/v1/events").await).unwrap();
    assert!(events.failovers.is_empty());
    // No route yet, but upstream `a` answers addressed names (`a/…`):
    // ready, and it says so in the same shape.
    let (status, _, bytes) = send(
        Method::GET,
        &format!("http://{}/readyz", node.admin),
        &[],
        None,
    )
    .await;
    let ready: Readiness = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200);
    assert!(ready.ready && ready.config_applied && ready.routes == 0);
    let (status, _, bytes) = raw(
        Method::PUT,
        "/admin/v1/routes/typed",
        r#"{"tiers": [[{"upstream": "a", "model": "x"}]]}"#,
    )
    .await;
    assert_eq!(status, 200);
    let ack: WriteAck = serde_json::from_slice(&bytes).unwrap();
    assert!(ack.changed && ack.applied_index.is_some());
}
