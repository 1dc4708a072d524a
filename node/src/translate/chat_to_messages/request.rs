//! An OpenAI chat request as an Anthropic Messages request.
//!
//! Carried over: `messages` (see `messages.rs`), `max_tokens` or
//! `max_completion_tokens` (Anthropic requires one: the caller's default
//! otherwise), `stop`, `temperature` (Anthropic's range is 0 to 1, OpenAI's
//! 0 to 2: above 1 is an error, not a clamp), `top_p`, `user` (as
//! `metadata.user_id`), `tools`, `tool_choice`, `parallel_tool_calls: false`
//! (as `disable_parallel_tool_use`) and `stream`.
//!
//! Ignored, because leaving them out changes nothing in the answer:
//! `model` (the target's model is used), `store` (OpenAI's own retention;
//! Anthropic keeps nothing to store), `metadata` (OpenAI's dashboard tags),
//! `stream_options` (Anthropic always reports usage;
//! [`Translated::include_usage`] tells the stream translator whether the
//! client wants it), and the defaults `n: 1`, `logprobs: false`,
//! `top_logprobs: 0`, `parallel_tool_calls: true`, `frequency_penalty: 0`,
//! `presence_penalty: 0`, `logit_bias: {}`, `modalities: ["text"]`,
//! `response_format: {"type": "text"}` and `service_tier: "auto"`. A field
//! set to `null` counts as absent.
//!
//! Everything else is a [`TranslateError`] naming the field: `n` above 1,
//! `logprobs`, `response_format` (JSON modes), `logit_bias`, the penalties,
//! `seed`, `audio`, `modalities`, `prediction`, other `service_tier`s
//! (billing-relevant), the legacy `functions` / `function_call`, and any
//! field this build does not know (`reasoning_effort`, say): never a silent
//! drop.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Translated;
use super::messages;
use crate::translate::TranslateError;

/// OpenAI chat request body -> Anthropic Messages request body for `model`
/// (the provider's model name). `default_max_tokens` when the client set
/// neither `max_tokens` nor `max_completion_tokens` (Anthropic requires
/// one).
pub fn request(
    body: &[u8],
    model: &str,
    default_max_tokens: u32,
) -> Result<Translated, TranslateError> {
    let chat: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        TranslateError::new(
            "",
            format!(
                "not a JSON object (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let (mut max_tokens, mut max_completion_tokens) = (None, None);
    let mut include_usage = false;
    let mut tool_choice = None;
    let mut parallel = true;
    let mut converted = None;
    for (key, value) in &chat {
        if value.is_null() {
            continue;
        }
        let key = key.as_str();
        match key {
            "model" | "store" | "metadata" => {}
            "messages" => converted = Some(messages::convert(value)?),
            "max_tokens" => max_tokens = Some(positive(value, key)?),
            "max_completion_tokens" => max_completion_tokens = Some(positive(value, key)?),
            "stop" => {
                let stops = match value {
                    Value::String(s) => vec![Value::String(s.clone())],
                    Value::Array(a) if a.iter().all(Value::is_string) => a.clone(),
                    _ => return Err(TranslateError::new(key, "must be a string or strings")),
                };
                if !stops.is_empty() {
                    out.insert("stop_sequences".into(), Value::Array(stops));
                }
            }
            "temperature" => match value.as_f64() {
                Some(t) if (0.0..=1.0).contains(&t) => {
                    out.insert(key.into(), value.clone());
                }
                Some(_) => {
                    return Err(TranslateError::new(
                        key,
                        "must be between 0 and 1 for an Anthropic model",
                    ));
                }
                None => return Err(TranslateError::new(key, "must be a number")),
            },
            "top_p" => {
                if !value.is_number() {
                    return Err(TranslateError::new(key, "must be a number"));
                }
                out.insert(key.into(), value.clone());
            }
            "user" => {
                let Value::String(user) = value else {
                    return Err(TranslateError::new(key, "must be a string"));
                };
                out.insert("metadata".into(), json!({"user_id": user}));
            }
            "stream" => {
                let Value::Bool(_) = value else {
                    return Err(TranslateError::new(key, "must be a boolean"));
                };
                out.insert(key.into(), value.clone());
            }
            "stream_options" => {
                include_usage = value.get("include_usage").and_then(Value::as_bool) == Some(true);
            }
            "tools" => {
                let tools = tools(value)?;
                // An empty list says nothing (and would make a tool_choice
                // invalid).
                if tools.as_array().is_some_and(|t| !t.is_empty()) {
                    out.insert(key.into(), tools);
                }
            }
            "tool_choice" => tool_choice = Some(choice(value)?),
            "parallel_tool_calls" => match value {
                Value::Bool(p) => parallel = *p,
                _ => return Err(TranslateError::new(key, "must be a boolean")),
            },
            // The harmless defaults (see the module doc), else an error.
            "n" if value.as_u64() == Some(1) => {}
            "logprobs" if value == &Value::Bool(false) => {}
            "top_logprobs" if value.as_u64() == Some(0) => {}
            "frequency_penalty" | "presence_penalty" if value.as_f64() == Some(0.0) => {}
            "logit_bias" if value.as_object().is_some_and(Map::is_empty) => {}
            "modalities" if value == &json!(["text"]) => {}
            "response_format" if value == &json!({"type": "text"}) => {}
            "service_tier" if value == "auto" => {}
            "n" | "logprobs" | "top_logprobs" | "frequency_penalty" | "presence_penalty"
            | "logit_bias" | "modalities" | "response_format" | "service_tier" | "seed"
            | "audio" | "prediction" | "functions" | "function_call" => {
                return Err(TranslateError::new(
                    key,
                    "has no counterpart in the Anthropic Messages API",
                ));
            }
            _ => {
                return Err(TranslateError::new(
                    key,
                    "is not a chat completions field this gateway can translate for an Anthropic model",
                ));
            }
        }
    }
    let Some(converted) = converted else {
        return Err(TranslateError::new("messages", "is required"));
    };
    let max = max_completion_tokens
        .or(max_tokens)
        .unwrap_or(u64::from(default_max_tokens));
    out.insert("max_tokens".into(), max.into());
    if let Some(system) = converted.system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(converted.messages));
    // Anthropic refuses a tool_choice without tools, and `none` takes no
    // parallelism flag.
    if !parallel && out.contains_key("tools") {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Value::Object(choice) = choice
            && choice.get("type").and_then(Value::as_str) != Some("none")
        {
            choice.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    let body = serde_json::to_vec(&out).map_err(|e| TranslateError::new("", e.to_string()))?;
    Ok(Translated {
        body: Bytes::from(body),
        include_usage,
    })
}

/// A token count: a positive integer.
fn positive(value: &Value, key: &str) -> Result<u64, TranslateError> {
    match value.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(TranslateError::new(key, "must be a positive integer")),
    }
}

/// OpenAI function tools as Anthropic tools. A function's `strict` flag is
/// carried over when set (Anthropic's tools have the same flag for
/// schema-conforming input), not dropped.
fn tools(value: &Value) -> Result<Value, TranslateError> {
    let Value::Array(tools) = value else {
        return Err(TranslateError::new("tools", "must be an array"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (k, tool) in tools.iter().enumerate() {
        let at = format!("tools[{k}]");
        let kind = tool.get("type").and_then(Value::as_str);
        if kind != Some("function") {
            return Err(TranslateError::new(
                format!("{at}.type"),
                "only function tools have an Anthropic counterpart",
            ));
        }
        let Some(Value::Object(function)) = tool.get("function") else {
            return Err(TranslateError::new(
                format!("{at}.function"),
                "must be an object",
            ));
        };
        let mut anthropic = Map::new();
        for (key, value) in function {
            match (key.as_str(), value) {
                (_, Value::Null) | ("strict", Value::Bool(false)) => {}
                ("name" | "description", Value::String(_)) | ("strict", Value::Bool(true)) => {
                    anthropic.insert(key.clone(), value.clone());
                }
                ("parameters", Value::Object(_)) => {
                    anthropic.insert("input_schema".into(), value.clone());
                }
                ("name" | "description" | "parameters" | "strict", _) => {
                    return Err(TranslateError::new(
                        format!("{at}.function.{key}"),
                        "has the wrong type",
                    ));
                }
                _ => {
                    return Err(TranslateError::new(
                        format!("{at}.function.{key}"),
                        "has no counterpart in the Anthropic Messages API",
                    ));
                }
            }
        }
        if !anthropic.contains_key("name") {
            return Err(TranslateError::new(
                format!("{at}.function.name"),
                "is required",
            ));
        }
        anthropic
            .entry("input_schema")
            .or_insert_with(|| json!({"type": "object", "properties": {}}));
        out.push(Value::Object(anthropic));
    }
    Ok(Value::Array(out))
}

/// OpenAI's `tool_choice` as Anthropic's.
fn choice(value: &Value) -> Result<Value, TranslateError> {
    match value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "none" => Ok(json!({"type": "none"})),
            "required" => Ok(json!({"type": "any"})),
            _ => Err(TranslateError::new(
                "tool_choice",
                "must be auto, none, required or a function",
            )),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
            {
                Some(name) => Ok(json!({"type": "tool", "name": name})),
                None => Err(TranslateError::new(
                    "tool_choice.function.name",
                    "must be a string",
                )),
            }
        }
        _ => Err(TranslateError::new(
            "tool_choice",
            "must be auto, none, required or a function (allowed_tools and custom tools have no Anthropic counterpart)",
        )),
    }
}
