//! The tail read against the whole parse: the same usage whenever the tail
//! read gives one, and `None` (so the whole parse runs) for every shape it
//! cannot vouch for, hostile ones included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::usage::{Usage, from_json, whole};

fn fast(body: &[u8]) -> Option<Usage> {
    match top_level(body) {
        Tail::Usage(raw) => Some(raw.into()),
        Tail::Null | Tail::Unknown => None,
    }
}

/// The outermost object's `usage` member, read through a `Value`: what
/// the tail read must give when it gives anything.
fn outermost(body: &[u8]) -> Option<Usage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let usage = value.as_object()?.get("usage")?.clone();
    serde_json::from_value::<Option<RawUsage>>(usage)
        .ok()?
        .map(Usage::from)
}

fn tokens(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: 0,
    }
}

#[test]
fn reads_the_usage_of_each_api_from_the_end() {
    let chat = br#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_1"}"#;
    assert_eq!(fast(chat), Some(tokens(12, 3)));
    let messages = br#"{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":7,"output_tokens":4}}"#;
    assert_eq!(fast(messages), Some(tokens(7, 4)));
    let responses = b"{\"object\":\"response\",\"output\":[],\n  \"usage\" : {\"input_tokens\":3,\"output_tokens\":9},\n  \"user\": null, \"metadata\": {\"a\": [1, {\"b\": 2}]}\n}\n";
    assert_eq!(fast(responses), Some(tokens(3, 9)));
}

#[test]
fn leaves_what_it_cannot_vouch_for_to_the_whole_parse() {
    // Nested: Anthropic's message_start and the Responses API's events.
    let nested = br#"{"type":"message_start","message":{"usage":{"input_tokens":25}}}"#;
    assert_eq!(fast(nested), None);
    assert_eq!(from_json(nested), Some(tokens(25, 0)));
    // A nested `usage` after the top-level one: the last is nested.
    let both = br#"{"usage":{"prompt_tokens":1},"message":{"usage":{"input_tokens":2}}}"#;
    assert_eq!(fast(both), None);
    assert_eq!(from_json(both), Some(tokens(1, 0)));
    // null, a wrong type, no usage at all, not JSON.
    assert_eq!(fast(br#"{"usage":null}"#), None);
    assert_eq!(fast(br#"{"usage":"lots"}"#), None);
    assert_eq!(fast(br#"{"choices":[]}"#), None);
    assert_eq!(fast(b"\"usage\""), None);
    assert_eq!(fast(b"usage"), None);
    assert_eq!(fast(b""), None);
}

#[test]
fn a_null_usage_is_read_as_none_only_where_no_other_can_be() {
    let chunk = br#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#;
    assert!(matches!(top_level(chunk), Tail::Null));
    assert_eq!(from_json(chunk), None);
    // A usage one level down, by its plain name or one spelled with
    // escapes: the whole parse reads it.
    for nested in [
        &br#"{"message":{"usage":{"input_tokens":3}},"usage":null}"#[..],
        br#"{"response":{"usage":{"input_tokens":3}},"usage":null}"#,
        br#"{"mess\u0061ge":{"usage":{"input_tokens":3}},"usage":null}"#,
    ] {
        assert!(matches!(top_level(nested), Tail::Null));
        assert_eq!(
            from_json(nested),
            Some(tokens(3, 0)),
            "{}",
            String::from_utf8_lossy(nested)
        );
        assert_eq!(from_json(nested), whole(nested));
    }
}

#[test]
fn a_reply_that_quotes_a_usage_cannot_stand_in_for_it() {
    // The reply's text is the model's, and so the client's to steer: a
    // usage written inside it stays a string, whatever its quoting.
    for text in [
        r#"{"usage":{"prompt_tokens":0,"completion_tokens":0}}"#,
        r#"he said "usage":{"prompt_tokens":0}}"#,
        "ends with \"usage",
        "\\\"usage\\\":{}",
    ] {
        let answer = json!({"choices": [{"message": {"content": text}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 2}});
        let body = answer.to_string();
        assert_eq!(fast(body.as_bytes()), Some(tokens(40, 2)), "{body}");
        // With the real usage before the reply, the quoted one is passed
        // over and the real one read.
        let before = format!(
            r#"{{"usage":{{"prompt_tokens":40,"completion_tokens":2}},"reply":{}}}"#,
            serde_json::to_string(text).unwrap()
        );
        assert_eq!(fast(before.as_bytes()), Some(tokens(40, 2)), "{before}");
    }
}

#[test]
fn a_tail_that_is_not_the_end_of_the_outermost_object_is_refused() {
    for body in [
        &br#"{"usage":{"prompt_tokens":1}} trailing"#[..],
        br#"{"usage":{"prompt_tokens":1}}}"#,
        br#"{"usage":{"prompt_tokens":1},"a":}"#,
        br#"{"usage":{"prompt_tokens":1},"a" 1}"#,
        br#"{"usage":{"prompt_tokens":1},a:1}"#,
        br#"{"usage":{"prompt_tokens":1},"a":1"#,
        br#"{"usage":{"prompt_tokens":1}]"#,
        br#"{"usage":{"prompt_tokens":1"#,
        br#"[{"usage":{"prompt_tokens":1}},1]"#,
    ] {
        assert_eq!(fast(body), None, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn decoy_usage_strings_are_passed_over() {
    // Values "usage" are skipped, each by one search further back (the
    // next search ends where the last match began, so 50,000 of them are
    // one pass over the answer).
    let mut body = String::from(r#"{"usage":{"prompt_tokens":5},"list":["#);
    body.push_str(&vec![r#""usage""#; 50_000].join(","));
    body.push_str("]}");
    assert_eq!(fast(body.as_bytes()), Some(tokens(5, 0)));
}

/// Keys that matter to the read, and a few that do not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("usage".to_owned()),
        Just("message".to_owned()),
        Just("response".to_owned()),
        Just("prompt_tokens".to_owned()),
        Just("input_tokens".to_owned()),
        Just("completion_tokens".to_owned()),
        Just("prompt_tokens_details".to_owned()),
        Just("cached_tokens".to_owned()),
        "[a-z]{1,3}",
    ]
}

/// Any JSON value whose strings may quote keys and usages.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..1_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(r#""usage":{"prompt_tokens":1}"#),
            Just("\"usage"),
            Just("usage\\"),
            Just("\\\"usage\\\":"),
            Just("}"),
            Just("plain"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A usage object as providers write it, figures possibly null.
fn usage_like() -> impl Strategy<Value = Value> {
    let figure = prop_oneof![(0u64..100_000).prop_map(Value::from), Just(Value::Null)];
    let details = prop_oneof![
        Just(Value::Null),
        figure
            .clone()
            .prop_map(|cached| json!({"cached_tokens": cached})),
    ];
    (figure.clone(), figure.clone(), figure, details, any::<bool>()).prop_map(
        |(input, output, read, details, anthropic)| {
            if anthropic {
                json!({"input_tokens": input, "cache_read_input_tokens": read, "output_tokens": output})
            } else {
                json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": 1,
                    "prompt_tokens_details": details})
            }
        },
    )
}

/// An answer's text: members in any order, a `usage` among them at any
/// place, with any whitespace between the tokens; and where the members
/// after the `usage` start.
fn answer() -> impl Strategy<Value = (String, usize)> {
    let member = || (key().prop_filter("one usage", |k| k != "usage"), any_json());
    (
        prop::collection::vec(member(), 0..4),
        usage_like(),
        prop::collection::vec(member(), 0..4),
        prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t\r\n")],
    )
        .prop_map(|(before, usage, after, ws)| {
            let text = |members: &[(String, Value)]| -> Vec<String> {
                members
                    .iter()
                    .map(|(k, v)| format!("{ws}{}{ws}:{ws}{v}{ws}", Value::from(k.as_str())))
                    .collect()
            };
            let mut head = text(&before);
            head.push(format!("{ws}\"usage\"{ws}:{ws}{usage}{ws}"));
            let head = format!("{ws}{{{}", head.join(","));
            let mut tail = String::new();
            for member in text(&after) {
                tail.push(',');
                tail.push_str(&member);
            }
            (format!("{head}{tail}}}{ws}"), head.len())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whatever the answer, compact or pretty: what the tail read gives is
    /// the outermost object's `usage`; where the whole parse reads one,
    /// `from_json` reads the same. (The whole parse refuses an answer with a
    /// `message` or `response` of the wrong type; the tail read does not
    /// need them, and reads the usage beside them.)
    #[test]
    fn the_tail_read_agrees_with_the_whole_parse(value in any_json(), pretty in any::<bool>()) {
        let body = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            value.to_string()
        };
        let body = body.as_bytes();
        if let Some(usage) = fast(body) {
            prop_assert_eq!(Some(usage), outermost(body), "{:?}", value);
        }
        if matches!(top_level(body), Tail::Null) {
            prop_assert_eq!(value.get("usage"), Some(&Value::Null), "{:?}", value);
        }
        if let Some(usage) = whole(body) {
            prop_assert_eq!(from_json(body), Some(usage), "{:?}", value);
        } else if fast(body).is_none() {
            prop_assert_eq!(from_json(body), None, "{:?}", value);
        }
    }

    /// An answer with one top-level `usage`, wherever it sits: the tail
    /// read reads it whenever no `usage` key follows it, and never reads
    /// anything else.
    #[test]
    fn the_tail_read_finds_the_usage_wherever_it_sits((body, tail) in answer()) {
        let text = body.as_str();
        let body = body.as_bytes();
        let expected = outermost(body);
        prop_assert!(expected.is_some(), "{}", text);
        match fast(body) {
            Some(usage) => prop_assert_eq!(Some(usage), expected, "{}", text),
            None => prop_assert!(text[tail..].contains("usage"), "missed: {}", text),
        }
        if let Some(usage) = whole(body) {
            prop_assert_eq!(Some(usage), expected);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = fast(&bytes);
        let mut framed = br#"{"usage":"#.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = fast(&framed);
    }
}
