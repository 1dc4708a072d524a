//! Messages requests translated to chat, and the ones refused.

use super::*;

#[test]
fn a_plain_request_maps_model_max_tokens_and_sampling() {
    let chat = translate(with(json!({
        "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "u-42"},
    })));
    assert_eq!(
        chat,
        json!({
            "model": "gpt-4o",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["END", "STOP"],
            "user": "u-42",
        })
    );
}

#[test]
fn a_streamed_request_asks_for_usage() {
    let chat = translate(with(json!({"stream": true})));
    assert_eq!(chat["stream"], true);
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    let chat = translate(with(json!({"stream": false})));
    assert_eq!(chat["stream"], false);
    assert!(chat.get("stream_options").is_none());
}

#[test]
fn system_blocks_are_joined_and_cache_control_ignored() {
    let chat = translate(with(json!({"system": [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
    ]})));
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "You are terse.\n\nAnswer in French."})
    );
    let chat = translate(with(json!({"system": "Be brief."})));
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(chat["messages"][1]["role"], "user");
}

#[test]
fn text_and_image_blocks_become_parts() {
    let chat = translate(with(json!({"messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
        ]},
        {"role": "user", "content": [{"type": "text", "text": "alone", "cache_control": {"type": "ephemeral"}}]},
    ]})));
    assert_eq!(
        chat["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        ])
    );
    assert_eq!(chat["messages"][1]["content"], "alone");
}

#[test]
fn a_tool_use_round_trip_keeps_calls_and_results_paired() {
    let chat = translate(with(json!({
        "tools": [{"name": "weather", "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here you go."},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                    "content": [{"type": "text", "text": "timeout"}, {"type": "text", "text": "retry later"}]},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_3", "name": "weather", "input": {}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3", "content": "done"}]},
        ],
    })));
    assert_eq!(
        chat["tools"],
        json!([{"type": "function", "function": {"name": "weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    assert_eq!(chat["tool_choice"], "auto");
    assert_eq!(chat["parallel_tool_calls"], false);
    let messages = chat["messages"].as_array().unwrap();
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
        ]})
    );
    // Tool messages come first, right after the assistant's calls.
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout\n\nretry later"})
    );
    assert_eq!(
        messages[4],
        json!({"role": "user", "content": "Here you go."})
    );
    assert_eq!(messages[5]["content"], Value::Null);
    assert_eq!(messages[5]["tool_calls"][0]["function"]["arguments"], "{}");
    assert_eq!(messages.len(), 7);
}

#[test]
fn a_user_message_of_results_only_adds_no_user_message() {
    let chat = translate(with(json!({"messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]})));
    assert_eq!(
        chat["messages"],
        json!([{"role": "tool", "tool_call_id": "t", "content": ""}])
    );
}

#[test]
fn tool_choice_maps_each_kind() {
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    for (choice, want) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ] {
        let chat = translate(with(json!({"tools": tools, "tool_choice": choice})));
        assert_eq!(chat["tool_choice"], want);
        assert!(chat.get("parallel_tool_calls").is_none());
    }
    // Without tools, "auto" means what no tool_choice means.
    let chat = translate(with(json!({"tool_choice": {"type": "auto"}})));
    assert!(chat.get("tool_choice").is_none());
    assert!(chat.get("tools").is_none());
}

#[test]
fn untranslatable_requests_name_the_field() {
    let cases = [
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "thinking",
        ),
        (json!({"top_k": 5}), "top_k"),
        (json!({"service_tier": "auto"}), "service_tier"),
        (json!({"container": "c"}), "container"),
        (json!({"max_tokens": null}), "max_tokens"),
        (json!({"max_tokens": -1}), "max_tokens"),
        (json!({"max_tokens": "10"}), "max_tokens"),
        (json!({"model": null}), "model"),
        (json!({"model": 7}), "model"),
        (json!({"messages": {}}), "messages"),
        (json!({"messages": null}), "messages"),
        (json!({"stream": "yes"}), "stream"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"stop_sequences": ["a", 1]}), "stop_sequences[1]"),
        (
            json!({"metadata": {"user_id": "u", "team": "x"}}),
            "metadata.team",
        ),
        (json!({"system": 3}), "system"),
        (json!({"system": [{"type": "image"}]}), "system[0].type"),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
        ),
        (json!({"tools": [{"name": "f"}]}), "tools[0].input_schema"),
        (
            json!({"tools": [{"name": "f", "input_schema": {}, "strict": true}]}),
            "tools[0].strict",
        ),
        (
            json!({"tool_choice": {"type": "sometimes"}}),
            "tool_choice.type",
        ),
        (json!({"tool_choice": {"type": "tool"}}), "tool_choice.name"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "name": "n"}]}),
            "messages[0].name",
        ),
        (json!({"messages": ["hi"]}), "messages[0]"),
        (
            json!({"messages": [{"role": "user", "content": "Say OK"}, {"role": "assistant", "content": "O"}]}),
            "messages[1].role",
        ),
    ];
    for (extra, field) in cases {
        assert_eq!(refused(with(extra.clone())), field, "{extra}");
    }
    let mut body = with(json!({}));
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(refused(body), "max_tokens");
    let mut body = with(json!({}));
    body.as_object_mut().unwrap().remove("model");
    assert_eq!(refused(body), "model");
    // Disabled thinking is the default: accepted.
    translate(with(json!({"thinking": {"type": "disabled"}})));
    translate(with(
        json!({"tools": [{"type": "custom", "name": "f", "input_schema": {}}]}),
    ));
}

#[test]
fn untranslatable_blocks_name_the_block() {
    let user = |block: Value| {
        with(json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "see"}, block]},
        ]}))
    };
    for kind in [
        "thinking",
        "redacted_thinking",
        "document",
        "search_result",
        "server_tool_use",
        "tool_use",
        "hologram",
    ] {
        assert_eq!(
            refused(user(json!({"type": kind}))),
            "messages[2].content[1].type"
        );
    }
    let image = json!({"type": "image", "source": {"type": "file", "file_id": "f"}});
    assert_eq!(refused(user(image)), "messages[2].content[1].source.type");
    let result = json!({"type": "tool_result", "tool_use_id": "t",
        "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]});
    assert_eq!(
        refused(user(result)),
        "messages[2].content[1].content[0].type"
    );
    let cited = json!({"type": "text", "text": "t", "citations": [{"type": "char_location"}]});
    assert_eq!(refused(user(cited)), "messages[2].content[1].citations");
    assert_eq!(refused(user(json!("text"))), "messages[2].content[1]");
    let thinking = with(json!({"messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
    ]}]}));
    assert_eq!(refused(thinking), "messages[0].content[0].type");
    let input = with(json!({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": "[]"},
    ]}]}));
    assert_eq!(refused(input), "messages[0].content[0].input");
}

#[test]
fn a_body_that_is_not_json_is_refused_as_a_whole() {
    for body in [&b"not json"[..], b"[1,2]", b"", b"{\"model\":"] {
        assert_eq!(request(body, "m").unwrap_err().field, "");
    }
}
