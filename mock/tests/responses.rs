//! The OpenAI Responses API over real sockets against a mock from
//! `mock::spawn`: answers, streams, chained conversations, stored responses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Api;
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn ask(input: Value, previous: Option<&str>) -> Value {
    json!({"model": "gpt-test", "input": input, "instructions": "Be brief.",
           "previous_response_id": previous})
}

#[tokio::test]
async fn plain_response_has_the_sdk_shape() {
    let api = Api::start(None);
    let answer = api
        .post("/v1/responses", &ask(json!("Say hello."), None))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["object"], "response");
    assert!(body["created_at"].as_u64().unwrap() > 0);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["instructions"], "Be brief.");
    assert_eq!(body["previous_response_id"], Value::Null);
    assert_eq!(body["parallel_tool_calls"], true);
    assert_eq!(body["tools"], json!([]));
    assert_eq!(body["tool_choice"], "auto");
    let message = &body["output"][0];
    assert_eq!(message["type"], "message");
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["status"], "completed");
    assert_eq!(message["role"], "assistant");
    assert_eq!(
        message["content"],
        json!([{"type": "output_text", "text": "Hello from the Meridian mock provider, again",
                "annotations": []}])
    );
    // "Say hello." + "Be brief." = 19 characters: 5 tokens.
    assert_eq!(body["usage"]["input_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 8);
    assert_eq!(body["usage"]["total_tokens"], 13);

    let short = json!({"model": "m", "input": "hi", "max_output_tokens": 2});
    let body = api.post("/v1/responses", &short).await.json();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
}

#[tokio::test]
async fn a_conversation_chains_by_previous_response_id() {
    let api = Api::start(None);
    let first = api
        .post("/v1/responses", &ask(json!("One."), None))
        .await
        .json();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second = api
        .post("/v1/responses", &ask(json!("Two."), Some(&first_id)))
        .await
        .json();
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(second["previous_response_id"], first_id.as_str());
    let items = json!([{"type": "message", "role": "user", "content": "Three."}]);
    let third = api
        .post("/v1/responses", &ask(items, Some(&second_id)))
        .await;
    assert_eq!(third.status, StatusCode::OK);
    let third = third.json();
    assert_eq!(third["previous_response_id"], second_id.as_str());
    let ids = [&first_id, &second_id, third["id"].as_str().unwrap()];
    assert!(ids[0] != ids[1] && ids[1] != ids[2]);

    // Another mock (an upstream that did not make it) knows none of them.
    let other = Api::start(None);
    let answer = other
        .post("/v1/responses", &ask(json!("Two."), Some(&first_id)))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer.json(),
        json!({"error": {
            "message": format!("Previous response with id '{first_id}' not found."),
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }})
    );
    let unknown = api
        .post("/v1/responses", &ask(json!("x"), Some("resp_nope")))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(api.stats().await["outcomes"]["not_found"], 1);
}

#[tokio::test]
async fn stored_responses_can_be_read_listed_deleted_and_cancelled() {
    let api = Api::start(None);
    let created = api
        .post("/v1/responses", &ask(json!("Hi."), None))
        .await
        .json();
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");

    let got = api.send(Method::GET, &path, None, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json(), created);

    let items = api
        .send(Method::GET, &format!("{path}/input_items"), None, &[])
        .await;
    assert_eq!(items.status, StatusCode::OK);
    let items = items.json();
    assert_eq!(items["object"], "list");
    assert_eq!(items["has_more"], false);
    let item = &items["data"][0];
    assert_eq!(item["role"], "user");
    assert_eq!(
        item["content"],
        json!([{"type": "input_text", "text": "Hi."}])
    );
    assert_eq!(items["first_id"], item["id"]);
    assert_eq!(items["last_id"], item["id"]);

    let cancel = api
        .send(Method::POST, &format!("{path}/cancel"), None, &[])
        .await;
    assert_eq!(cancel.status, StatusCode::BAD_REQUEST);
    assert_eq!(cancel.json()["error"]["type"], "invalid_request_error");

    let deleted = api.send(Method::DELETE, &path, None, &[]).await;
    assert_eq!(
        deleted.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    for (method, path) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::GET, format!("{path}/input_items")),
        (Method::POST, format!("{path}/cancel")),
    ] {
        let answer = api.send(method, &path, None, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            answer.json()["error"]["message"],
            format!("Response with id '{id}' not found.")
        );
    }

    let background = json!({"model": "m", "input": "later", "background": true});
    let queued = api.post("/v1/responses", &background).await.json();
    assert_eq!(queued["status"], "in_progress");
    let cancel = format!("/v1/responses/{}/cancel", queued["id"].as_str().unwrap());
    let cancelled = api.send(Method::POST, &cancel, None, &[]).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.json()["status"], "cancelled");

    let unstored = json!({"model": "m", "input": "x", "store": false});
    let unstored = api.post("/v1/responses", &unstored).await.json();
    let path = format!("/v1/responses/{}", unstored["id"].as_str().unwrap());
    let answer = api.send(Method::GET, &path, None, &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stream_sends_the_responses_event_sequence() {
    let api = Api::start(None);
    api.behave(json!({"chunks": 2})).await;
    let mut request = ask(json!("Hi."), None);
    request["stream"] = json!(true);
    let answer = api.post("/v1/responses", &request).await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = answer.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    let deltas: String = events[4..6]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, "Hello from");
    assert_eq!(events[6].1["text"], "Hello from");
    let done = &events[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello from");
    assert_eq!(done["usage"]["output_tokens"], 2);

    // The streamed response is stored and can be followed.
    let id = done["id"].as_str().unwrap();
    let follow = api
        .post("/v1/responses", &ask(json!("More."), Some(id)))
        .await;
    assert_eq!(follow.status, StatusCode::OK);
}

#[tokio::test]
async fn faults_apply_and_failed_responses_are_not_stored() {
    let api = Api::start(Some("sk-test"));
    let request = ask(json!("Hi."), None);
    let answer = api.post("/v1/responses", &request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let key = [("authorization", "Bearer sk-test")];
    api.behave(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    let answer = api
        .send(Method::POST, "/v1/responses", Some(&request), &key)
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["error"]["type"], "server_error");
    api.behave(json!({"error_rate": 0.0, "rate_limit_rate": 1.0}))
        .await;
    let answer = api
        .send(Method::POST, "/v1/responses", Some(&request), &key)
        .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers.contains_key("retry-after"));
    let stats = api.stats().await;
    assert_eq!(stats["by_path"]["/v1/responses"], 3);
    assert_eq!(stats["outcomes"]["error"], 1);
}
