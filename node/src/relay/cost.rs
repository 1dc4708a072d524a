//! The cost written into a stream's usage as it passes the relay, as
//! OpenRouter does: `"usage": {..., "cost": 0.000123}`.
//!
//! The events are the client's, after any translation, and the ones
//! rewritten are those whose JSON carries a final usage object: a top-level
//! `usage` (an OpenAI chat chunk's with `stream_options.include_usage`, an
//! Anthropic `message_delta`'s), or the Responses API's `response.usage`
//! (in `response.completed`, where the whole response comes with its
//! usage). `message_start`'s `message.usage` holds only the input so far
//! and is left as it is.
//! Only the usage object changes: `,"cost":…` is spliced in before its
//! closing brace, so everything else in the batch, that event's other
//! fields included, goes out byte for byte; a usage that already has a
//! `cost` (an upstream that is itself a router) has it replaced by
//! Meridian's figure.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::usage::{self, Cost};

/// The event's top-level `usage`, or its `response.usage`, where it sits
/// in the line.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
}

/// A Responses-API event's `response` object.
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

/// `events` (whole SSE events) with `cost` in each top-level `usage`
/// object; `None` when no event has one, and the batch goes out as it is.
pub fn with_cost(events: &[u8], cost: Cost) -> Option<Bytes> {
    if !usage::mentions_usage(events) {
        return None;
    }
    let cost = cost.to_string();
    let mut out: Option<BytesMut> = None;
    // Bytes of `events` already copied to `out`.
    let mut copied = 0;
    let mut start = 0;
    while start < events.len() {
        let end = memchr::memchr(b'\n', &events[start..]).map_or(events.len(), |i| start + i + 1);
        let line = &events[start..end];
        if let Some((at, usage)) = usage_in(line, start)
            && let Some(priced) = priced(usage, &cost)
        {
            let out = out.get_or_insert_with(|| BytesMut::with_capacity(events.len() + 32));
            out.extend_from_slice(&events[copied..at]);
            out.extend_from_slice(priced.as_bytes());
            copied = at + usage.len();
        }
        start = end;
    }
    let mut out = out?;
    out.extend_from_slice(&events[copied..]);
    Some(out.freeze())
}

/// Where the top-level `usage` object of a `data:` line (at `offset` in the
/// batch) starts in the batch, and its text.
fn usage_in(line: &[u8], offset: usize) -> Option<(usize, &str)> {
    let data = line.strip_prefix(b"data:")?;
    if !usage::mentions_usage(data) {
        return None;
    }
    let json = data.trim_ascii();
    if usage::surely_null(json) {
        return None;
    }
    let top = serde_json::from_slice::<Top<'_>>(json).ok()?;
    let usage = top
        .usage
        .or_else(|| top.response.and_then(|r| r.usage))?
        .get();
    if !usage.starts_with('{') {
        return None;
    }
    // The raw value borrows from `line`: its place is its address's
    // distance from the line's.
    let at = usage.as_ptr() as usize - line.as_ptr() as usize;
    Some((offset + at, usage))
}

/// The usage object with `cost` as its last field.
fn priced(usage: &str, cost: &str) -> Option<String> {
    let body = usage.strip_prefix('{')?.strip_suffix('}')?;
    if memchr::memmem::find(body.as_bytes(), b"\"cost\"").is_some() {
        // Rare: rebuilt without the upstream's own figure (its keys in
        // serde_json's order), then priced like any other.
        let mut fields =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(usage).ok()?;
        fields.remove("cost");
        let rebuilt = serde_json::to_string(&fields).ok()?;
        return priced_without_cost(&rebuilt, cost);
    }
    priced_without_cost(usage, cost)
}

fn priced_without_cost(usage: &str, cost: &str) -> Option<String> {
    let body = usage.strip_prefix('{')?.strip_suffix('}')?;
    let comma = if body.trim().is_empty() { "" } else { "," };
    Some(format!("{{{body}{comma}\"cost\":{cost}}}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::routing::Price;
    use crate::usage::Usage;
    use proptest::prelude::*;

    fn cost() -> Cost {
        let usage = Usage {
            prompt_tokens: 12,
            completion_tokens: 3,
            cached_tokens: 0,
        };
        let price = Price {
            input_per_mtok: 0.07,
            output_per_mtok: 0.25,
            cached_input_per_mtok: None,
        };
        usage.cost(&price).unwrap()
    }

    fn text(b: Option<Bytes>) -> Option<String> {
        b.map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn the_openai_usage_chunk_gets_the_cost() {
        let events = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n\
data: [DONE]\n\n";
        let out = text(with_cost(events.as_bytes(), cost())).unwrap();
        assert_eq!(
            out,
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,\"cost\":0.00000159}}\n\n\
data: [DONE]\n\n"
        );
        let usage: serde_json::Value =
            serde_json::from_str(out.lines().nth(2).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(usage["usage"]["cost"], serde_json::json!(0.00000159));
    }

    #[test]
    fn the_anthropic_message_delta_gets_the_cost_and_message_start_does_not() {
        let events = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12}}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\": { \"output_tokens\": 3 } }\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
        let out = text(with_cost(events.as_bytes(), cost())).unwrap();
        assert_eq!(
            out,
            events.replace(
                "{ \"output_tokens\": 3 }",
                "{ \"output_tokens\": 3 ,\"cost\":0.00000159}"
            )
        );
    }

    #[test]
    fn nothing_to_price_is_left_alone() {
        for events in [
            "data: {\"choices\":[],\"usage\":null}\n\n",
            "data: {\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n",
            "data: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n",
            "data: {\"text\":\"the word \\\"usage\\\" in a string\"}\n\n",
            "data: not json \"usage\"\n\n",
            "data: {\"usage\":[1]}\n\n",
        ] {
            assert_eq!(with_cost(events.as_bytes(), cost()), None, "{events}");
        }
        // An empty usage object still gets its cost.
        assert_eq!(
            text(with_cost(b"data: {\"usage\":{}}\n\n", cost())).unwrap(),
            "data: {\"usage\":{\"cost\":0.00000159}}\n\n"
        );
    }

    #[test]
    fn the_responses_completed_event_gets_the_cost_in_its_response_usage() {
        let events = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"up~resp_1\",\"usage\":{\"input_tokens\":12,\"output_tokens\":3,\"total_tokens\":15}}}\n\n";
        let out = text(with_cost(events.as_bytes(), cost())).unwrap();
        assert_eq!(
            out,
            events.replace(
                "\"total_tokens\":15}",
                "\"total_tokens\":15,\"cost\":0.00000159}"
            )
        );
    }

    #[test]
    fn an_upstream_cost_is_replaced() {
        let out = text(with_cost(
            b"data: {\"usage\":{\"prompt_tokens\":12,\"cost\":9.5,\"completion_tokens\":3}}\n\n",
            cost(),
        ))
        .unwrap();
        let line: serde_json::Value =
            serde_json::from_str(out.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(
            line["usage"],
            serde_json::json!({"prompt_tokens": 12, "completion_tokens": 3, "cost": 0.00000159})
        );
    }

    /// Events that carry no usage: any text, any JSON without the word.
    fn other_event() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,20}".prop_map(|t| format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n"
            )),
            "[a-z_]{1,12}".prop_map(|t| format!("event: {t}\ndata: {{\"type\":\"{t}\"}}\n\n")),
            Just("data: [DONE]\n\n".to_owned()),
            Just(": keep-alive\r\n\r\n".to_owned()),
            Just("data: {\"choices\":[],\"usage\":null}\n\n".to_owned()),
        ]
    }

    proptest! {
        /// Every event but the usage one goes out byte for byte, in order;
        /// the usage one differs only by its cost.
        #[test]
        fn only_the_usage_event_changes(
            before in proptest::collection::vec(other_event(), 0..6),
            after in proptest::collection::vec(other_event(), 0..6),
            prompt: u32, completion: u32,
            with_usage: bool,
        ) {
            let usage_event = format!(
                "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion}}}}}\n\n"
            );
            let mut events = before.concat();
            if with_usage {
                events.push_str(&usage_event);
            }
            events.push_str(&after.concat());
            let out = text(with_cost(events.as_bytes(), cost()));
            if !with_usage {
                prop_assert_eq!(out, None);
            } else {
                let priced = usage_event.replace("}}\n\n", ",\"cost\":0.00000159}}\n\n");
                let expected = format!("{}{}{}", before.concat(), priced, after.concat());
                prop_assert_eq!(out, Some(expected));
            }
        }
    }
}
