//! Tool use on `POST /v1/chat/completions`: the request's `tools` and
//! `tool_choice`, and the answer that calls a tool (`message.tool_calls`,
//! `finish_reason: "tool_calls"`), plain or streamed with the arguments in
//! fragments. Quoting a tool's result is an ordinary text answer
//! ([`crate::openai::Completion::quoting`]).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::Events;
use super::openai::{self, ChatRequest, Content, Usage, json_body, sse_event};
use super::tools::{self, Choice, Last, Schema, Tool, ToolError, Turn};

/// One entry of `tools`.
#[derive(Debug, Deserialize)]
pub struct ChatTool {
    /// The function, for `type: "function"` tools.
    #[serde(default)]
    pub function: Option<FunctionDef>,
}

/// A declared function.
#[derive(Debug, Deserialize)]
pub struct FunctionDef {
    /// Its name.
    pub name: String,
    /// Its parameters (a JSON schema).
    #[serde(default)]
    pub parameters: Option<Schema>,
}

/// What the model answers a chat request with.
pub fn turn(request: &ChatRequest) -> Result<Turn, ToolError> {
    let tools: Vec<Tool<'_>> = request
        .tools
        .iter()
        .filter_map(|t| t.function.as_ref())
        .map(|f| Tool {
            name: &f.name,
            schema: f.parameters.as_ref(),
        })
        .collect();
    let choice = match &request.tool_choice {
        Some(Value::String(mode)) if mode == "none" => Choice::None,
        Some(Value::Object(choice)) => choice
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map_or(Choice::Auto, Choice::Named),
        _ => Choice::Auto,
    };
    let last = match request.messages.last() {
        Some(m) if m.role.as_deref() == Some("tool") => {
            Last::ToolResult(m.content.as_ref().map(Content::text).unwrap_or_default())
        }
        Some(m) if m.role.as_deref() == Some("user") => Last::UserText,
        _ => Last::Other,
    };
    tools::decide(&tools, choice, last)
}

/// A chat answer that calls one tool.
pub struct Call {
    id: String,
    call_id: String,
    created: u64,
    model: String,
    name: String,
    arguments: String,
    usage: Usage,
}

impl Call {
    /// The call answering request `n`, its arguments streamed in up to
    /// `chunks` fragments.
    pub fn new(
        n: u64,
        model: String,
        prompt_tokens: u32,
        name: String,
        arguments: String,
        chunks: u32,
    ) -> Self {
        let fragments = tools::fragments(&arguments, chunks).len() as u32;
        Call {
            id: format!("chatcmpl-mock-{n}"),
            call_id: format!("call_mock_{n}"),
            created: openai::unix_now(),
            model,
            name,
            usage: Usage {
                prompt_tokens,
                completion_tokens: fragments,
                total_tokens: prompt_tokens.saturating_add(fragments),
            },
            arguments,
        }
    }

    /// `usage`: `None` for no member, `Some(None)` for `"usage": null` (as
    /// in OpenAI's chunks before the usage when it is asked for).
    fn envelope(&self, object: &str, choices: Value, usage: Option<Option<Usage>>) -> Value {
        let mut envelope = json!({
            "id": self.id, "object": object, "created": self.created,
            "model": self.model, "choices": choices,
        });
        if let (Some(usage), Value::Object(map)) = (usage, &mut envelope) {
            map.insert("usage".into(), json!(usage));
        }
        envelope
    }

    /// The non-streamed answer body.
    pub fn body(&self) -> Bytes {
        let call = json!({
            "id": self.call_id, "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        });
        let choice = json!([{
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [call]},
            "logprobs": null,
            "finish_reason": "tool_calls",
        }]);
        json_body(&self.envelope("chat.completion", choice, Some(Some(self.usage))))
    }

    /// The stream: the call's id and name, its arguments in fragments (one
    /// per chunk), the finish reason, the usage when asked, `[DONE]`.
    pub fn events(&self, chunks: u32, include_usage: bool) -> Events {
        let chunk = |delta: Value, finish_reason: Option<&str>| {
            let choice = json!([{
                "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason,
            }]);
            sse_event(&self.envelope(
                "chat.completion.chunk",
                choice,
                include_usage.then_some(None),
            ))
        };
        let mut events = Events::default();
        events.push(chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": self.call_id, "type": "function",
                "function": {"name": self.name, "arguments": ""},
            }]}),
            None,
        ));
        for fragment in tools::fragments(&self.arguments, chunks) {
            events.push_chunk(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                None,
            ));
        }
        events.push(chunk(json!({}), Some("tool_calls")));
        if include_usage {
            let usage = self.envelope("chat.completion.chunk", json!([]), Some(Some(self.usage)));
            events.push(sse_event(&usage));
        }
        events.push(Bytes::from_static(openai::DONE));
        events
    }
}
