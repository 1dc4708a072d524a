//! Anthropic Messages request -> OpenAI chat completions request.
//!
//! The body is walked as JSON rather than decoded into structs so every
//! refusal names the exact path (`messages[3].content[1].type`) and every
//! field the walk does not know is refused, not dropped.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::content::{text_block, translate_message};
use super::{TranslateError, not_json, only, string};

/// Top-level fields translated below; any other is refused by name.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
];

/// Anthropic Messages request body -> OpenAI chat request body for `model`
/// (the provider's model name, which replaces the client's `model`). When
/// the request streams, the chat request asks
/// `stream_options: {"include_usage": true}` so the final usage is right.
///
/// A `tool_result` block becomes a `tool` message placed before the rest of
/// its user message (OpenAI wants tool messages right after the assistant's
/// `tool_calls`); a result with `is_error: true` has its content prefixed
/// with `"Error: "`, since OpenAI tool messages have no error flag.
/// `cache_control` on blocks and tools is a caching hint with no effect on
/// the answer and is ignored.
pub fn request(body: &[u8], model: &str) -> Result<Bytes, TranslateError> {
    let body: Value = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    let Value::Object(body) = body else {
        return Err(TranslateError::new("", "the body must be a JSON object"));
    };
    for (key, value) in &body {
        refuse_untranslatable(key, value)?;
    }
    let field = |name: &str| body.get(name).filter(|v| !v.is_null());

    let mut chat = Map::new();
    match field("model") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(TranslateError::new("model", "must be a string")),
        None => return Err(TranslateError::new("model", "is required")),
    }
    chat.insert("model".into(), json!(model));

    let mut messages = Vec::new();
    if let Some(system) = field("system") {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(history) = field("messages") else {
        return Err(TranslateError::new("messages", "is required"));
    };
    let Value::Array(history) = history else {
        return Err(TranslateError::new("messages", "must be an array"));
    };
    for (i, message) in history.iter().enumerate() {
        translate_message(message, &format!("messages[{i}]"), &mut messages)?;
    }
    // Anthropic continues a final assistant message (a prefill, often used
    // to force a format); a chat target would start a new answer instead.
    if let Some(last) = history.last()
        && last.get("role").and_then(Value::as_str) == Some("assistant")
    {
        return Err(TranslateError::new(
            format!("messages[{}].role", history.len() - 1),
            "a final assistant message (a prefill the answer continues) has no counterpart in OpenAI chat completions",
        ));
    }
    chat.insert("messages".into(), Value::Array(messages));

    match field("max_tokens") {
        Some(n @ Value::Number(_)) if n.is_u64() => {
            chat.insert("max_tokens".into(), n.clone());
        }
        Some(_) => {
            return Err(TranslateError::new(
                "max_tokens",
                "must be a non-negative integer",
            ));
        }
        None => return Err(TranslateError::new("max_tokens", "is required")),
    }
    for name in ["temperature", "top_p"] {
        match field(name) {
            Some(n @ Value::Number(_)) => {
                chat.insert(name.into(), n.clone());
            }
            Some(_) => return Err(TranslateError::new(name, "must be a number")),
            None => {}
        }
    }
    if let Some(stops) = field("stop_sequences") {
        let stops = strings(stops, "stop_sequences")?;
        if !stops.is_empty() {
            chat.insert("stop".into(), json!(stops));
        }
    }
    if let Some(metadata) = field("metadata")
        && let Some(user) = user_id(metadata)?
    {
        chat.insert("user".into(), json!(user));
    }
    let tools = match field("tools") {
        Some(tools) => translate_tools(tools)?,
        None => Vec::new(),
    };
    if let Some(choice) = field("tool_choice") {
        let (choice, parallel) = tool_choice(choice)?;
        // Without tools, "auto" and "none" both mean no tool call, and
        // OpenAI refuses a tool_choice without tools: leaving them out
        // changes nothing. "any" and a named tool are passed on for the
        // target to refuse, as Anthropic would.
        let moot = tools.is_empty() && matches!(choice.as_str(), Some("auto" | "none"));
        if !moot {
            chat.insert("tool_choice".into(), choice);
            if let Some(parallel) = parallel {
                chat.insert("parallel_tool_calls".into(), json!(parallel));
            }
        }
    }
    if !tools.is_empty() {
        chat.insert("tools".into(), Value::Array(tools));
    }
    match field("stream") {
        Some(Value::Bool(stream)) => {
            chat.insert("stream".into(), json!(stream));
            if *stream {
                chat.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        Some(_) => return Err(TranslateError::new("stream", "must be a boolean")),
        None => {}
    }
    serde_json::to_vec(&chat)
        .map(Bytes::from)
        .map_err(|e| TranslateError::new("", format!("cannot write the chat request: {e}")))
}

/// Refuses a top-level field that is unknown or has no OpenAI counterpart.
fn refuse_untranslatable(key: &str, value: &Value) -> Result<(), TranslateError> {
    if value.is_null() || KNOWN.contains(&key) {
        return Ok(());
    }
    let why = match key {
        // Disabled thinking is the default: it changes nothing.
        "thinking" if value.get("type").and_then(Value::as_str) == Some("disabled") => {
            return Ok(());
        }
        "thinking" => "extended thinking has no counterpart in OpenAI chat completions",
        "top_k" => "top_k has no counterpart in OpenAI chat completions",
        "service_tier" => "service_tier changes billing and has no faithful OpenAI counterpart",
        _ => "unknown field: it cannot be translated to OpenAI chat completions",
    };
    Err(TranslateError::new(key, why))
}

/// `system` as one string: a string, or text blocks joined by blank lines.
fn system_text(system: &Value) -> Result<String, TranslateError> {
    match system {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                texts.push(text_block(block, &format!("system[{i}]"))?);
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(TranslateError::new(
            "system",
            "must be a string or an array of text blocks",
        )),
    }
}

/// `tools` as chat function tools. Server tools (any `type` but `custom`)
/// run at Anthropic and have no chat counterpart.
fn translate_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(tools) = tools else {
        return Err(TranslateError::new("tools", "must be an array"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let obj = tool
            .as_object()
            .ok_or_else(|| TranslateError::new(&path, "must be an object"))?;
        match obj.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "custom" => {}
            Some(_) => {
                return Err(TranslateError::new(
                    format!("{path}.type"),
                    "server tools run at Anthropic and have no OpenAI counterpart",
                ));
            }
        }
        only(
            obj,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
            ],
            &path,
        )?;
        let mut function = Map::new();
        function.insert("name".into(), json!(string(obj, "name", &path)?));
        match obj.get("description") {
            None | Some(Value::Null) => {}
            Some(Value::String(d)) => {
                function.insert("description".into(), json!(d));
            }
            Some(_) => {
                return Err(TranslateError::new(
                    format!("{path}.description"),
                    "must be a string",
                ));
            }
        }
        match obj.get("input_schema") {
            Some(schema @ Value::Object(_)) => {
                function.insert("parameters".into(), schema.clone());
            }
            _ => {
                return Err(TranslateError::new(
                    format!("{path}.input_schema"),
                    "must be an object",
                ));
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` as the chat `tool_choice`, and `parallel_tool_calls: false`
/// when parallel use is disabled.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), TranslateError> {
    let obj = choice
        .as_object()
        .ok_or_else(|| TranslateError::new("tool_choice", "must be an object"))?;
    only(
        obj,
        &["type", "name", "disable_parallel_tool_use"],
        "tool_choice",
    )?;
    let parallel = match obj.get("disable_parallel_tool_use") {
        None | Some(Value::Null | Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(false),
        Some(_) => {
            return Err(TranslateError::new(
                "tool_choice.disable_parallel_tool_use",
                "must be a boolean",
            ));
        }
    };
    let kind = obj.get("type").and_then(Value::as_str);
    if kind != Some("tool") && obj.get("name").is_some_and(|n| !n.is_null()) {
        return Err(TranslateError::new(
            "tool_choice.name",
            "only a choice of type \"tool\" names a tool",
        ));
    }
    let choice = match kind {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = string(obj, "name", "tool_choice")?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(TranslateError::new(
                "tool_choice.type",
                "must be \"auto\", \"any\", \"none\" or \"tool\"",
            ));
        }
    };
    Ok((choice, parallel))
}

/// `metadata.user_id`, the only metadata Anthropic defines.
fn user_id(metadata: &Value) -> Result<Option<&str>, TranslateError> {
    let obj = metadata
        .as_object()
        .ok_or_else(|| TranslateError::new("metadata", "must be an object"))?;
    only(obj, &["user_id"], "metadata")?;
    match obj.get("user_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(user)) => Ok(Some(user)),
        Some(_) => Err(TranslateError::new("metadata.user_id", "must be a string")),
    }
}

/// An array of strings.
fn strings<'a>(value: &'a Value, path: &str) -> Result<Vec<&'a str>, TranslateError> {
    let Value::Array(items) = value else {
        return Err(TranslateError::new(path, "must be an array of strings"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .ok_or_else(|| TranslateError::new(format!("{path}[{i}]"), "must be a string"))
        })
        .collect()
}
