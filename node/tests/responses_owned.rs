//! Stored Responses bound to the key that made them (`[responses]
//! secret_env`), over real sockets: `meridian` nodes with two client keys in
//! front of one `meridian-mock` upstream that stores what it makes. One key
//! cannot read, continue, cancel or delete another's response, by its id or
//! by a forged one; another node with the same secret serves the owner.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::config::{Config, key, route_to, upstream};
use support::{Mock, Node, send};

const ACME: &str = "sk-acme-0123456789abcdef0123456789";
const RIVAL: &str = "sk-rival-0123456789abcdef012345678";
const SECRET: &str = "cluster-response-secret-0123456789abcdef";
const SECRET_VAR: &str = "MERIDIAN_TEST_RESPONSE_SECRET";
const PREVIOUS_VAR: &str = "MERIDIAN_TEST_RESPONSE_SECRET_OLD";

/// A node with keys `acme` and `rival`, route `resp` on `mock` (upstream
/// `u`), and the response secret `secret` when one is given.
async fn node(mock: &Mock, secret: Option<&str>) -> Node {
    rotating(mock, secret, None).await
}

/// The same, still taking the ids of the `previous` secret.
async fn rotating(mock: &Mock, secret: Option<&str>, previous: Option<&str>) -> Node {
    let mut env = vec![("ACME_KEY", ACME), ("RIVAL_KEY", RIVAL)];
    if let Some(secret) = secret {
        env.push((SECRET_VAR, secret));
    }
    if let Some(previous) = previous {
        env.push((PREVIOUS_VAR, previous));
    }
    Node::start_with(
        |c: &mut Config| {
            let mut u = upstream("u", mock);
            u.responses = true;
            c.upstreams = vec![u];
            c.routes = vec![route_to("resp", "u", "gpt-r")];
            c.keys = vec![key("acme", "ACME_KEY"), key("rival", "RIVAL_KEY")];
            if secret.is_some() {
                c.responses.secret_env = Some(SECRET_VAR.to_owned());
            }
            if previous.is_some() {
                c.responses.previous_secret_env = Some(PREVIOUS_VAR.to_owned());
            }
        },
        &env,
    )
    .await
}

async fn call(
    node: &Node,
    api_key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {api_key}");
    let (status, _, body) = send(
        method,
        &format!("http://{}{path}", node.api),
        &[("authorization", &bearer)],
        body.map(|b| b.to_string()),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A new stored response made by `api_key`; its id as handed out.
async fn create(node: &Node, api_key: &str) -> String {
    let (status, made) = call(
        node,
        api_key,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "resp", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

/// The calls a key may make on a stored response, by id.
fn calls_on(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/v1/responses/{id}"), None),
        (
            Method::GET,
            format!("/v1/responses/{id}/input_items?limit=5"),
            None,
        ),
        (Method::POST, format!("/v1/responses/{id}/cancel"), None),
        (Method::DELETE, format!("/v1/responses/{id}"), None),
        (
            Method::POST,
            "/v1/responses".to_owned(),
            Some(json!({"model": "resp", "input": "more", "previous_response_id": id})),
        ),
    ]
}

#[tokio::test]
async fn a_key_reaches_only_the_responses_it_made() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, Some(SECRET)).await;

    let id = create(&node, ACME).await;
    let parts: Vec<&str> = id.split('~').collect();
    assert_eq!(parts.len(), 3, "a bound id is upstream~mac~own: {id}");
    let (holder, mac, own) = (parts[0], parts[1], parts[2]);
    assert_eq!(holder, "u");
    assert!(own.starts_with("resp_"), "{id}");

    // The owner reaches it; the id it gets back is the one it holds.
    let (status, got) = call(
        &node,
        ACME,
        Method::GET,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], id.as_str());
    let (status, next) = call(
        &node,
        ACME,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "resp", "input": "more", "previous_response_id": id})),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["previous_response_id"], id.as_str());

    // Another key: by the id itself, by the id without its binding, by the
    // other key's own MAC moved onto it, and by a flipped MAC. Nothing of
    // it reaches the upstream.
    let rivals = create(&node, RIVAL).await;
    let rival_mac = rivals.split('~').nth(1).unwrap();
    let mut flipped = mac.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forged = [
        id.clone(),
        format!("{holder}~{own}"),
        format!("{holder}~{rival_mac}~{own}"),
        format!("{holder}~{flipped}~{own}"),
        format!("{holder}%7E{mac}%7E{own}"),
    ];
    let before = mock.requests().await;
    for candidate in &forged {
        for (method, path, body) in calls_on(candidate) {
            let (status, refused) = call(&node, RIVAL, method.clone(), &path, body).await;
            assert_eq!(status, 400, "{method} {path}: {refused}");
            let param = refused["error"]["param"].as_str().unwrap_or_default();
            assert!(
                param == "response_id" || param == "previous_response_id",
                "{method} {path}: {refused}"
            );
        }
    }
    assert_eq!(
        mock.requests().await,
        before,
        "a call on another key's response reached the upstream"
    );
    // Forged for the owner too: only the id it was handed works.
    for candidate in &forged[1..4] {
        let (status, refused) = call(
            &node,
            ACME,
            Method::GET,
            &format!("/v1/responses/{candidate}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{candidate}: {refused}");
    }

    // A streamed response's ids are bound too.
    let (status, _, frames) = node
        .stream(
            "/v1/responses",
            json!({"model": "resp", "input": "hi", "stream": true}),
            &[("authorization", &format!("Bearer {ACME}"))],
        )
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(frames.concat()).unwrap();
    let streamed = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|e| e["response"]["id"].as_str().map(str::to_owned))
        .expect("a lifecycle event with the response");
    assert_eq!(streamed.split('~').count(), 3, "{streamed}");
    let path = format!("/v1/responses/{streamed}");
    assert_eq!(call(&node, ACME, Method::GET, &path, None).await.0, 200);
    assert_eq!(call(&node, RIVAL, Method::GET, &path, None).await.0, 400);

    // The owner deletes it; the deletion's id is the one it holds.
    let (status, deleted) = call(
        &node,
        ACME,
        Method::DELETE,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["id"], id.as_str());
}

#[tokio::test]
async fn every_node_with_the_secret_serves_the_owner_and_no_other_node_does() {
    let mock = Mock::start(&[]).await;
    let (a, b) = (
        node(&mock, Some(SECRET)).await,
        node(&mock, Some(SECRET)).await,
    );
    let id = create(&a, ACME).await;
    let path = format!("/v1/responses/{id}");
    let (status, got) = call(&b, ACME, Method::GET, &path, None).await;
    assert_eq!(status, 200, "another node with the secret: {got}");
    assert_eq!(got["id"], id.as_str());
    assert_eq!(call(&b, RIVAL, Method::GET, &path, None).await.0, 400);

    // Another secret: the id binds nobody there.
    let other = node(&mock, Some("another-cluster-secret-0123456789abcdef")).await;
    let (status, refused) = call(&other, ACME, Method::GET, &path, None).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not handed out to this key"),
        "{refused}"
    );

    // No secret: a bound id is refused, saying why; an unbound one made
    // there is not taken by a node with the secret.
    let open = node(&mock, None).await;
    let (status, refused) = call(&open, ACME, Method::GET, &path, None).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("secret_env"),
        "{refused}"
    );
    let unbound = create(&open, ACME).await;
    assert_eq!(unbound.split('~').count(), 2, "{unbound}");
    let (status, _) = call(
        &open,
        RIVAL,
        Method::GET,
        &format!("/v1/responses/{unbound}"),
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "without the secret any key may read an id it knows"
    );
    let (status, refused) = call(
        &a,
        ACME,
        Method::GET,
        &format!("/v1/responses/{unbound}"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(!a.log().contains(SECRET), "the secret was logged");
}

/// A cluster rotating its secret: a node with the next secret and the last
/// one as previous serves the ids made before (to their key only), and
/// makes new ones with the next secret, which a node that has dropped the
/// previous one still takes.
#[tokio::test]
async fn a_rotation_keeps_the_ids_made_before_it() {
    const NEXT: &str = "the-next-cluster-secret-0123456789abcdef";
    let mock = Mock::start(&[]).await;
    let before = node(&mock, Some(SECRET)).await;
    let old = create(&before, ACME).await;
    let path = format!("/v1/responses/{old}");

    let during = rotating(&mock, Some(NEXT), Some(SECRET)).await;
    let (status, got) = call(&during, ACME, Method::GET, &path, None).await;
    assert_eq!(status, 200, "an id of the previous secret: {got}");
    assert_eq!(call(&during, RIVAL, Method::GET, &path, None).await.0, 400);
    let new = create(&during, ACME).await;

    let after = node(&mock, Some(NEXT)).await;
    let new_path = format!("/v1/responses/{new}");
    assert_eq!(
        call(&after, ACME, Method::GET, &new_path, None).await.0,
        200
    );
    assert_eq!(call(&after, ACME, Method::GET, &path, None).await.0, 400);
}
