//! The messages of a Messages request as chat messages: each content
//! block translated, or refused by its path.

use serde_json::{Map, Value, json};

use super::{TranslateError, only, string};

/// Appends the chat messages for one Messages message.
pub(super) fn translate_message(
    message: &Value,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let Value::Object(message) = message else {
        return Err(TranslateError::new(path, "must be an object"));
    };
    only(message, &["role", "content"], path)?;
    let role = message.get("role").and_then(Value::as_str);
    let content = message
        .get("content")
        .ok_or_else(|| TranslateError::new(format!("{path}.content"), "is required"))?;
    match role {
        Some("user") => user_message(content, path, out),
        Some("assistant") => assistant_message(content, path, out),
        _ => Err(TranslateError::new(
            format!("{path}.role"),
            "must be \"user\" or \"assistant\"",
        )),
    }
}

/// A user message: its `tool_result` blocks as `tool` messages first, then
/// the rest as one user message (a plain string when it is a single text).
fn user_message(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let blocks = match content {
        Value::String(text) => {
            out.push(json!({"role": "user", "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(content_type_error(path)),
    };
    let mut parts = Vec::new();
    let mut had_results = false;
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block_type(block, &path)? {
            "text" => parts.push(json!({"type": "text", "text": text_block(block, &path)?})),
            "image" => parts.push(image_part(block, &path)?),
            "tool_result" => {
                out.push(tool_result(block, &path)?);
                had_results = true;
            }
            "tool_use" => {
                return Err(TranslateError::new(
                    format!("{path}.type"),
                    "a tool_use block belongs in an assistant message",
                ));
            }
            other => return Err(unsupported_block(other, &path)),
        }
    }
    if parts.is_empty() && had_results {
        return Ok(());
    }
    out.push(json!({"role": "user", "content": single_text_or_parts(parts)}));
    Ok(())
}

/// An assistant message: its text as `content` (null when there is none
/// beside tool calls), its `tool_use` blocks as `tool_calls`.
fn assistant_message(
    content: &Value,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        Value::String(text) => {
            out.push(json!({"role": "assistant", "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(content_type_error(path)),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block_type(block, &path)? {
            "text" => parts.push(json!({"type": "text", "text": text_block(block, &path)?})),
            "tool_use" => calls.push(tool_call(block, &path)?),
            "image" | "tool_result" => {
                return Err(TranslateError::new(
                    format!("{path}.type"),
                    "an OpenAI assistant message cannot hold this block",
                ));
            }
            other => return Err(unsupported_block(other, &path)),
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if parts.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        single_text_or_parts(parts)
    };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

/// One text part as a plain string, none as `""`, several as the parts.
fn single_text_or_parts(mut parts: Vec<Value>) -> Value {
    match parts.len() {
        0 => json!(""),
        1 if parts[0]["type"] == "text" => parts.swap_remove(0)["text"].take(),
        _ => Value::Array(parts),
    }
}

/// A block's `type`, which every block must have.
fn block_type<'a>(block: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    if !block.is_object() {
        return Err(TranslateError::new(
            path,
            "a content block must be an object",
        ));
    }
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::new(format!("{path}.type"), "must be a string"))
}

/// The refusal for a block type that has no chat counterpart.
fn unsupported_block(kind: &str, path: &str) -> TranslateError {
    let why = match kind {
        "thinking"
        | "redacted_thinking"
        | "document"
        | "search_result"
        | "server_tool_use"
        | "web_search_tool_result"
        | "container_upload"
        | "mcp_tool_use"
        | "mcp_tool_result" => {
            format!("{kind} blocks have no counterpart in OpenAI chat completions")
        }
        _ => format!("unknown content block type {kind:?}"),
    };
    TranslateError::new(format!("{path}.type"), why)
}

fn content_type_error(path: &str) -> TranslateError {
    TranslateError::new(
        format!("{path}.content"),
        "must be a string or an array of content blocks",
    )
}

/// The text of a `text` block. `cache_control` is ignored (a caching hint);
/// `citations` are accepted only when empty, since chat has no place for them.
pub(super) fn text_block(block: &Value, path: &str) -> Result<String, TranslateError> {
    let obj = block
        .as_object()
        .ok_or_else(|| TranslateError::new(path, "a content block must be an object"))?;
    if obj.get("type").and_then(Value::as_str) != Some("text") {
        return Err(TranslateError::new(
            format!("{path}.type"),
            "only text blocks are accepted here",
        ));
    }
    only(obj, &["type", "text", "cache_control", "citations"], path)?;
    match obj.get("citations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(c)) if c.is_empty() => {}
        Some(_) => {
            return Err(TranslateError::new(
                format!("{path}.citations"),
                "citations have no counterpart in OpenAI chat completions",
            ));
        }
    }
    string(obj, "text", path).map(str::to_owned)
}

/// An `image` block as an `image_url` part (a `data:` URL for base64).
fn image_part(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let obj = block
        .as_object()
        .ok_or_else(|| TranslateError::new(path, "must be an object"))?;
    only(obj, &["type", "source", "cache_control"], path)?;
    let path = format!("{path}.source");
    let source = obj
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| TranslateError::new(&path, "must be an object"))?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            only(source, &["type", "media_type", "data"], &path)?;
            let media_type = string(source, "media_type", &path)?;
            let data = string(source, "data", &path)?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => {
            only(source, &["type", "url"], &path)?;
            string(source, "url", &path)?.to_owned()
        }
        _ => {
            return Err(TranslateError::new(
                format!("{path}.type"),
                "only base64 and url image sources can be translated",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `tool_result` block as a `tool` message. Text blocks in its content are
/// joined by blank lines; an error result is prefixed with `"Error: "`.
fn tool_result(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let obj = block
        .as_object()
        .ok_or_else(|| TranslateError::new(path, "must be an object"))?;
    only(
        obj,
        &[
            "type",
            "tool_use_id",
            "content",
            "is_error",
            "cache_control",
        ],
        path,
    )?;
    let id = string(obj, "tool_use_id", path)?;
    let mut text = match obj.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, block) in blocks.iter().enumerate() {
                texts.push(text_block(block, &format!("{path}.content[{k}]"))?);
            }
            texts.join("\n\n")
        }
        Some(_) => return Err(content_type_error(path)),
    };
    match obj.get("is_error") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Bool(true)) => text.insert_str(0, "Error: "),
        Some(_) => {
            return Err(TranslateError::new(
                format!("{path}.is_error"),
                "must be a boolean",
            ));
        }
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// A `tool_use` block as a chat `tool_calls` entry (input as a JSON string).
fn tool_call(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let obj = block
        .as_object()
        .ok_or_else(|| TranslateError::new(path, "must be an object"))?;
    only(obj, &["type", "id", "name", "input", "cache_control"], path)?;
    let id = string(obj, "id", path)?;
    let name = string(obj, "name", path)?;
    let input = match obj.get("input") {
        Some(input @ Value::Object(_)) => input.to_string(),
        _ => {
            return Err(TranslateError::new(
                format!("{path}.input"),
                "must be an object",
            ));
        }
    };
    Ok(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input}}))
}
