//! Chat streams translated to Messages events.

use super::*;

#[test]
fn a_text_stream_becomes_message_events() {
    let out = run_stream(&[
        chunk(json!({"role": "assistant", "content": ""}), json!(null)),
        chunk(json!({"content": "Hel"}), json!(null)),
        chunk(json!({"content": "lo"}), json!(null)),
        chunk(json!({}), json!("stop")),
        usage_chunk(),
    ]);
    let events = events(&out);
    let names: Vec<_> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        events[0].1,
        json!({"type": "message_start", "message": {"id": "msg_chatcmpl-1", "type": "message",
            "role": "assistant", "content": [], "model": "gpt-4o", "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}})
    );
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        events[2].1,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
    );
    assert_eq!(
        events[4].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    // The usage chunk came after finish_reason and still reaches message_delta.
    assert_eq!(
        events[5].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 10}})
    );
    assert_eq!(events[6].1, json!({"type": "message_stop"}));
}

#[test]
fn text_then_two_tool_calls_open_three_blocks() {
    let call = |index: u64, id: Value, name: Value, arguments: &str| {
        chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}}]}),
            json!(null),
        )
    };
    let out = run_stream(&[
        chunk(
            json!({"role": "assistant", "content": "Checking."}),
            json!(null),
        ),
        call(0, json!("call_a"), json!("weather"), ""),
        call(0, json!(null), json!(null), "{\"city\":"),
        call(0, json!(null), json!(null), "\"Paris\"}"),
        call(1, json!("call_b"), json!("weather"), "{\"city\":\"Rome\"}"),
        chunk(json!({}), json!("tool_calls")),
        usage_chunk(),
    ]);
    let events = events(&out);
    let data: Vec<_> = events.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(
        events.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        data[4],
        json!({"type": "content_block_start", "index": 1, "content_block":
            {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}})
    );
    assert_eq!(
        data[5],
        json!({"type": "content_block_delta", "index": 1, "delta":
            {"type": "input_json_delta", "partial_json": "{\"city\":"}})
    );
    assert_eq!(data[8]["index"], 2);
    assert_eq!(data[8]["content_block"]["id"], "call_b");
    assert_eq!(data[9]["delta"]["partial_json"], "{\"city\":\"Rome\"}");
    assert_eq!(data[10]["index"], 2);
    assert_eq!(data[11]["delta"]["stop_reason"], "tool_use");
}

#[test]
fn each_chunk_is_translated_in_the_call_that_brings_it() {
    let mut stream = Stream::new();
    let mut out = BytesMut::new();
    let first = format!("data: {}\n\n", chunk(json!({"content": "a"}), json!(null)));
    stream.events(first.as_bytes(), &mut out);
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start",
            "content_block_delta"
        ]
    );
    let finish = format!("data: {}\n\n", chunk(json!({}), json!("length")));
    out.clear();
    stream.events(finish.as_bytes(), &mut out);
    assert!(out.is_empty(), "message_delta waits for the usage");
    stream.events(b"data: [DONE]\n\n", &mut out);
    assert_eq!(
        names(&out),
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(events(&out)[1].1["delta"]["stop_reason"], "max_tokens");
    // Exactly once: nothing after [DONE], nor from finish().
    out.clear();
    stream.events(
        &sse(&[chunk(json!({"content": "late"}), json!(null))]).concat(),
        &mut out,
    );
    stream.finish(&mut out);
    assert!(out.is_empty());
}

#[test]
fn a_stream_ending_without_done_is_closed_by_finish() {
    let mut stream = Stream::new();
    let mut out = BytesMut::new();
    let body = format!(
        "data: {}\n\n",
        chunk(json!({"content": "a"}), json!("stop"))
    );
    stream.events(body.as_bytes(), &mut out);
    stream.finish(&mut out);
    let seen = names(&out);
    assert_eq!(seen.last().unwrap(), "message_stop");
    assert_eq!(seen.iter().filter(|n| *n == "message_stop").count(), 1);
    // An empty stream still tells a whole (empty) message.
    let mut out = BytesMut::new();
    Stream::new().finish(&mut out);
    assert_eq!(
        names(&out),
        ["message_start", "message_delta", "message_stop"]
    );
}

#[test]
fn an_upstream_error_ends_the_stream_with_an_error_event() {
    let mut stream = Stream::new();
    let mut out = BytesMut::new();
    let body = format!(
        "data: {}\n\ndata: {{\"error\":{{\"message\":\"overloaded\",\"type\":\"server_error\"}}}}\n\ndata: {}\n\n",
        chunk(json!({"content": "a"}), json!(null)),
        chunk(json!({"content": "b"}), json!(null)),
    );
    stream.events(body.as_bytes(), &mut out);
    stream.events(b"data: [DONE]\n\n", &mut out);
    stream.finish(&mut out);
    let events = events(&out);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        *data,
        json!({"type": "error", "error": {"type": "api_error", "message": "overloaded"}})
    );
    assert_eq!(events.len(), 4);
    let event = stream.error_event("upstream reset");
    assert_eq!(
        event,
        &b"event: error\ndata: {\"error\":{\"message\":\"upstream reset\",\"type\":\"api_error\"},\"type\":\"error\"}\n\n"[..]
    );
}

#[test]
fn events_that_are_not_json_are_skipped() {
    let mut stream = Stream::new();
    let mut out = BytesMut::new();
    stream.events(b": keep-alive\n\ndata: {oops\n\ndata: 17\n\n", &mut out);
    assert!(out.is_empty());
    stream.events(
        format!("data: {}\n\n", chunk(json!({"content": "x"}), json!(null))).as_bytes(),
        &mut out,
    );
    assert_eq!(names(&out)[0], "message_start");
}

#[test]
fn interleaved_and_unindexed_tool_calls_keep_their_blocks() {
    let out = run_stream(&[
        // No `index`: the position in the array stands in for it.
        chunk(
            json!({"tool_calls": [
                {"id": "call_a", "function": {"name": "f", "arguments": "{\"x\":"}},
                {"id": "call_b", "function": {"name": "g", "arguments": "{}"}},
            ]}),
            json!(null),
        ),
        // A late fragment of the first call still goes to its block.
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            json!(null),
        ),
        chunk(json!({"content": "done"}), json!("tool_calls")),
    ]);
    let deltas: Vec<_> = events(&out)
        .into_iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| (data["index"].clone(), data["delta"].clone()))
        .collect();
    assert_eq!(
        deltas,
        [
            (
                json!(0),
                json!({"type": "input_json_delta", "partial_json": "{\"x\":"})
            ),
            (
                json!(1),
                json!({"type": "input_json_delta", "partial_json": "{}"})
            ),
            (
                json!(0),
                json!({"type": "input_json_delta", "partial_json": "1}"})
            ),
            (json!(2), json!({"type": "text_delta", "text": "done"})),
        ]
    );
    let starts = events(&out)
        .into_iter()
        .filter(|(name, _)| name == "content_block_start")
        .count();
    assert_eq!(starts, 3);
}
