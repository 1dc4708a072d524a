//! The Anthropic Messages API and tool use in both wire formats, over real
//! sockets against a mock from `mock::spawn`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Api;
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn hello() -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "Say hello, mock."}],
    })
}

fn weather_tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    }, {"name": "other", "input_schema": {"type": "object"}}])
}

fn assert_error(answer: &common::Answer, status: u16, kind: &str) {
    assert_eq!(answer.status.as_u16(), status);
    let body = answer.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn plain_message_answers_in_anthropic_shape() {
    let api = Api::start(None);
    let answer = api.post("/v1/messages", &hello()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert!(body["id"].as_str().unwrap().starts_with("msg_mock"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(
        body["content"][0]["text"],
        "Hello from the Meridian mock provider, again"
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    // "Be brief." + "Say hello, mock." = 25 characters: 7 tokens.
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 7, "output_tokens": 8})
    );

    let mut short = hello();
    short["max_tokens"] = json!(2);
    let body = api.post("/v1/messages", &short).await.json();
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["content"][0]["text"], "Hello from");

    let count = api.post("/v1/messages/count_tokens", &hello()).await;
    assert_eq!(count.status, StatusCode::OK);
    assert_eq!(count.json(), json!({"input_tokens": 7}));
}

#[tokio::test]
async fn stream_sends_the_anthropic_event_sequence() {
    let api = Api::start(None);
    api.behave(json!({"chunks": 3})).await;
    let mut request = hello();
    request["stream"] = json!(true);
    let answer = api.post("/v1/messages", &request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let events = answer.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert_eq!(
        start["usage"],
        json!({"input_tokens": 7, "output_tokens": 1})
    );
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events[3..6]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from the");
    assert_eq!(
        events[7].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 3}})
    );
}

#[tokio::test]
async fn bad_requests_get_anthropic_errors() {
    let api = Api::start(None);
    let mut no_max = hello();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let answer = api.post("/v1/messages", &no_max).await;
    assert_error(&answer, 400, "invalid_request_error");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );

    let answer = api.post("/v1/messages", &json!({"max_tokens": 5})).await;
    assert_error(&answer, 400, "invalid_request_error");
    let answer = api.send(Method::GET, "/v1/messages", None, &[]).await;
    assert_error(&answer, 404, "not_found_error");

    let mut unknown = hello();
    unknown["tools"] = weather_tools();
    unknown["tool_choice"] = json!({"type": "tool", "name": "nope"});
    assert_error(
        &api.post("/v1/messages", &unknown).await,
        400,
        "invalid_request_error",
    );
    assert_eq!(api.stats().await["outcomes"]["bad_request"], 3);
}

#[tokio::test]
async fn the_key_is_x_api_key_and_the_headers_are_recorded() {
    let api = Api::start(Some("sk-ant"));
    let path = "/v1/messages";
    let answer = api.send(Method::POST, path, Some(&hello()), &[]).await;
    assert_error(&answer, 401, "authentication_error");
    let bearer = [("authorization", "Bearer sk-ant")];
    let answer = api.send(Method::POST, path, Some(&hello()), &bearer).await;
    assert_error(&answer, 401, "authentication_error");
    let wrong = [("x-api-key", "sk-other")];
    let answer = api.send(Method::POST, path, Some(&hello()), &wrong).await;
    assert_error(&answer, 401, "authentication_error");

    let headers = [
        ("x-api-key", "sk-ant"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
    ];
    let answer = api.send(Method::POST, path, Some(&hello()), &headers).await;
    assert_eq!(answer.status, StatusCode::OK);
    let stats = api.stats().await;
    assert_eq!(stats["last_x_api_key_seen"], true);
    assert_eq!(stats["last_anthropic_version"], "2023-06-01");
    assert_eq!(stats["last_anthropic_beta"], "prompt-caching-2024-07-31");
    assert_eq!(stats["by_path"]["/v1/messages"], 4);

    // The OpenAI paths still take the bearer key.
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let answer = api
        .send(Method::POST, "/v1/chat/completions", Some(&chat), &bearer)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn injected_faults_speak_anthropic() {
    let api = Api::start(None);
    api.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 7}))
        .await;
    let answer = api.post("/v1/messages", &hello()).await;
    assert_error(&answer, 429, "rate_limit_error");
    assert_eq!(answer.headers["retry-after"], "7");

    for (status, kind) in [
        (529, "overloaded_error"),
        (500, "api_error"),
        (503, "api_error"),
        (403, "permission_error"),
        (413, "request_too_large"),
    ] {
        api.behave(json!({"rate_limit_rate": 0.0, "error_rate": 1.0, "error_status": status}))
            .await;
        assert_error(&api.post("/v1/messages", &hello()).await, status, kind);
    }
    api.behave(json!({"error_status": 429})).await;
    let answer = api.post("/v1/messages", &hello()).await;
    assert_error(&answer, 429, "rate_limit_error");
    assert_eq!(answer.headers["retry-after"], "7");

    api.behave(json!({"error_rate": 0.0, "cut_after_chunks": 2}))
        .await;
    let mut request = hello();
    request["stream"] = json!(true);
    let answer = api.post("/v1/messages", &request).await;
    assert!(answer.broken);
    let deltas = answer
        .events()
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .count();
    assert_eq!(deltas, 2);
}

#[tokio::test]
async fn anthropic_tool_use_round_trip() {
    let api = Api::start(None);
    let mut request = hello();
    request["tools"] = weather_tools();
    let body = api.post("/v1/messages", &request).await.json();
    assert_eq!(body["stop_reason"], "tool_use");
    let call = &body["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"city": "mock", "days": 1}));
    let id = call["id"].as_str().unwrap().to_owned();

    request["tool_choice"] = json!({"type": "tool", "name": "other"});
    let named = api.post("/v1/messages", &request).await.json();
    assert_eq!(named["content"][0]["name"], "other");
    assert_eq!(named["content"][0]["input"], json!({}));

    request["messages"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id,
            "content": [{"type": "text", "text": "sunny, 22 C"}]}]},
    ]);
    request.as_object_mut().unwrap().remove("tool_choice");
    let body = api.post("/v1/messages", &request).await.json();
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][0]["text"], "The tool said: sunny, 22 C");
}

#[tokio::test]
async fn anthropic_streamed_tool_call_comes_in_fragments() {
    let api = Api::start(None);
    let mut request = hello();
    request["tools"] = weather_tools();
    request["stream"] = json!(true);
    let events = api.post("/v1/messages", &request).await.events();
    let start = &events[1].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["input"], json!({}));
    let fragments: Vec<String> = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(fragments.len() >= 2, "{fragments:?}");
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({"city": "mock", "days": 1}));
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], fragments.len());
}

fn chat_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"},
            "exact": {"type": "boolean"}}, "required": ["q", "exact"]},
    }}])
}

#[tokio::test]
async fn openai_tool_call_round_trip() {
    let api = Api::start(None);
    let mut request = json!({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Look it up."}],
        "tools": chat_tools(),
    });
    let body = api.post("/v1/chat/completions", &request).await.json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"q": "mock", "exact": true}));

    request["tool_choice"] = json!("none");
    let body = api.post("/v1/chat/completions", &request).await.json();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    request["messages"] = json!([
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "42 results"},
    ]);
    request["stream"] = json!(true);
    let events = api.post("/v1/chat/completions", &request).await.events();
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "The tool said: 42 results");
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn openai_streamed_tool_call_comes_in_fragments() {
    let api = Api::start(None);
    let request = json!({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Look it up."}],
        "tools": chat_tools(),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let events = api.post("/v1/chat/completions", &request).await.events();
    let first = &events[0].1["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["tool_calls"][0]["function"]["name"], "lookup");
    let fragments: Vec<&str> = events[1..]
        .iter()
        .filter_map(|(_, d)| {
            d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert!(fragments.len() >= 2, "{fragments:?}");
    let args: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(args, json!({"q": "mock", "exact": true}));
    let n = events.len();
    assert_eq!(events[n - 3].1["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        events[n - 2].1["usage"]["completion_tokens"],
        fragments.len()
    );
    assert_eq!(events[n - 1].1, "[DONE]");
}
