//! The Responses API over real sockets, with hostile ids and queries: a
//! `meridian` node in front of two `meridian-mock` upstreams that serve it
//! (each holds only the responses it made) and one that does not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::config::{Config, route, target, upstream};
use support::{Mock, Node, send};

async fn node(r1: &Mock, r2: &Mock, plain: &Mock) -> Node {
    Node::start_with(
        |c: &mut Config| {
            for (id, mock, serves) in [("r1", r1, true), ("r2", r2, true), ("plain", plain, false)]
            {
                let mut u = upstream(id, mock);
                u.responses = serves;
                c.upstreams.push(u);
            }
            c.routes.push(route(
                "resp",
                vec![vec![target("r1", "gpt-r"), target("r2", "gpt-r")]],
            ));
            // Priced, so its answers carry their cost.
            let mut priced = target("r1", "gpt-r");
            priced.input_per_mtok = 1.0;
            priced.output_per_mtok = 2.0;
            c.routes.push(route("only-r1", vec![vec![priced]]));
            c.routes
                .push(route("only-r2", vec![vec![target("r2", "gpt-r")]]));
            c.routes
                .push(route("plain", vec![vec![target("plain", "gpt-p")]]));
        },
        &[],
    )
    .await
}

async fn call(node: &Node, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, _, body) = send(
        method,
        &format!("http://{}{path}", node.api),
        &[],
        body.map(|b| b.to_string()),
    )
    .await;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn responses_are_tagged_pinned_and_reached_by_id_only_through_checked_parts() {
    let (r1, r2, plain) = (
        Mock::start(&[]).await,
        Mock::start(&[]).await,
        Mock::start(&[]).await,
    );
    let node = node(&r1, &r2, &plain).await;

    let (status, made) = call(
        &node,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "resp", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let (holder, own) = id.split_once('~').unwrap();
    assert!(own.starts_with("resp_"), "{id}");
    let holder = holder.to_owned();

    // A follow-up goes to the holder, with the holder's own id.
    let (status, next) = call(
        &node,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "resp", "input": "more", "previous_response_id": id})),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["previous_response_id"], id.as_str());
    // Through a route without the holder, it is refused naming the field.
    let elsewhere = if holder == "r2" { "only-r1" } else { "only-r2" };
    let (status, refused) = call(
        &node,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": elsewhere, "input": "more", "previous_response_id": id})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["param"], "previous_response_id",
        "{refused}"
    );

    // The calls on a stored response reach it by its tagged id.
    let (status, got) = call(&node, Method::GET, &format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], id.as_str());
    let (status, items) = call(
        &node,
        Method::GET,
        &format!("/v1/responses/{id}/input_items?limit=5&order=asc"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["object"], "list");

    // Hostile ids, paths and queries never reach an upstream.
    let before = r1.requests().await + r2.requests().await + plain.requests().await;
    for (method, path, expected) in [
        (Method::GET, "/v1/responses/resp_untagged".to_owned(), 400),
        (
            Method::GET,
            format!("/v1/responses/{holder}~..%2F..%2Fadmin"),
            400,
        ),
        (Method::GET, format!("/v1/responses/{holder}~a%00b"), 400),
        (Method::GET, "/v1/responses/nowhere~resp_1".to_owned(), 404),
        (Method::GET, "/v1/responses/plain~resp_1".to_owned(), 404),
        (
            Method::GET,
            format!("/v1/responses/{holder}~{}", "a".repeat(10_000)),
            400,
        ),
        (
            Method::GET,
            format!("/v1/responses/{id}/input_items?limit=1000"),
            400,
        ),
        (
            Method::GET,
            format!("/v1/responses/{id}/input_items?evil=1"),
            400,
        ),
        (Method::GET, format!("/v1/responses/{id}/secrets"), 404),
        (Method::PUT, format!("/v1/responses/{id}"), 405),
        (Method::POST, format!("/v1/responses/{id}?x=1"), 405),
    ] {
        let (status, body) = call(&node, method.clone(), &path, None).await;
        assert_eq!(
            status.as_u16(),
            expected,
            "{method} {}: {body}",
            &path[..path.len().min(80)]
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    for hostile in [
        json!(17),
        json!("resp_untagged"),
        json!(format!("{holder}~../x")),
    ] {
        let (status, body) = call(
            &node,
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "resp", "input": "x", "previous_response_id": hostile})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "previous_response_id");
    }
    let after = r1.requests().await + r2.requests().await + plain.requests().await;
    assert_eq!(after, before, "a refused call reached an upstream");

    // A route with no target that serves the API says so.
    let (status, body) = call(
        &node,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "plain", "input": "x"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "not_served");

    // A priced route's responses carry their cost: the header on a plain
    // one, `cost` in the completed event's `response.usage` on a stream.
    let answer = node
        .post(
            "/v1/responses",
            json!({"model": "only-r1", "input": "hi"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(answer.status, 200);
    let cost: f64 = answer.header("x-meridian-cost-usd").parse().unwrap();
    assert!(cost > 0.0, "{cost}");
    let (status, _, frames) = node
        .stream(
            "/v1/responses",
            json!({"model": "only-r1", "input": "hi", "stream": true}),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let completed = text
        .split("\n\n")
        .find(|e| e.contains("event: response.completed"))
        .unwrap_or_else(|| panic!("{text}"));
    let data: Value = serde_json::from_str(
        completed
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert!(
        data["response"]["usage"]["cost"].as_f64().unwrap() > 0.0,
        "{data}"
    );
    assert!(
        data["response"]["id"].as_str().unwrap().starts_with("r1~"),
        "{data}"
    );

    // Deleted: then unknown at its upstream, which says so.
    let (status, _) = call(&node, Method::DELETE, &format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&node, Method::GET, &format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, 404);
}
