//! An Anthropic Messages answer as an OpenAI chat completion.
//!
//! `thinking` and `redacted_thinking` blocks are left out of the
//! completion: an OpenAI chat client cannot have asked for them (extended
//! thinking has no chat-completions field, see `request.rs`), has no place
//! to put them, and would show them as answer text if they were joined to
//! `content`. Server-tool blocks are left out for the same reason.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::finish_reason;
use super::usage::{AnthropicUsage, OpenAiUsage};
use crate::translate::TranslateError;

/// The parts of an Anthropic `Message` a chat completion carries.
#[derive(Deserialize)]
struct Message {
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// A content block of the answer.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default = "no_input")]
        input: serde_json::Value,
    },
    /// `thinking`, `redacted_thinking`, server tools: see the module doc.
    #[serde(other)]
    Other,
}

/// A tool call's input when the answer leaves it out: no arguments.
fn no_input() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[derive(Serialize)]
struct Completion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice; 1],
    usage: OpenAiUsage,
}

#[derive(Serialize)]
struct Choice {
    index: u32,
    message: OutMessage,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OutMessage {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Serialize)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function,
}

#[derive(Serialize)]
struct Function {
    name: String,
    arguments: String,
}

/// Anthropic Message answer -> OpenAI chat completion; `created` is the
/// unix time to stamp (Anthropic's answer has none).
pub fn response(body: &[u8], created: u64) -> Result<Bytes, TranslateError> {
    let message: Message = serde_json::from_slice(body).map_err(|e| {
        // Line and column only: the error's own text may quote the body.
        TranslateError::new(
            "",
            format!(
                "the upstream's answer is not an Anthropic message (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            // Text blocks (split by citations, say) are one text.
            Block::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function",
                function: Function {
                    name,
                    arguments: input.to_string(),
                },
            }),
            Block::Other => {}
        }
    }
    let completion = Completion {
        id: format!("chatcmpl-{}", message.id),
        object: "chat.completion",
        created,
        model: &message.model,
        choices: [Choice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: text,
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            },
            logprobs: None,
            finish_reason: finish_reason(message.stop_reason.as_deref()),
        }],
        usage: message.usage.to_openai(),
    };
    serde_json::to_vec(&completion)
        .map(Bytes::from)
        .map_err(|e| TranslateError::new("", e.to_string()))
}
