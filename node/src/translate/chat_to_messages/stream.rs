//! Anthropic Messages stream events as OpenAI chat completion chunks, one
//! event in, its chunks out: nothing is held back, so the client's first
//! token comes when the upstream's does.
//!
//! | Anthropic event                          | chat chunk                                  |
//! |------------------------------------------|---------------------------------------------|
//! | `message_start`                          | `delta: {role: "assistant", content: ""}`   |
//! | `content_block_start` text               | its text, if any                            |
//! | `content_block_delta` `text_delta`       | `delta: {content}`                          |
//! | `content_block_start` tool_use           | `delta: {tool_calls: [{index, id, type, function: {name, arguments: ""}}]}` |
//! | `content_block_delta` `input_json_delta` | `delta: {tool_calls: [{index, function: {arguments}}]}` |
//! | `message_delta`                          | `delta: {}` and the `finish_reason`         |
//! | `message_stop`                           | the usage chunk (when asked), `[DONE]`      |
//! | `error`                                  | `{"error": {message, type, code: null}}`    |
//!
//! Thinking blocks and their deltas (`thinking_delta`, `signature_delta`),
//! `content_block_stop`, `ping` and events this build does not know have
//! no counterpart and produce nothing; so does an event whose data does not
//! parse (the stream goes on; a translator never panics on what an
//! upstream sends).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::finish_reason;
use super::usage::{AnthropicUsage, OpenAiUsage};
use crate::translate::{StreamTranslator, parse_events, write_event};

/// Rewrites an Anthropic Messages stream into OpenAI chat chunks (see the
/// module doc for the mapping), remembering across events only what later
/// chunks repeat: the message's id and model, the usage so far, and which
/// content blocks are tool calls.
#[derive(Debug)]
pub struct Stream {
    include_usage: bool,
    created: u64,
    /// `chatcmpl-` and the message's id, once `message_start` came.
    id: String,
    model: String,
    usage: AnthropicUsage,
    /// The OpenAI tool call index of every tool_use block so far, by its
    /// Anthropic content block index (a map: an upstream may send many,
    /// and each delta looks its block up).
    tools: HashMap<u64, usize>,
    /// Tool calls started so far: they are counted from 0 on their own.
    tool_calls: usize,
    /// `message_delta` came: the answer is whole even if `message_stop`
    /// does not follow.
    ended: bool,
    /// `[DONE]` was written: nothing follows it.
    done: bool,
}

impl Stream {
    /// A translator for one answer; `include_usage` is the client's
    /// `stream_options.include_usage` (see
    /// [`Translated`](super::Translated)), `created` the unix time every
    /// chunk is stamped with.
    pub fn new(include_usage: bool, created: u64) -> Self {
        Self {
            include_usage,
            created,
            id: String::from("chatcmpl-"),
            model: String::new(),
            usage: AnthropicUsage::default(),
            tools: HashMap::new(),
            tool_calls: 0,
            ended: false,
            done: false,
        }
    }

    fn one(&mut self, data: &[u8], out: &mut BytesMut) {
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        match event {
            Event::MessageStart { message } => {
                self.id.truncate("chatcmpl-".len());
                self.id.push_str(&message.id);
                self.model = message.model;
                self.usage.update(&message.usage);
                self.chunk(
                    out,
                    Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..Delta::default()
                    },
                    None,
                );
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                StartBlock::Text { text } if !text.is_empty() => {
                    self.chunk(out, Delta::text(&text), None);
                }
                StartBlock::ToolUse { id, name } => {
                    let k = self.tool_calls;
                    self.tool_calls += 1;
                    // A block index started twice keeps its first call.
                    self.tools.entry(index).or_insert(k);
                    let call = ToolCallDelta {
                        index: k,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&name),
                            arguments: "",
                        },
                    };
                    self.chunk(out, Delta::tool(call), None);
                }
                _ => {}
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => self.chunk(out, Delta::text(&text), None),
                BlockDelta::InputJsonDelta { partial_json } => {
                    let Some(&k) = self.tools.get(&index) else {
                        return;
                    };
                    let call = ToolCallDelta {
                        index: k,
                        id: None,
                        kind: None,
                        function: FunctionDelta {
                            name: None,
                            arguments: &partial_json,
                        },
                    };
                    self.chunk(out, Delta::tool(call), None);
                }
                BlockDelta::Other => {}
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.usage.update(&usage);
                }
                self.ended = true;
                let reason = finish_reason(delta.stop_reason.as_deref());
                self.chunk(out, Delta::default(), Some(reason));
            }
            Event::MessageStop => self.close(out),
            Event::Error { error } => {
                let body = ErrorBody {
                    error: ErrorInner {
                        message: &error.message,
                        kind: &error.kind,
                        code: None,
                    },
                };
                write_json(out, &body);
            }
            Event::Other => {}
        }
    }

    /// The usage chunk (when asked) and `[DONE]`.
    fn close(&mut self, out: &mut BytesMut) {
        if self.include_usage {
            let chunk = Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(self.usage.to_openai()),
            };
            write_json(out, &chunk);
        }
        write_event(out, None, b"[DONE]");
        self.done = true;
    }

    fn chunk(&self, out: &mut BytesMut, delta: Delta<'_>, finish_reason: Option<&'static str>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &[ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        };
        write_json(out, &chunk);
    }
}

impl StreamTranslator for Stream {
    fn events(&mut self, events: &[u8], out: &mut BytesMut) {
        for event in parse_events(events) {
            if self.done {
                return;
            }
            self.one(&event.data, out);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        // Without message_delta the answer may be cut short: no [DONE], so
        // the client can tell.
        if !self.done && self.ended {
            self.close(out);
        }
    }

    fn error_event(&self, message: &str) -> Bytes {
        let body = ErrorBody {
            error: ErrorInner {
                message,
                kind: "server_error",
                code: Some("stream_interrupted"),
            },
        };
        let mut out = BytesMut::new();
        write_json(&mut out, &body);
        out.freeze()
    }
}

/// Appends `value` as one `data:` event. Serializing these plain structs
/// cannot fail; were it to, the chunk is left out rather than a panic.
fn write_json(out: &mut BytesMut, value: &impl Serialize) {
    if let Ok(json) = serde_json::to_vec(value) {
        write_event(out, None, &json);
    }
}

/// An Anthropic stream event, by its data's `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    },
    MessageStop,
    Error {
        error: UpstreamError,
    },
    /// `ping`, `content_block_stop`, anything newer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// `thinking_delta`, `signature_delta`, `citations_delta`, ...
    #[serde(other)]
    Other,
}

#[derive(Default, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct UpstreamError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OpenAiUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

impl<'a> Delta<'a> {
    fn text(text: &'a str) -> Self {
        Self {
            content: Some(text),
            ..Self::default()
        }
    }

    fn tool(call: ToolCallDelta<'a>) -> Self {
        Self {
            tool_calls: Some([call]),
            ..Self::default()
        }
    }
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: Option<&'a str>,
}
