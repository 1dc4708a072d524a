//! Azure OpenAI's path shape over real sockets against a mock from
//! `mock::spawn`: the deployment in the path answering as the model, the
//! `api-version` query parameter required, the key in `api-key`, and the
//! request ids each provider's header carries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Api;
use http::{Method, StatusCode};
use serde_json::json;

const CHAT: &str = "/openai/deployments/gpt-4o-eu/chat/completions?api-version=2024-10-21";

fn chat() -> serde_json::Value {
    json!({"model": "ignored", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_deployment_answers_as_the_model_with_its_key_and_version() {
    let api = Api::start(Some("sk-azure"));
    let key = [("api-key", "sk-azure")];
    let answer = api.send(Method::POST, CHAT, Some(&chat()), &key).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["model"], "gpt-4o-eu");
    assert_eq!(answer.headers["apim-request-id"], "req_mock_0");

    let embed = "/openai/deployments/emb%2Fsmall/embeddings?api-version=2024-10-21";
    let body = json!({"model": "x", "input": "hello"});
    let answer = api.send(Method::POST, embed, Some(&body), &key).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["model"], "emb/small");

    // Without its api-version: Azure's 400.
    let bare = "/openai/deployments/gpt-4o-eu/chat/completions";
    let answer = api.send(Method::POST, bare, Some(&chat()), &key).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"]["code"], "MissingApiVersion");
    // The key in api-key only: a bearer token is not Azure's.
    let bearer = [("authorization", "Bearer sk-azure")];
    let answer = api.send(Method::POST, CHAT, Some(&chat()), &bearer).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let other = "/openai/deployments/d/messages?api-version=2024-10-21";
    let answer = api.send(Method::POST, other, Some(&chat()), &key).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let stats = api.stats().await;
    assert_eq!(stats["azure_requests"], 5, "{stats}");
    assert_eq!(stats["by_model"]["gpt-4o-eu"], 1, "{stats}");
    assert_eq!(stats["last_azure_deployment"], "d");
    assert_eq!(stats["last_api_version"], "2024-10-21");
    assert_eq!(stats["last_api_key_seen"], true);
}

#[tokio::test]
async fn each_answer_carries_its_providers_request_id() {
    let api = Api::start(None);
    let answer = api.post("/v1/chat/completions", &chat()).await;
    assert_eq!(answer.headers["x-request-id"], "req_mock_0");
    let messages =
        json!({"model": "c", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let answer = api.post("/v1/messages", &messages).await;
    assert_eq!(answer.headers["request-id"], "req_mock_1");
    api.behave(json!({"request_id": "fixed id"})).await;
    let answer = api
        .send(
            Method::POST,
            "/v1/chat/completions",
            Some(&chat()),
            &[("traceparent", "00-abc"), ("user-agent", "ua/1")],
        )
        .await;
    assert_eq!(answer.headers["x-request-id"], "fixed id");
    let stats = api.stats().await;
    assert_eq!(stats["last_traceparent"], "00-abc");
    assert_eq!(stats["last_user_agent"], "ua/1");
    let names = stats["last_header_names"].as_array().unwrap();
    assert!(names.contains(&json!("traceparent")), "{stats}");
}
