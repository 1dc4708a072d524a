//! Hostile input never panics.

use super::*;

#[test]
fn hostile_json_never_panics() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = r#"{"model":"m","max_tokens":1e400,"messages":[]}"#;
    let big = r#"{"model":"m","max_tokens":184467440737095516150,"messages":[]}"#;
    for body in [deep.as_str(), huge, big] {
        assert!(request(body.as_bytes(), "m").is_err());
        assert!(response(body.as_bytes()).is_err());
        let mut out = BytesMut::new();
        Stream::new().events(format!("data: {body}\n\n").as_bytes(), &mut out);
    }
    let deep_input = format!(
        r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"a":{}1{}}}}}]}},{{"role":"user","content":"go"}}]}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    request(deep_input.as_bytes(), "m").unwrap();
    let wrong = answer_with_wrong_types();
    assert!(response(&wrong).is_err());
}

fn answer_with_wrong_types() -> Vec<u8> {
    br#"{"id":5,"model":[],"choices":[{"message":{"content":{},"tool_calls":7}}],"usage":"lots"}"#
        .to_vec()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = request(&bytes, "m");
        let _ = response(&bytes);
        let mut stream = Stream::new();
        let mut out = BytesMut::new();
        stream.events(&bytes, &mut out);
        let mut framed = b"data: ".to_vec();
        framed.extend_from_slice(&bytes);
        framed.extend_from_slice(b"\n\n");
        stream.events(&framed, &mut out);
        stream.finish(&mut out);
    }

    #[test]
    fn arbitrary_json_in_any_field_never_panics(
        field in prop::sample::select(vec![
            "system", "messages", "tools", "tool_choice", "metadata", "max_tokens",
            "stop_sequences", "stream", "thinking",
        ]),
        value in any_json(),
        block in any_json(),
    ) {
        let mut body = with(json!({}));
        body[field] = value.clone();
        let _ = request(&serde_json::to_vec(&body).unwrap(), "m");
        let body = with(json!({"messages": [
            {"role": "user", "content": [block.clone()]},
            {"role": "assistant", "content": [block.clone()]},
        ]}));
        let _ = request(&serde_json::to_vec(&body).unwrap(), "m");
        let answer = json!({"choices": [{"message": value, "delta": block.clone(), "finish_reason": block}]});
        let _ = response(&serde_json::to_vec(&answer).unwrap());
        let mut out = BytesMut::new();
        let mut stream = Stream::new();
        stream.events(format!("data: {answer}\n\n").as_bytes(), &mut out);
        stream.finish(&mut out);
        // Whatever came in, what goes out is well-formed events.
        for event in parse_events(&out) {
            serde_json::from_slice::<Value>(&event.data).unwrap();
        }
    }
}
