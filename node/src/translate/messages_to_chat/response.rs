//! OpenAI chat completion (a plain answer) -> Anthropic Message.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{TranslateError, not_json, stop_reason, usage};

/// OpenAI chat completion (plain answer) -> Anthropic Message answer body.
///
/// The content is a text block when the answer has text, then one
/// `tool_use` block per tool call with its arguments parsed into `input`.
/// A refusal (`message.refusal`) is the model's words too: it becomes a
/// text block and the stop reason `refusal`. An answer with no choices, or
/// tool arguments that are not a JSON object, is a [`TranslateError`].
pub fn response(body: &[u8]) -> Result<Bytes, TranslateError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    let choice = answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| TranslateError::new("choices", "the answer has no choices"))?;
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| TranslateError::new("choices[0].message", "must be an object"))?;

    let mut content = Vec::new();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => push_text(&mut content, text),
        // Some compatible servers answer with content parts.
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    push_text(&mut content, text);
                }
            }
        }
        Some(_) => {
            return Err(TranslateError::new(
                "choices[0].message.content",
                "must be a string",
            ));
        }
    }
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    if let Some(refusal) = refusal {
        push_text(&mut content, refusal);
    }
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                content.push(tool_use(call, j)?);
            }
        }
        Some(_) => {
            return Err(TranslateError::new(
                "choices[0].message.tool_calls",
                "must be an array",
            ));
        }
    }

    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let stop = if refusal.is_some() {
        "refusal"
    } else {
        stop_reason(finish)
    };
    let id = answer.get("id").and_then(Value::as_str).unwrap_or_default();
    let model = answer
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage(answer.get("usage")),
    });
    serde_json::to_vec(&message)
        .map(Bytes::from)
        .map_err(|e| TranslateError::new("", format!("cannot write the message: {e}")))
}

/// Appends a text block unless the text is empty (Anthropic has none).
fn push_text(content: &mut Vec<Value>, text: &str) {
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
}

/// The `tool_use` block for `tool_calls[j]`.
fn tool_use(call: &Value, j: usize) -> Result<Value, TranslateError> {
    let path = format!("choices[0].message.tool_calls[{j}]");
    let field = |value: Option<&Value>, name: &str| {
        value
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| TranslateError::new(format!("{path}.{name}"), "must be a string"))
    };
    let id = field(call.get("id"), "id")?;
    let function = call.get("function");
    let name = field(function.and_then(|f| f.get("name")), "function.name")?;
    let arguments = field(
        function.and_then(|f| f.get("arguments")),
        "function.arguments",
    )?;
    let input = parse_arguments(&arguments).ok_or_else(|| {
        TranslateError::new(
            format!("{path}.function.arguments"),
            "the tool arguments are not a JSON object",
        )
    })?;
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// Tool arguments as a JSON object; empty arguments (sent by some servers
/// for a tool without parameters) are the empty object.
fn parse_arguments(arguments: &str) -> Option<Map<String, Value>> {
    if arguments.trim().is_empty() {
        return Some(Map::new());
    }
    match serde_json::from_str(arguments) {
        Ok(Value::Object(input)) => Some(input),
        _ => None,
    }
}
