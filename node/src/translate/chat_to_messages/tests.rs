//! The request and the answer: each mapping, and every refusal naming its
//! field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use super::*;

/// The translated request body as JSON.
fn translate(chat: Value) -> Value {
    let t = request(chat.to_string().as_bytes(), "claude-x", 1024).unwrap();
    serde_json::from_slice(&t.body).unwrap()
}

/// The field a refused request names.
fn refused(chat: Value) -> String {
    request(chat.to_string().as_bytes(), "claude-x", 1024)
        .unwrap_err()
        .field
}

fn hello() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

#[test]
fn a_plain_request_gets_the_target_model_and_a_default_max_tokens() {
    let out = translate(json!({"model": "gpt-4o", "messages": hello()}));
    assert_eq!(
        out,
        json!({
            "model": "claude-x",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        })
    );
}

#[test]
fn sampling_fields_are_carried_over() {
    let out = translate(json!({
        "model": "m", "messages": hello(), "max_tokens": 10, "max_completion_tokens": 20,
        "stop": "END", "temperature": 0.5, "top_p": 0.9, "user": "u-1", "stream": true,
        "stream_options": {"include_usage": true}, "n": 1, "store": true,
        "metadata": {"tag": "x"}, "logprobs": false, "frequency_penalty": 0,
        "parallel_tool_calls": true, "response_format": {"type": "text"},
    }));
    assert_eq!(out["max_tokens"], 20);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["temperature"], 0.5);
    assert_eq!(out["top_p"], 0.9);
    assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(out["stream"], true);
    assert!(out.get("stream_options").is_none());
    assert!(out.get("tool_choice").is_none());
    let t = request(
        json!({"messages": hello(), "stop": ["a", "b"], "max_tokens": 7, "stream_options": {"include_usage": true}})
            .to_string()
            .as_bytes(),
        "m",
        1,
    )
    .unwrap();
    assert!(t.include_usage);
    let out: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(out["stop_sequences"], json!(["a", "b"]));
    assert_eq!(out["max_tokens"], 7);
    let t = request(json!({"messages": hello()}).to_string().as_bytes(), "m", 1).unwrap();
    assert!(!t.include_usage);
}

#[test]
fn system_and_developer_messages_become_the_system_prompt() {
    let out = translate(json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "hi"},
    ]}));
    assert_eq!(out["system"], "Be brief.\n\nUse French.");
    assert_eq!(out["messages"].as_array().unwrap().len(), 1);
    // A cache_control keeps the blocks, so prompt caching works.
    let out = translate(json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Long.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hi"},
    ]}));
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "Long.", "cache_control": {"type": "ephemeral"}}])
    );
}

#[test]
fn images_become_base64_or_url_sources() {
    let out = translate(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]}));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );
    let bad = |url: &str| {
        refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]}))
    };
    assert_eq!(bad("ftp://x/y.png"), "messages[0].content[0].image_url.url");
    assert_eq!(
        bad("data:image/png,raw"),
        "messages[0].content[0].image_url.url"
    );
}

#[test]
fn a_tool_use_round_trip_merges_the_results_into_one_user_message() {
    let out = translate(json!({
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
                {"type": "text", "text": "and tomorrow?"},
            ]},
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{"name": "weather", "description": "Weather now",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
}

#[test]
fn assistant_text_comes_before_its_tool_calls_and_consecutive_users_merge() {
    let out = translate(json!({"messages": [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}]},
    ]}));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "c", "name": "f", "input": {}},
            ]},
        ])
    );
}

#[test]
fn tools_and_tool_choice_are_mapped() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let strict = json!([{"type": "function", "function": {"name": "g", "strict": true}}]);
    let out = translate(json!({"messages": hello(), "tools": strict}));
    assert_eq!(out["tools"][0]["strict"], true);
    let out = translate(json!({"messages": hello(), "tools": tools}));
    assert_eq!(
        out["tools"],
        json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
    );
    for (choice, want) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let out = translate(json!({"messages": hello(), "tools": tools, "tool_choice": choice}));
        assert_eq!(out["tool_choice"], want);
    }
    let out = translate(json!({"messages": hello(), "tools": tools, "parallel_tool_calls": false}));
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let out = translate(
        json!({"messages": hello(), "tools": tools, "parallel_tool_calls": false,
        "tool_choice": {"type": "function", "function": {"name": "f"}}}),
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
    );
    let out = translate(
        json!({"messages": hello(), "tools": tools, "parallel_tool_calls": false,
        "tool_choice": "none"}),
    );
    assert_eq!(out["tool_choice"], json!({"type": "none"}));
    // Without tools Anthropic refuses a tool_choice: none is invented.
    let out = translate(json!({"messages": hello(), "parallel_tool_calls": false}));
    assert!(out.get("tool_choice").is_none());
    let out = translate(json!({"messages": hello(), "tools": [], "parallel_tool_calls": false}));
    assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
}

#[test]
fn untranslatable_fields_are_refused_by_name() {
    let with = |key: &str, value: Value| {
        let mut chat = json!({"messages": hello()});
        chat[key] = value;
        refused(chat)
    };
    for (key, value) in [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("response_format", json!({"type": "json_object"})),
        ("logit_bias", json!({"50256": -100})),
        ("frequency_penalty", json!(0.5)),
        ("presence_penalty", json!(-1)),
        ("seed", json!(7)),
        ("audio", json!({"voice": "alloy"})),
        ("modalities", json!(["text", "audio"])),
        ("prediction", json!({"type": "content", "content": "x"})),
        ("functions", json!([])),
        ("function_call", json!("auto")),
        ("service_tier", json!("flex")),
        ("reasoning_effort", json!("low")),
        ("temperature", json!(1.5)),
        ("tool_choice", json!({"type": "allowed_tools"})),
        ("max_tokens", json!(0)),
        ("stop", json!(7)),
    ] {
        assert_eq!(with(key, value), key);
    }
    // null is absent, not a value.
    let out = translate(json!({"messages": hello(), "seed": null, "n": null}));
    assert!(out.get("seed").is_none());
    assert_eq!(refused(json!({"model": "m"})), "messages");
    assert_eq!(request(b"not json", "m", 1).unwrap_err().field, "");
    assert_eq!(request(b"[1]", "m", 1).unwrap_err().field, "");
}

#[test]
fn untranslatable_message_parts_are_refused_by_path() {
    let msgs = |messages: Value| refused(json!({"messages": messages}));
    assert_eq!(
        msgs(
            json!([{"role": "user", "content": [{"type": "text", "text": "x"},
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}])
        ),
        "messages[0].content[1].type"
    );
    assert_eq!(
        msgs(
            json!([{"role": "user", "content": "x"}, {"role": "user", "content": [
            {"type": "file", "file": {"file_id": "f"}}]}])
        ),
        "messages[1].content[0].type"
    );
    assert_eq!(
        msgs(json!([{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}])),
        "messages[0].tool_calls[0].function.arguments"
    );
    assert_eq!(
        msgs(json!([{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}])),
        "messages[0].tool_calls[0].function.arguments"
    );
    assert_eq!(
        msgs(json!([{"role": "function", "name": "f", "content": "x"}])),
        "messages[0].role"
    );
    assert_eq!(
        msgs(
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}])
        ),
        "messages[0].content[0].type"
    );
    assert_eq!(
        msgs(json!([{"role": "assistant", "content": "x", "audio": {"id": "a"}}])),
        "messages[0].audio"
    );
    assert_eq!(
        msgs(json!([{"role": "tool", "content": "x"}])),
        "messages[0].tool_call_id"
    );
    assert_eq!(
        msgs(json!([{"role": "assistant", "content": "x", "refusal": "no"}])),
        "messages[0].refusal"
    );
    assert_eq!(
        msgs(
            json!([{"role": "user", "content": [{"type": "text", "text": "x", "annotations": []}]}])
        ),
        "messages[0].content[0].annotations"
    );
    // A participant name and nulls are no reason to refuse.
    let out = translate(
        json!({"messages": [{"role": "user", "name": "ann", "content": "x"},
        {"role": "assistant", "content": "y", "refusal": null, "function_call": null}]}),
    );
    assert_eq!(out["messages"].as_array().unwrap().len(), 2);
    assert_eq!(
        refused(json!({"messages": hello(), "tools": [{"type": "web_search"}]})),
        "tools[0].type"
    );
}

#[test]
fn an_answer_becomes_a_chat_completion() {
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Looking "},
            {"type": "text", "text": "it up."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 3,
            "cache_read_input_tokens": 100},
    });
    let out: Value =
        serde_json::from_slice(&response(answer.to_string().as_bytes(), 1_700_000_000).unwrap())
            .unwrap();
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-msg_1", "object": "chat.completion", "created": 1_700_000_000u64,
            "model": "claude-x",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Looking it up.", "refusal": null,
                "tool_calls": [{"id": "toolu_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}],
            }}],
            "usage": {"prompt_tokens": 113, "completion_tokens": 5, "total_tokens": 118,
                "prompt_tokens_details": {"cached_tokens": 100}},
        })
    );
}

#[test]
fn stop_reasons_map_and_a_toolless_answer_has_no_tool_calls() {
    for (reason, want) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let answer = json!({"id": "m", "model": "c", "content": [], "stop_reason": reason,
            "usage": {"input_tokens": 1, "output_tokens": 2}});
        let out: Value =
            serde_json::from_slice(&response(answer.to_string().as_bytes(), 0).unwrap()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], want);
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(out["usage"]["total_tokens"], 3);
    }
    assert!(response(b"{\"type\":\"error\"}", 0).is_err());
}
