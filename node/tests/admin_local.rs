//! A token-less admin API (loopback only) against a web page the operator
//! opens, over a real `meridian` process: a request that names another
//! host in `Host` (DNS rebinding) or comes from another site's page
//! (`Origin`) is refused 403 and proposes nothing; local tools (the CLI,
//! curl, the dashboard on its own origin) are answered as before. The same
//! holds for the data plane of a node without client keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::config::{Config, route_to, upstream};
use support::{Mock, Node, chat_body, send};

async fn call(
    node: &Node,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = send(
        method,
        &format!("http://{}{path}", node.admin),
        headers,
        body.map(|b| b.to_string()),
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn without_a_token_pages_of_other_sites_are_refused_and_propose_nothing() {
    let mock = Mock::start(&[]).await;
    let node = Node::start_with(
        |c: &mut Config| {
            c.upstreams = vec![upstream("u", &mock)];
            c.routes = vec![route_to("r", "u", "m")];
        },
        &[],
    )
    .await;
    let route = json!({"tiers": [[{"upstream": "u", "model": "m2"}]]});
    let own = format!("http://{}", node.admin);
    for (headers, named) in [
        (vec![("host", "rebound.evil.example:80")], "Host"),
        (vec![("origin", "http://evil.example")], "Origin"),
        (vec![("origin", "null")], "Origin"),
        (
            vec![
                ("host", "127.0.0.1"),
                ("origin", "https://127.0.0.1.evil.example"),
            ],
            "Origin",
        ),
    ] {
        let (status, answer) = call(
            &node,
            Method::PUT,
            "/admin/v1/routes/stolen",
            &headers,
            Some(route.clone()),
        )
        .await;
        assert_eq!(status, 403, "{headers:?}: {answer}");
        assert_eq!(answer["error"]["code"], "not_local", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{headers:?}: {message}");
        // A read is refused as well: a rebound page could read it.
        let (status, _) = call(&node, Method::GET, "/admin/v1/routes/r", &headers, None).await;
        assert_eq!(status, 403, "{headers:?}");
        let (status, _) = call(&node, Method::DELETE, "/admin/v1/routes/r", &headers, None).await;
        assert_eq!(status, 403, "{headers:?}");
    }
    // Nothing was proposed: `stolen` does not exist and `r` still does.
    let (status, _) = call(&node, Method::GET, "/admin/v1/routes/stolen", &[], None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&node, Method::GET, "/admin/v1/routes/r", &[], None).await;
    assert_eq!(status, 200);

    // Local tools: no Origin (the CLI, curl) or the dashboard's own.
    let (status, answer) = call(
        &node,
        Method::PUT,
        "/admin/v1/routes/mine",
        &[("origin", &own)],
        Some(route.clone()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = call(&node, Method::GET, "/admin/v1/routes/mine", &[], None).await;
    assert_eq!(status, 200);
    // The unauthenticated probes are not the API's: still answered.
    let (status, _, _) = send(
        Method::GET,
        &format!("http://{}/healthz", node.admin),
        &[("host", "evil.example")],
        None,
    )
    .await;
    assert_eq!(status, 200);

    // The data plane of a node with no client keys: the same rule, and
    // nothing reaches the upstream.
    let before = mock.requests().await;
    for (name, value) in [("origin", "http://evil.example"), ("host", "evil.example")] {
        let answer = node.chat(chat_body("r"), &[(name, value)]).await;
        assert_eq!(answer.status, 401, "{name}");
        assert_eq!(answer.json()["error"]["code"], "invalid_api_key");
    }
    assert_eq!(mock.requests().await, before);
    assert_eq!(node.chat(chat_body("r"), &[]).await.status, 200);
}
