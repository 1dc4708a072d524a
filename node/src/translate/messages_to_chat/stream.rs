//! OpenAI chat SSE chunks -> Anthropic Messages SSE events.
//!
//! Chat streams one flat delta per chunk; Messages streams content blocks,
//! each opened, filled and closed. The translator keeps the one open block
//! and opens the next when the delta switches between text and a tool call.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::{stop_reason, usage};
use crate::translate::{StreamTranslator, parse_events, write_event};

/// OpenAI chat SSE chunks -> Anthropic Messages SSE events (each written
/// with its `event:` name, as Anthropic sends them).
///
/// `message_start` goes out with the first chunk; text deltas fill a text
/// block and each tool call (by its chat `index`) a `tool_use` block,
/// numbered from 0 in the order they open. `message_delta` (stop reason
/// and usage) and `message_stop` go out once, at `[DONE]` or at
/// [`finish`](StreamTranslator::finish) when the upstream ended without it,
/// since the usage chunk comes after the `finish_reason`. Events that are
/// not JSON are skipped; an upstream `error` event ends the stream with an
/// Anthropic `error` event.
#[derive(Debug, Default)]
pub struct Stream {
    /// `message_start` has been written.
    started: bool,
    /// `message_stop` or `error` has been written: nothing more follows.
    done: bool,
    /// The block open now: its index, and whether it is a text block.
    open: Option<(usize, bool)>,
    /// The index the next block opens at.
    next_index: usize,
    /// Tool calls seen: the block index of each chat `index` (a map: an
    /// upstream may send many, and each fragment looks its call up).
    tools: HashMap<u64, usize>,
    /// The chunk's `finish_reason`, once it came.
    finish_reason: Option<String>,
    /// The model refused (a `refusal` delta came).
    refused: bool,
    /// The last chat `usage` object seen.
    usage: Option<Value>,
}

impl Stream {
    /// A translator for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn chunk(&mut self, chunk: &Value, out: &mut BytesMut) {
        if !self.started {
            let text = |key| chunk.get(key).and_then(Value::as_str).unwrap_or_default();
            self.start(text("id"), text("model"), out);
        }
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.first());
        if let Some(choice) = choice {
            let delta = choice.get("delta");
            let text = |key| {
                delta
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
            };
            if let Some(content) = text("content") {
                self.text(content, out);
            }
            if let Some(refusal) = text("refusal") {
                self.refused = true;
                self.text(refusal, out);
            }
            let calls = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array);
            for (position, call) in calls.into_iter().flatten().enumerate() {
                self.tool_call(call, position, out);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_owned());
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
    }

    fn start(&mut self, id: &str, model: &str, out: &mut BytesMut) {
        self.started = true;
        emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": format!("msg_{id}"),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let index = match self.open {
            Some((index, true)) => index,
            _ => self.open_block(json!({"type": "text", "text": ""}), true, out),
        };
        emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
        );
    }

    /// One `tool_calls` delta. A fragment for a call whose block was closed
    /// already (a server interleaving calls) still goes to that block's
    /// index: the SDKs assemble by index, and dropping it would lose input.
    fn tool_call(&mut self, call: &Value, position: usize, out: &mut BytesMut) {
        let key = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function");
        let known = self.tools.get(&key).copied();
        let index = match known {
            Some(index) => index,
            None => {
                let id = call.get("id").and_then(Value::as_str);
                let id = id.map_or_else(|| format!("call_{key}"), str::to_owned);
                let name = function
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                let index = self.open_block(block, false, out);
                self.tools.insert(key, index);
                index
            }
        };
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !arguments.is_empty() {
            emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            );
        }
    }

    /// Closes the open block and opens `block` at the next index.
    fn open_block(&mut self, block: Value, text: bool, out: &mut BytesMut) -> usize {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, text));
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// The end of the message: closes the open block, then `message_delta`
    /// with the stop reason and usage, then `message_stop`; once.
    fn end(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if !self.started {
            self.start("", "", out);
        }
        self.close(out);
        let stop = if self.refused {
            "refusal"
        } else {
            stop_reason(self.finish_reason.as_deref())
        };
        emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": usage(self.usage.as_ref())}),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }
}

impl StreamTranslator for Stream {
    fn events(&mut self, events: &[u8], out: &mut BytesMut) {
        for event in parse_events(events) {
            if self.done {
                return;
            }
            let data = event.data.trim_ascii();
            if data == b"[DONE]" {
                self.end(out);
                continue;
            }
            let Ok(chunk @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .or_else(|| error.as_str())
                    .unwrap_or("the upstream stream failed");
                out.extend_from_slice(&self.error_event(message));
                self.done = true;
                return;
            }
            self.chunk(&chunk, out);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.end(out);
    }

    fn error_event(&self, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        emit(
            &mut out,
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        );
        out.freeze()
    }
}

/// Writes one named event.
fn emit(out: &mut BytesMut, name: &str, data: &Value) {
    // Writing a `Value` cannot fail: its keys are strings.
    let data = serde_json::to_vec(data).unwrap_or_default();
    write_event(out, Some(name), &data);
}
