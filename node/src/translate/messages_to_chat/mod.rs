//! A client speaking the Anthropic Messages API, a target speaking OpenAI
//! chat completions: the request goes out as a chat request, the answer
//! (plain or streamed) comes back as a Message.
//!
//! - [`request`]: Messages request body -> chat request body (its
//!   messages and content blocks in `content.rs`).
//! - [`response`]: chat completion -> Message.
//! - [`Stream`]: chat SSE chunks -> Messages SSE events, event by event.
//!
//! What has no faithful counterpart (extended thinking, `top_k`, document
//! blocks, server tools, an unknown field) is a [`TranslateError`] naming
//! the JSON path, never a silent drop. Only what has no effect on the
//! answer is accepted and ignored: `cache_control` on blocks and tools (a
//! caching hint), and `thinking: {"type": "disabled"}` (the default).

mod content;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use request::request;
pub use response::response;
pub use stream::Stream;

use serde_json::{Map, Value, json};

use super::TranslateError;

/// The Anthropic `stop_reason` for an OpenAI `finish_reason`. A missing or
/// unknown reason reads as a normal end of turn, the closest Anthropic has.
fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic `usage` from an OpenAI `usage` object. OpenAI counts cached
/// prompt tokens inside `prompt_tokens`; Anthropic counts them apart, so
/// they are taken out of `input_tokens` and reported as
/// `cache_read_input_tokens` (only when the upstream reported them).
fn usage(openai: Option<&Value>) -> Map<String, Value> {
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = count(openai.and_then(|u| u.get("prompt_tokens")));
    let completion = count(openai.and_then(|u| u.get("completion_tokens")));
    let cached = openai
        .and_then(|u| u.get("prompt_tokens_details"))
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64);
    let mut usage = Map::new();
    usage.insert(
        "input_tokens".into(),
        json!(prompt.saturating_sub(cached.unwrap_or(0))),
    );
    usage.insert("output_tokens".into(), json!(completion));
    if let Some(cached) = cached {
        usage.insert("cache_read_input_tokens".into(), json!(cached));
    }
    usage
}

/// A body that is not JSON at all, as a [`TranslateError`] on the whole body.
fn not_json(error: &serde_json::Error) -> TranslateError {
    TranslateError::new("", format!("the body is not valid JSON: {error}"))
}

/// The required string `key` of `obj`.
fn string<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, TranslateError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::new(format!("{path}.{key}"), "must be a string"))
}

/// Refuses the first key of `obj` not in `allowed`, by its path.
fn only(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), TranslateError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(TranslateError::new(
            format!("{path}.{key}"),
            "unknown field: it cannot be translated to OpenAI chat completions",
        )),
        None => Ok(()),
    }
}
