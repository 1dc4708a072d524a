//! A chat request's `messages` as Anthropic's `system` and `messages`.
//!
//! - `system` and `developer` messages, wherever they stand, become the
//!   top-level `system`: their texts joined by a blank line, or text blocks
//!   when any part carries a `cache_control` (so prompt caching works
//!   through the translation).
//! - `user` content (a string or parts: `text`, `image_url`) becomes text
//!   and image blocks; an image is a `data:` URL (base64 source) or an
//!   http(s) URL (url source). Other parts (`input_audio`, `file`) have no
//!   counterpart: an error naming the part's `type`.
//! - `assistant` content and `tool_calls` become text and `tool_use`
//!   blocks, the arguments parsed (they must be a JSON object).
//! - `tool` messages become `tool_result` blocks of a user message.
//! - Consecutive messages of one role (tool results and the user message
//!   after them, say) are merged into one, because Anthropic wants the roles
//!   to alternate.
//!
//! Empty text is left out (Anthropic refuses empty text blocks; an empty
//! string says nothing). A message's `name` is ignored: Anthropic has no
//! participant names, and the label is advisory in OpenAI's API too.
//! A `cache_control` on a part is carried over to its block. Any other
//! field is an error naming it.

use serde_json::{Map, Value, json};

use crate::translate::TranslateError;

/// Anthropic's `system` (absent when no message gave one) and `messages`.
pub(super) struct Converted {
    pub system: Option<Value>,
    pub messages: Vec<Value>,
}

/// One Anthropic message being built.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// Converts the chat `messages` array.
pub(super) fn convert(messages: &Value) -> Result<Converted, TranslateError> {
    let Value::Array(messages) = messages else {
        return Err(TranslateError::new("messages", "must be an array"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Value::Object(message) = message else {
            return Err(TranslateError::new(at, "must be an object"));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            _ => {
                return Err(TranslateError::new(
                    format!("{at}.role"),
                    "must be a string",
                ));
            }
        };
        let (role, allowed, blocks): (_, &[&str], _) = match role {
            "system" | "developer" => {
                check_keys(message, &at, &[])?;
                system.extend(text_content(message.get("content"), &at)?);
                continue;
            }
            "user" => ("user", &[], user_content(message.get("content"), &at)?),
            "assistant" => ("assistant", &["tool_calls"], assistant(message, &at)?),
            "tool" => ("user", &["tool_call_id"], vec![tool_result(message, &at)?]),
            _ => {
                return Err(TranslateError::new(
                    format!("{at}.role"),
                    "must be system, developer, user, assistant or tool",
                ));
            }
        };
        check_keys(message, &at, allowed)?;
        match turns.last_mut() {
            _ if blocks.is_empty() => {}
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    let messages = turns
        .into_iter()
        .map(|t| json!({"role": t.role, "content": t.blocks}))
        .collect();
    Ok(Converted {
        system: system_value(system),
        messages,
    })
}

/// Fails on a field of a message other than `role`, `content`, `name` and
/// `allowed` (a `null` counts as absent).
fn check_keys(
    message: &Map<String, Value>,
    at: &str,
    allowed: &[&str],
) -> Result<(), TranslateError> {
    for (key, value) in message {
        let known =
            matches!(key.as_str(), "role" | "content" | "name") || allowed.contains(&key.as_str());
        if !known && !value.is_null() {
            return Err(unsupported(format!("{at}.{key}")));
        }
    }
    Ok(())
}

/// The error for a field with no Anthropic counterpart.
fn unsupported(field: String) -> TranslateError {
    TranslateError::new(field, "has no counterpart in the Anthropic Messages API")
}

/// The system blocks as one string, or as blocks when a `cache_control`
/// must be kept.
fn system_value(blocks: Vec<Value>) -> Option<Value> {
    if blocks.is_empty() {
        return None;
    }
    if blocks.iter().any(|b| b.get("cache_control").is_some()) {
        return Some(Value::Array(blocks));
    }
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    Some(Value::String(texts.join("\n\n")))
}

/// Content that may hold only text (system, tool, assistant messages):
/// text blocks.
fn text_content(content: Option<&Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    parts(content, at, |part, _kind, field| {
        Err(TranslateError::new(
            format!("{field}.type"),
            format!(
                "{} parts have no counterpart here; only text is accepted",
                part_kind(part)
            ),
        ))
    })
}

/// A user message's content: text and image blocks.
fn user_content(content: Option<&Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    parts(content, at, |part, kind, field| match kind {
        "image_url" => image(part, &field),
        _ => Err(TranslateError::new(
            format!("{field}.type"),
            format!("{kind} parts have no counterpart in the Anthropic Messages API"),
        )),
    })
}

fn part_kind(part: &Map<String, Value>) -> &str {
    part.get("type")
        .and_then(Value::as_str)
        .unwrap_or("untyped")
}

/// Content as blocks: a string is one text block, an array of parts is a
/// block each, text parts here and any other kind through `other`; null or
/// absent is no block.
fn parts(
    content: Option<&Value>,
    at: &str,
    other: impl Fn(&Map<String, Value>, &str, String) -> Result<Value, TranslateError>,
) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![json!({"type": "text", "text": text})]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let field = format!("{at}.content[{j}]");
                let Value::Object(part) = part else {
                    return Err(TranslateError::new(field, "must be an object"));
                };
                let block = match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        check_part_keys(part, &field, &["text"])?;
                        match part.get("text") {
                            Some(Value::String(t)) if t.is_empty() => continue,
                            Some(Value::String(t)) => json!({"type": "text", "text": t}),
                            _ => {
                                return Err(TranslateError::new(
                                    format!("{field}.text"),
                                    "must be a string",
                                ));
                            }
                        }
                    }
                    Some(kind) => other(part, kind, field.clone())?,
                    None => {
                        return Err(TranslateError::new(
                            format!("{field}.type"),
                            "must be a string",
                        ));
                    }
                };
                blocks.push(with_cache_control(block, part));
            }
            Ok(blocks)
        }
        Some(_) => Err(TranslateError::new(
            format!("{at}.content"),
            "must be a string, an array of parts or null",
        )),
    }
}

/// Fails on a field of a content part other than `type`, `cache_control`
/// and `allowed`.
fn check_part_keys(
    part: &Map<String, Value>,
    field: &str,
    allowed: &[&str],
) -> Result<(), TranslateError> {
    for (key, value) in part {
        let known =
            matches!(key.as_str(), "type" | "cache_control") || allowed.contains(&key.as_str());
        if !known && !value.is_null() {
            return Err(unsupported(format!("{field}.{key}")));
        }
    }
    Ok(())
}

/// `block` with the part's `cache_control`, if it has one.
fn with_cache_control(mut block: Value, part: &Map<String, Value>) -> Value {
    if let (Some(cache), Value::Object(block)) = (part.get("cache_control"), &mut block)
        && !cache.is_null()
    {
        block.insert("cache_control".into(), cache.clone());
    }
    block
}

/// An `image_url` part as an image block. `detail` is a resolution hint
/// Anthropic has no counterpart for and is ignored: the image is the same.
fn image(part: &Map<String, Value>, field: &str) -> Result<Value, TranslateError> {
    check_part_keys(part, field, &["image_url"])?;
    let url_field = format!("{field}.image_url.url");
    let url = match part.get("image_url") {
        Some(Value::Object(image)) => image.get("url").and_then(Value::as_str),
        // The oldest clients send the URL itself.
        Some(Value::String(url)) => Some(url.as_str()),
        _ => None,
    };
    let Some(url) = url else {
        return Err(TranslateError::new(url_field, "must be a string"));
    };
    if let Some(data) = url.strip_prefix("data:") {
        let (header, payload) = data.split_once(',').unwrap_or((data, ""));
        let Some(media_type) = header.strip_suffix(";base64") else {
            return Err(TranslateError::new(
                url_field,
                "a data: URL must be base64 (data:MEDIA_TYPE;base64,DATA)",
            ));
        };
        let media_type = media_type.split(';').next().unwrap_or(media_type);
        return Ok(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": payload},
        }));
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => {
            Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
        }
        _ => Err(TranslateError::new(
            url_field,
            "must be a data: or http(s) URL",
        )),
    }
}

/// An assistant message's text and tool calls as text and `tool_use`
/// blocks.
fn assistant(message: &Map<String, Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = text_content(message.get("content"), at)?;
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(TranslateError::new(
                format!("{at}.tool_calls"),
                "must be an array",
            ));
        }
    };
    for (j, call) in calls.iter().enumerate() {
        let field = format!("{at}.tool_calls[{j}]");
        let kind = call
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::new(
                format!("{field}.type"),
                format!("{kind} tool calls have no counterpart in the Anthropic Messages API"),
            ));
        }
        let Some(id) = call.get("id").and_then(Value::as_str) else {
            return Err(TranslateError::new(
                format!("{field}.id"),
                "must be a string",
            ));
        };
        let function = call.get("function");
        let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) else {
            return Err(TranslateError::new(
                format!("{field}.function.name"),
                "must be a string",
            ));
        };
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let input = if arguments.trim().is_empty() {
            // A call without arguments is sometimes sent as "".
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(input @ Value::Object(_)) => input,
                _ => {
                    return Err(TranslateError::new(
                        format!("{field}.function.arguments"),
                        "must be a JSON object (Anthropic tool input is an object)",
                    ));
                }
            }
        };
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

/// A `tool` message as a `tool_result` block.
fn tool_result(message: &Map<String, Value>, at: &str) -> Result<Value, TranslateError> {
    let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
        return Err(TranslateError::new(
            format!("{at}.tool_call_id"),
            "must be a string",
        ));
    };
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    let content = match message.get("content") {
        Some(Value::String(text)) => Value::String(text.clone()),
        other => Value::Array(text_content(other, at)?),
    };
    let empty = match &content {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if let (false, Value::Object(block)) = (empty, &mut block) {
        block.insert("content".into(), content);
    }
    Ok(block)
}
