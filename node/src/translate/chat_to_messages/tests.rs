#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use serde_json::{Value, json};

use super::*;
use crate::translate::{StreamTranslator, parse_events};

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

/// Anthropic events as the upstream sends them.
fn sse(events: &[Value]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap(), e).into_bytes())
        .collect()
}

/// The `data:` payloads of translated chunks.
fn chunks(out: &[u8]) -> Vec<String> {
    parse_events(out)
        .into_iter()
        .map(|e| String::from_utf8(e.data.into_owned()).unwrap())
        .collect()
}

fn text_then_two_tools() -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-x", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1}}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
        json!({"type": "message_stop"}),
    ]
}

fn run(include_usage: bool, groups: &[Vec<u8>]) -> Vec<String> {
    let mut stream = Stream::new(include_usage, 42);
    let mut out = BytesMut::new();
    for group in groups {
        stream.events(group, &mut out);
    }
    stream.finish(&mut out);
    chunks(&out)
}

fn chunk(delta: Value, finish: Value) -> String {
    json!({"id": "chatcmpl-msg_1", "object": "chat.completion.chunk", "created": 42,
        "model": "claude-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

#[test]
fn a_stream_with_text_then_two_tool_calls() {
    let got = run(true, &sse(&text_then_two_tools()));
    let want = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Checking."}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                "function": {"name": "weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                "function": {"name": "time", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "chatcmpl-msg_1", "object": "chat.completion.chunk", "created": 42,
            "model": "claude-x", "choices": [], "usage": {"prompt_tokens": 14,
            "completion_tokens": 30, "total_tokens": 44, "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string(),
        "[DONE]".to_string(),
    ];
    // Parse back for a structural comparison, whatever the key order.
    let parse = |v: &[String]| -> Vec<Value> {
        v.iter()
            .map(|s| serde_json::from_str(s).unwrap_or(Value::String(s.clone())))
            .collect()
    };
    assert_eq!(parse(&got), parse(&want));
}

#[test]
fn the_usage_chunk_comes_only_when_asked() {
    let got = run(false, &sse(&text_then_two_tools()));
    assert_eq!(got.last().unwrap(), "[DONE]");
    assert!(got.iter().all(|c| !c.contains("\"usage\"")));
    assert_eq!(got.len(), 9);
}

#[test]
fn streams_fed_in_any_grouping_translate_alike() {
    let events = sse(&text_then_two_tools());
    let one_by_one = run(true, &events);
    let all_at_once = run(true, &[events.concat()]);
    let pairs: Vec<Vec<u8>> = events.chunks(2).map(|c| c.concat()).collect();
    let odd: Vec<Vec<u8>> = vec![
        events[..1].concat(),
        events[1..8].concat(),
        events[8..].concat(),
    ];
    assert_eq!(all_at_once, one_by_one);
    assert_eq!(run(true, &pairs), one_by_one);
    assert_eq!(run(true, &odd), one_by_one);
    // Each event's chunks come out as soon as it goes in.
    let mut stream = Stream::new(false, 42);
    let mut out = BytesMut::new();
    stream.events(&events[0], &mut out);
    assert_eq!(chunks(&out).len(), 1);
    stream.events(&events[3], &mut out);
    assert_eq!(chunks(&out).len(), 2);
}

#[test]
fn a_stream_cut_short_gets_done_only_after_message_delta() {
    let events = sse(&text_then_two_tools());
    // Ended by message_delta but no message_stop: whole, so closed.
    let got = run(true, &events[..13]);
    assert_eq!(got.last().unwrap(), "[DONE]");
    assert!(got[got.len() - 2].contains("\"usage\""));
    // Cut before message_delta: no [DONE], so the client can tell.
    let got = run(true, &events[..8]);
    assert!(got.iter().all(|c| c != "[DONE]"));
    // finish() after message_stop adds nothing.
    let got = run(true, &events);
    assert_eq!(got.iter().filter(|c| *c == "[DONE]").count(), 1);
}

#[test]
fn errors_thinking_and_garbage_in_a_stream() {
    let events = sse(&[
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}}),
        json!({"type": "content_block_delta", "index": 5, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let mut groups = events.clone();
    groups.insert(1, b"data: {not json\n\n".to_vec());
    groups.insert(
        2,
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n".to_vec(),
    );
    let got = run(false, &groups);
    assert_eq!(got.len(), 2);
    assert_eq!(
        serde_json::from_str::<Value>(&got[1]).unwrap(),
        json!({"error": {"message": "Overloaded", "type": "overloaded_error", "code": null}})
    );
    let broken = Stream::new(false, 0).error_event("upstream reset");
    let got: Vec<Value> = chunks(&broken)
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            json!({"error": {"message": "upstream reset", "type": "server_error",
            "code": "stream_interrupted"}})
        ]
    );
}

proptest::proptest! {
    /// Whatever an upstream or client sends, translating it never panics.
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = request(&bytes, "m", 1);
        let _ = response(&bytes, 0);
        let mut stream = Stream::new(true, 0);
        let mut out = BytesMut::new();
        stream.events(&bytes, &mut out);
        stream.finish(&mut out);
    }

    /// Anthropic-looking events with arbitrary fields, in any order, never
    /// panic either.
    #[test]
    fn shuffled_events_never_panic(
        picks in proptest::collection::vec((0usize..14, 0u64..4, ".{0,8}"), 0..24),
    ) {
        let base = text_then_two_tools();
        let mut stream = Stream::new(true, 0);
        let mut out = BytesMut::new();
        for (i, index, text) in picks {
            let mut event = base[i].clone();
            if event.get("index").is_some() {
                event["index"] = json!(index);
            }
            if let Some(delta) = event.get_mut("delta").and_then(|d| d.as_object_mut())
                && delta.contains_key("text")
            {
                delta.insert("text".into(), json!(text));
            }
            stream.events(format!("data: {event}\n\n").as_bytes(), &mut out);
        }
        stream.finish(&mut out);
        for event in parse_events(&out) {
            if &*event.data != b"[DONE]" {
                proptest::prop_assert!(serde_json::from_slice::<Value>(&event.data).is_ok());
            }
        }
    }
}
