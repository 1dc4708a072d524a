//! Plain chat answers translated to Messages.

use super::*;

#[test]
fn a_plain_answer_becomes_a_message() {
    let message = answer(json!({
        "id": "chatcmpl-9", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ]}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 15, "total_tokens": 135,
            "prompt_tokens_details": {"cached_tokens": 100}},
    }));
    assert_eq!(
        message,
        json!({
            "id": "msg_chatcmpl-9",
            "type": "message",
            "role": "assistant",
            "model": "gpt-4o-2024-08-06",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 15, "cache_read_input_tokens": 100},
        })
    );
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    for (finish, stop) in [
        (json!("stop"), "end_turn"),
        (json!("length"), "max_tokens"),
        (json!("tool_calls"), "tool_use"),
        (json!("content_filter"), "refusal"),
        (json!(null), "end_turn"),
        (json!("something_new"), "end_turn"),
    ] {
        let message = answer(json!({"id": "x", "model": "m", "choices": [
            {"message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}));
        assert_eq!(message["stop_reason"], stop);
        assert_eq!(
            message["usage"],
            json!({"input_tokens": 3, "output_tokens": 1})
        );
    }
}

#[test]
fn a_refusal_is_text_with_the_refusal_stop_reason() {
    let message = answer(
        json!({"id": "x", "model": "m", "choices": [{"finish_reason": "stop",
        "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]}),
    );
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "I can't help with that."}])
    );
    assert_eq!(message["stop_reason"], "refusal");
}

#[test]
fn bad_answers_name_the_field() {
    let fail = |body: Value| {
        response(&serde_json::to_vec(&body).unwrap())
            .unwrap_err()
            .field
    };
    assert_eq!(fail(json!({"id": "x", "choices": []})), "choices");
    assert_eq!(fail(json!({"id": "x"})), "choices");
    assert_eq!(fail(json!({"choices": [{}]})), "choices[0].message");
    for arguments in ["[1]", "{not json", "42"] {
        let body = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "f", "arguments": arguments}},
        ]}}]});
        assert_eq!(
            fail(body),
            "choices[0].message.tool_calls[1].function.arguments"
        );
    }
    assert_eq!(response(b"<html>",).unwrap_err().field, "");
}
