//! The stream: chunks per event whatever the grouping, tool calls counted
//! on their own, usage only when asked, and nothing an upstream sends
//! making it panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use serde_json::{Value, json};

use super::*;
use crate::translate::{StreamTranslator, parse_events};

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

/// Many tool calls, their deltas arriving last and in reverse: each still
/// reaches its own call (looked up by block index, not searched for), and
/// a block index started twice keeps the call it started first.
#[test]
fn many_tool_calls_each_get_their_deltas() {
    let n = 2_000u64;
    let mut events = vec![json!({"type": "message_start", "message": {"id": "msg_1",
        "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "usage": {"input_tokens": 1, "output_tokens": 1}}})];
    for i in 0..n {
        events.push(json!({"type": "content_block_start", "index": i,
            "content_block": {"type": "tool_use", "id": format!("t{i}"), "name": "f", "input": {}}}));
    }
    // Block 0 again: a new call is counted, the block's deltas stay with the first.
    events.push(json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "tool_use", "id": "again", "name": "f", "input": {}}}));
    for i in (0..n).rev() {
        events.push(json!({"type": "content_block_delta", "index": i,
            "delta": {"type": "input_json_delta", "partial_json": format!("{i}")}}));
    }
    let got = run(false, &sse(&events));
    let deltas: Vec<Value> = got
        .iter()
        .filter_map(|c| serde_json::from_str::<Value>(c).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .cloned()
                .map(Value::Object)
        })
        .filter(|call| call.get("id").is_none())
        .collect();
    assert_eq!(deltas.len() as u64, n);
    for call in &deltas {
        let args: u64 = call["function"]["arguments"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(call["index"].as_u64().unwrap(), args, "{call}");
    }
    assert!(
        got.iter()
            .any(|c| c.contains("\"again\"") && c.contains(&format!("\"index\":{n}")))
    );
}
