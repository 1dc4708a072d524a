//! The Anthropic Messages wire format as the fake provider speaks it
//! (`POST /v1/messages`, `POST /v1/messages/count_tokens`): the request
//! fields it reads, the answer, its event stream and its error shape. Bodies
//! are serialised straight from borrowed structs, as in [`crate::openai`].

use std::borrow::Cow;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::{self, Body};
use super::events::{Events, named};
use super::openai::json_body;
use super::tools::{self, Choice, Last, Schema, Tool, ToolError, Turn};

/// `POST /v1/messages` (and `/count_tokens`, which needs no `max_tokens`):
/// only the fields the mock uses; the rest are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    /// The model asked for, echoed back.
    pub model: String,
    /// Required by `/v1/messages`; caps the number of chunks.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The system prompt: a string or text blocks.
    #[serde(default)]
    pub system: Option<Content>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    /// `{"type": "auto" | "any" | "tool" | "none", "name"}`.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Whether to answer as SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Accepted; the canned words never contain one.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
}

/// One message of the conversation.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// A string or content blocks.
    pub content: Content,
}

/// Content: a string or a list of blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed blocks.
    Blocks(Vec<Block>),
}

/// One content block; only text and tool results matter to the mock.
#[derive(Debug, Deserialize)]
pub struct Block {
    /// `text`, `image`, `tool_use`, `tool_result`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// A text block's text.
    #[serde(default)]
    pub text: Option<String>,
    /// A tool result's content.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A declared tool.
#[derive(Debug, Deserialize)]
pub struct ToolDef {
    /// Its name.
    pub name: String,
    /// Its parameters (absent for Anthropic's server tools).
    #[serde(default)]
    pub input_schema: Option<Schema>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool, when `type` is `tool`.
    #[serde(default)]
    pub name: Option<String>,
}

impl Content {
    /// The characters of its text (text blocks and tool results, nested).
    fn chars(&self) -> usize {
        match self {
            Content::Text(text) => text.chars().count(),
            Content::Blocks(blocks) => blocks
                .iter()
                .map(|b| {
                    b.text.as_deref().map_or(0, |t| t.chars().count())
                        + b.content.as_ref().map_or(0, Content::chars)
                })
                .sum(),
        }
    }

    /// Its text, joined.
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| match (&b.text, &b.content) {
                    (Some(text), _) => Some(text.clone()),
                    (None, Some(content)) => Some(content.text()),
                    (None, None) => None,
                })
                .collect(),
        }
    }
}

impl MessagesRequest {
    /// Token count of the system prompt and messages: characters / 4,
    /// rounded up, at least 1 (as the OpenAI side counts).
    pub fn input_tokens(&self) -> u32 {
        let chars: usize = self
            .system
            .iter()
            .chain(self.messages.iter().map(|m| &m.content))
            .map(Content::chars)
            .sum();
        u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX).max(1)
    }

    /// What the model answers: a tool call, a quoted tool result, or text.
    pub fn turn(&self) -> Result<Turn, ToolError> {
        let tools: Vec<Tool<'_>> = self
            .tools
            .iter()
            .map(|t| Tool {
                name: &t.name,
                schema: t.input_schema.as_ref(),
            })
            .collect();
        let choice = match &self.tool_choice {
            Some(c) if c.kind == "none" => Choice::None,
            Some(c) if c.kind == "tool" => c.name.as_deref().map_or(Choice::Auto, Choice::Named),
            _ => Choice::Auto,
        };
        let last = match self.messages.last() {
            Some(m) if m.role == "user" => match &m.content {
                Content::Blocks(blocks) => blocks
                    .iter()
                    .rev()
                    .find(|b| b.kind == "tool_result")
                    .map_or(Last::UserText, |b| {
                        Last::ToolResult(b.content.as_ref().map(Content::text).unwrap_or_default())
                    }),
                Content::Text(_) => Last::UserText,
            },
            _ => Last::Other,
        };
        tools::decide(&tools, choice, last)
    }
}

/// Token counts of an answer, Anthropic's names.
#[derive(Clone, Copy, Debug, Serialize)]
struct Usage {
    input_tokens: u32,
    output_tokens: u32,
}

/// One content block of an answer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a serde_json::Value,
    },
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: Usage,
}

/// Everything needed to write one Messages answer, plain or as a stream.
pub struct Answer {
    id: String,
    model: String,
    input_tokens: u32,
    body: Kind,
}

enum Kind {
    Text {
        pieces: Vec<String>,
        stop_reason: &'static str,
    },
    Call {
        id: String,
        name: String,
        arguments: String,
        input: serde_json::Value,
        fragments: u32,
    },
}

impl Answer {
    /// The answer to request number `n`, from a behaviour of `chunks` chunks.
    pub fn new(n: u64, request: &MessagesRequest, turn: Turn, chunks: u32) -> Self {
        let body = match turn {
            Turn::Call { name, arguments } => Kind::Call {
                id: format!("toolu_mock_{n}"),
                fragments: tools::fragments(&arguments, chunks).len() as u32,
                // `tools::arguments` writes a JSON object.
                input: serde_json::from_str(&arguments).unwrap_or_default(),
                arguments,
                name,
            },
            Turn::Text | Turn::Quote(_) => {
                let quote = match &turn {
                    Turn::Quote(text) => Some(text.as_str()),
                    _ => None,
                };
                let (pieces, cut) = tools::text_pieces(quote, chunks, request.max_tokens);
                Kind::Text {
                    pieces: pieces.into_iter().map(Cow::into_owned).collect(),
                    stop_reason: if cut { "max_tokens" } else { "end_turn" },
                }
            }
        };
        Answer {
            id: format!("msg_mock_{n}"),
            model: request.model.clone(),
            input_tokens: request.input_tokens(),
            body,
        }
    }

    fn output_tokens(&self) -> u32 {
        match &self.body {
            Kind::Text { pieces, .. } => pieces.len() as u32,
            Kind::Call { fragments, .. } => *fragments,
        }
    }

    fn message<'a>(&'a self, content: Vec<BlockOut<'a>>, done: bool) -> MessageOut<'a> {
        let stop_reason = match &self.body {
            Kind::Text { stop_reason, .. } => stop_reason,
            Kind::Call { .. } => "tool_use",
        };
        MessageOut {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content,
            stop_reason: done.then_some(stop_reason),
            stop_sequence: None,
            usage: Usage {
                input_tokens: self.input_tokens,
                output_tokens: if done { self.output_tokens() } else { 1 },
            },
        }
    }

    /// The non-streamed answer body.
    pub fn body(&self) -> Bytes {
        let joined: String;
        let block = match &self.body {
            Kind::Text { pieces, .. } => {
                joined = pieces.concat();
                BlockOut::Text { text: &joined }
            }
            Kind::Call {
                id, name, input, ..
            } => BlockOut::ToolUse { id, name, input },
        };
        json_body(&self.message(vec![block], true))
    }

    /// The stream: `message_start`, one content block (text deltas or
    /// `input_json_delta` fragments, one per chunk), `message_delta` with the
    /// stop reason and usage, `message_stop`.
    pub fn events(&self, chunks: u32) -> Events {
        let mut events = Events::default();
        #[derive(Serialize)]
        struct Start<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            message: MessageOut<'a>,
        }
        events.push(named(
            "message_start",
            &Start {
                kind: "message_start",
                message: self.message(Vec::new(), false),
            },
        ));
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let block = match &self.body {
            Kind::Text { .. } => BlockOut::Text { text: "" },
            Kind::Call { id, name, .. } => BlockOut::ToolUse {
                id,
                name,
                input: &empty,
            },
        };
        events.push(named(
            "content_block_start",
            &serde_json::json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ));
        events.push(named("ping", &serde_json::json!({"type": "ping"})));
        let delta = |delta: serde_json::Value| {
            named(
                "content_block_delta",
                &serde_json::json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            )
        };
        match &self.body {
            Kind::Text { pieces, .. } => pieces.iter().for_each(|text| {
                events.push_chunk(delta(
                    serde_json::json!({"type": "text_delta", "text": text}),
                ));
            }),
            Kind::Call { arguments, .. } => tools::fragments(arguments, chunks)
                .into_iter()
                .for_each(|partial| {
                    events.push_chunk(delta(
                        serde_json::json!({"type": "input_json_delta", "partial_json": partial}),
                    ));
                }),
        }
        events.push(named(
            "content_block_stop",
            &serde_json::json!({"type": "content_block_stop", "index": 0}),
        ));
        let done = self.message(Vec::new(), true);
        events.push(named(
            "message_delta",
            &serde_json::json!({
                "type": "message_delta",
                "delta": {"stop_reason": done.stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": done.usage.output_tokens},
            }),
        ));
        events.push(named(
            "message_stop",
            &serde_json::json!({"type": "message_stop"}),
        ));
        events
    }
}

/// The `POST /v1/messages/count_tokens` body.
pub fn count_tokens_body(request: &MessagesRequest) -> Bytes {
    json_body(&serde_json::json!({"input_tokens": request.input_tokens()}))
}

/// Anthropic's error type for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct Detail<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: Detail<'a>,
    }
    let envelope = Envelope {
        kind: "error",
        error: Detail {
            kind: error_type(status),
            message,
        },
    };
    body::json(status, json_body(&envelope))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn request(json: serde_json::Value) -> MessagesRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn error_types_follow_the_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (529, "overloaded_error"),
            (418, "invalid_request_error"),
        ] {
            assert_eq!(error_type(StatusCode::from_u16(status).unwrap()), kind);
        }
    }

    #[test]
    fn tokens_count_system_text_and_tool_results() {
        let r = request(json!({"model": "m", "system": "abcd", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "abcd"},
                                         {"type": "image", "source": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                          "content": [{"type": "text", "text": "abcde"}]}]},
        ]}));
        assert_eq!(r.input_tokens(), 4); // 13 characters
        assert_eq!(
            r.turn().unwrap(),
            Turn::Quote("The tool said: abcde".into())
        );
        let empty = request(json!({"model": "m", "messages": []}));
        assert_eq!(empty.input_tokens(), 1);
        assert_eq!(empty.turn().unwrap(), Turn::Text);
    }

    #[test]
    fn tool_choice_none_and_named() {
        let tools = json!([{"name": "a"}, {"name": "b", "input_schema": {"required": ["x"]}}]);
        let ask = |choice: serde_json::Value| {
            request(json!({"model": "m", "tools": tools, "tool_choice": choice,
                           "messages": [{"role": "user", "content": "hi"}]}))
            .turn()
            .unwrap()
        };
        assert_eq!(ask(json!({"type": "none"})), Turn::Text);
        assert_eq!(
            ask(json!({"type": "tool", "name": "b"})),
            Turn::Call {
                name: "b".into(),
                arguments: r#"{"x":"mock"}"#.into()
            }
        );
        assert!(matches!(ask(json!({"type": "any"})), Turn::Call { name, .. } if name == "a"));
    }
}
