//! Anthropic's Messages API over real sockets: a `meridian` node in front
//! of `meridian-mock` upstreams speaking OpenAI chat and Anthropic's native
//! API, so each way through the node is exercised — passed through, and
//! translated both ways, plain and streamed — with every answer checked in
//! the shape its client reads and the mocks' own records checked for what
//! reached them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use bytes::Bytes;
use proto::config::{UpstreamConfig, UpstreamKind};
use serde_json::{Value, json};
use support::config::{Config, key, route_to, tiers, upstream};
use support::{Mock, Node};

const CLIENT: &str = "sk-client-0123456789";
const PROVIDER: &str = "sk-provider";

/// `mock` as a native Anthropic upstream.
fn native(id: &str, mock: &Mock) -> UpstreamConfig {
    let mut u = upstream(id, mock);
    u.kind = UpstreamKind::Anthropic;
    u
}

/// Both mocks hold the provider key, so an answer proves it was sent.
fn keyed(mut u: UpstreamConfig) -> UpstreamConfig {
    u.api_key_env = Some("TEST_PROVIDER_KEY".to_owned());
    u
}

const ENV: [(&str, &str); 2] = [("TEST_CLIENT_KEY", CLIENT), ("TEST_PROVIDER_KEY", PROVIDER)];

/// A node with an OpenAI-compatible upstream `oai` and a native `nat`,
/// route `via-openai` to the first and `native` to the second, and
/// whatever `more` adds.
async fn node(oai: &Mock, nat: &Mock, more: impl FnOnce(&mut Config)) -> Node {
    Node::start_with(
        |c: &mut Config| {
            c.keys.push(key("app", "TEST_CLIENT_KEY"));
            c.upstreams.push(keyed(upstream("oai", oai)));
            c.upstreams.push(keyed(native("nat", nat)));
            c.routes.push(route_to("via-openai", "oai", "gpt-x"));
            c.routes.push(route_to("native", "nat", "claude-x"));
            more(c);
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

fn messages(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hi"}],
    })
}

const AUTH: (&str, &str) = ("x-api-key", CLIENT);

fn weather_tool() -> Value {
    json!([{
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }])
}

/// The JSON of an answer that must be a 200.
fn ok(answer: &support::Answer) -> Value {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

/// The events of an Anthropic stream, as (event name, data).
fn events(frames: &[Bytes]) -> Vec<(String, Value)> {
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or_else(|_| json!(d));
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn a_messages_client_is_served_by_an_openai_target_and_by_a_native_one() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat, |_| {}).await;
    for (model, upstream, path) in [
        ("via-openai", "oai", "/v1/messages"),
        ("native", "nat", "/v1/messages"),
        ("native", "nat", "/v1/v1/messages"),
        ("via-openai", "oai", "/v1/v1/messages"),
    ] {
        let answer = node
            .post(
                path,
                messages(model).to_string(),
                &[AUTH, ("anthropic-version", "2023-06-01")],
            )
            .await;
        let v = ok(&answer);
        assert_eq!(v["type"], "message", "{model} {path}: {v}");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["content"][0]["type"], "text");
        assert!(!v["content"][0]["text"].as_str().unwrap().is_empty());
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{v}");
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(answer.header("x-meridian-upstream"), upstream);
        assert_eq!(answer.header("x-meridian-region"), "test-region");
        assert_eq!(answer.header("content-type"), "application/json");
    }
    let stats = oai.stats().await;
    assert_eq!(stats["by_model"]["gpt-x"], 2, "{stats}");
    let stats = nat.stats().await;
    assert_eq!(stats["by_model"]["claude-x"], 2, "{stats}");
    assert_eq!(stats["last_anthropic_version"], "2023-06-01");
    assert_eq!(stats["last_x_api_key_seen"], true);
    assert_eq!(
        stats["outcomes"]["unauthorized"], 0,
        "the provider key reached it: {stats}"
    );

    // The beta header reaches a native target; an absent version is the
    // upstream's configured default.
    let answer = node
        .post(
            "/v1/messages",
            messages("native").to_string(),
            &[AUTH, ("anthropic-beta", "prompt-caching-2024-07-31,x-2")],
        )
        .await;
    assert_eq!(answer.status, 200);
    let stats = nat.stats().await;
    assert_eq!(
        stats["last_anthropic_beta"],
        "prompt-caching-2024-07-31,x-2"
    );
    assert_eq!(stats["last_anthropic_version"], "2023-06-01");
    // The log names the request's usage from either shape.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = node.log();
    assert!(
        !log.contains(CLIENT) && !log.contains(PROVIDER),
        "a secret reached the log"
    );
}

#[tokio::test]
async fn translated_streams_arrive_event_by_event_in_anthropic_shape() {
    let (oai, nat) = mocks().await;
    for mock in [&oai, &nat] {
        mock.behave(json!({"chunks": 5, "chunk_delay": {"fixed_ms": 30}}))
            .await;
    }
    let node = node(&oai, &nat, |_| {}).await;
    for model in ["via-openai", "native"] {
        let mut body = messages(model);
        body["stream"] = json!(true);
        let (status, headers, frames) = node.stream("/v1/messages", body, &[AUTH]).await;
        assert_eq!(status, 200, "{model}");
        assert_eq!(headers["content-type"], "text/event-stream", "{model}");
        // 30 ms between the upstream's chunks: each arrives on its own,
        // translated or not (nothing is held for the whole answer).
        assert!(
            frames.len() >= 5,
            "{model}: buffered into {} frames",
            frames.len()
        );
        let events = events(&frames);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{model}: {names:?}");
        assert_eq!(names.last(), Some(&"message_stop"), "{model}: {names:?}");
        let deltas: String = events
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "text_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert!(!deltas.is_empty(), "{model}: {names:?}");
        let delta = events
            .iter()
            .find(|(n, _)| n == "message_delta")
            .unwrap_or_else(|| panic!("{model}: no message_delta in {names:?}"));
        assert_eq!(delta.1["delta"]["stop_reason"], "end_turn", "{model}");
        assert!(
            delta.1["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );
        for pair in ["content_block_start", "content_block_stop"] {
            assert!(names.contains(&pair), "{model}: {names:?}");
        }
    }
    // The translation asked the OpenAI upstream for the final usage.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = node.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("request done") && l.contains("via-openai"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("completion_tokens="), "{line}");
}

#[tokio::test]
async fn an_openai_client_is_served_by_a_native_anthropic_target() {
    let (oai, nat) = mocks().await;
    nat.behave(json!({"chunks": 4})).await;
    let node = node(&oai, &nat, |_| {}).await;
    let bearer = ("authorization", "Bearer sk-client-0123456789");
    let body = json!({"model": "native", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
    ]});
    let answer = node.chat(body.clone(), &[bearer]).await;
    let v = ok(&answer);
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(answer.header("x-meridian-upstream"), "nat");
    assert_eq!(nat.stats().await["by_model"]["claude-x"], 1);

    // Streamed, with the usage chunk the client asked for, then [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, headers, frames) = node
        .stream("/v1/chat/completions", streamed, &[bearer])
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    assert!(text.contains("\"prompt_tokens\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // A tool call comes back as OpenAI's tool_calls.
    let mut tools = body.clone();
    tools["tools"] = json!([{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}]);
    let answer = node.chat(tools, &[bearer]).await;
    let v = ok(&answer);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["city"], "mock");
}

#[tokio::test]
async fn tool_use_round_trips_through_an_openai_target() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat, |_| {}).await;
    for model in ["via-openai", "native"] {
        let mut first = messages(model);
        first["tools"] = weather_tool();
        let answer = node.post("/v1/messages", first.to_string(), &[AUTH]).await;
        let v = ok(&answer);
        assert_eq!(v["stop_reason"], "tool_use", "{model}: {v}");
        let call = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: {v}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["input"]["city"], "mock", "{model}: {call}");

        let mut second = messages(model);
        second["tools"] = weather_tool();
        second["messages"] = json!([
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny, 21 C"}]},
        ]);
        let answer = node.post("/v1/messages", second.to_string(), &[AUTH]).await;
        let v = ok(&answer);
        assert_eq!(v["stop_reason"], "end_turn", "{model}: {v}");
        let text = v["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("sunny, 21 C"),
            "{model}: the result reached the model: {text}"
        );
    }
}

#[tokio::test]
async fn a_native_529_fails_over_to_an_openai_target_before_the_first_byte() {
    let (oai, nat) = mocks().await;
    nat.behave(json!({"error_rate": 1.0, "error_status": 529}))
        .await;
    let node = node(&oai, &nat, |c| {
        c.routes
            .push(tiers("premium", &[("nat", "claude-x"), ("oai", "gpt-x")]));
    })
    .await;
    let answer = node
        .post("/v1/messages", messages("premium").to_string(), &[AUTH])
        .await;
    assert_eq!(ok(&answer)["type"], "message");
    assert_eq!(answer.header("x-meridian-upstream"), "oai");
    assert_eq!(answer.header("x-meridian-fallback"), "true");
    assert_eq!(answer.header("x-meridian-attempts"), "2");

    let mut body = messages("premium");
    body["stream"] = json!(true);
    let (status, headers, frames) = node.stream("/v1/messages", body, &[AUTH]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-fallback"], "true");
    let names: Vec<String> = events(&frames).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.first().map(String::as_str),
        Some("message_start"),
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("message_stop"),
        "{names:?}"
    );

    // With nothing else to try, the client sees Anthropic's own 529; an
    // OpenAI client of the same route, a 503.
    let answer = node
        .post("/v1/messages", messages("native").to_string(), &[AUTH])
        .await;
    assert_eq!(
        answer.status.as_u16(),
        529,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["error"]["type"], "overloaded_error");
    let answer = node
        .chat(
            support::chat_body("native"),
            &[("authorization", "Bearer sk-client-0123456789")],
        )
        .await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["error"]["code"], "upstream_overloaded");
}

/// The status and Anthropic error type of an answer.
fn refused(answer: &support::Answer) -> (u16, String) {
    let v = answer.json();
    assert_eq!(v["type"], "error", "{v}");
    (
        answer.status.as_u16(),
        v["error"]["type"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn messages_errors_are_anthropic_shaped_and_name_what_is_wrong() {
    let (oai, nat) = mocks().await;
    let node = node(&oai, &nat, |_| {}).await;
    let body = messages("native").to_string();
    let post = |path: &'static str, body: String, headers: Vec<(&'static str, String)>| {
        let node = &node;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            node.post(path, body, &h).await
        }
    };
    let key = || vec![("x-api-key", CLIENT.to_owned())];

    // Keys.
    let a = post("/v1/messages", body.clone(), vec![]).await;
    assert_eq!(refused(&a), (401, "authentication_error".into()));
    let a = post(
        "/v1/messages",
        body.clone(),
        vec![("x-api-key", "sk-wrong".into())],
    )
    .await;
    assert_eq!(refused(&a), (401, "authentication_error".into()));
    // The body and the model.
    let a = post("/v1/messages", "{\"model\": ".into(), key()).await;
    assert_eq!(refused(&a), (400, "invalid_request_error".into()));
    let a = post("/v1/messages", messages("claude-9").to_string(), key()).await;
    assert_eq!(refused(&a), (404, "not_found_error".into()));
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-9")
    );
    // What an OpenAI target cannot take is refused naming the field, and
    // nothing reaches the upstream.
    let before = oai.requests().await;
    let mut thinking = messages("via-openai");
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let a = post("/v1/messages", thinking.to_string(), key()).await;
    assert_eq!(refused(&a), (400, "invalid_request_error".into()));
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("thinking"),
        "{}",
        a.json()
    );
    let mut no_max = messages("via-openai");
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let a = post("/v1/messages", no_max.to_string(), key()).await;
    assert_eq!(refused(&a), (400, "invalid_request_error".into()));
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    assert_eq!(
        oai.requests().await,
        before,
        "a refused request reached the upstream"
    );
    // A native target's own refusal comes back as it wrote it.
    let mut no_max = messages("native");
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let a = post("/v1/messages", no_max.to_string(), key()).await;
    assert_eq!(refused(&a), (400, "invalid_request_error".into()));
    // count_tokens: native targets only.
    let a = post("/v1/messages/count_tokens", body.clone(), key()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["input_tokens"].as_u64().unwrap() > 0);
    let a = post(
        "/v1/messages/count_tokens",
        messages("via-openai").to_string(),
        key(),
    )
    .await;
    assert_eq!(refused(&a), (404, "not_found_error".into()));
    // Hostile headers bound for the upstream are refused, naming them.
    for (name, value) in [
        ("anthropic-version", "2023-06-01, 1999-01-01".to_owned()),
        ("anthropic-version", "latest".to_owned()),
        ("anthropic-beta", "x".repeat(2000)),
        ("anthropic-beta", "a;b=c".to_owned()),
    ] {
        let mut headers = key();
        headers.push((name, value));
        let a = post("/v1/messages", body.clone(), headers).await;
        assert_eq!(refused(&a), (400, "invalid_request_error".into()), "{name}");
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(name)
        );
    }
    // Unknown Anthropic paths and wrong methods, in Anthropic's shape.
    let a = post("/v1/messages/batches", body.clone(), key()).await;
    assert_eq!(refused(&a), (404, "not_found_error".into()));
    let a = node.get("/v1/messages", &[AUTH]).await;
    assert_eq!(refused(&a), (405, "invalid_request_error".into()));
    // An OpenAI endpoint a native-only route cannot serve.
    let a = node
        .post(
            "/v1/embeddings",
            json!({"model": "native", "input": "x"}).to_string(),
            &[("authorization", "Bearer sk-client-0123456789")],
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["code"], "not_served");
    // A rate-limited native target: 429 with Retry-After.
    nat.behave(json!({"rate_limit_rate": 1.0, "retry_after_s": 3}))
        .await;
    let a = post("/v1/messages", body.clone(), key()).await;
    assert_eq!(refused(&a), (429, "rate_limit_error".into()));
    assert_eq!(a.header("retry-after"), "3");
}
