//! The Responses API's bodies, serialised from a [`Stored`] response: the
//! response object, its `input_items` list, and its event stream.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use super::Stored;
use crate::events::{Events, named};
use crate::openai::json_body;

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct OutputMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    status: &'static str,
    role: &'static str,
    content: Vec<OutputText<'a>>,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u32,
    input_tokens_details: Value,
    output_tokens: u32,
    output_tokens_details: Value,
    total_tokens: u32,
}

/// The response object, borrowed from a [`Stored`].
#[derive(Serialize)]
struct ResponseOut<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<()>,
    incomplete_details: Option<Value>,
    instructions: Option<&'a str>,
    max_output_tokens: Option<u32>,
    model: &'a str,
    output: Vec<OutputMessage<'a>>,
    parallel_tool_calls: bool,
    previous_response_id: Option<&'a str>,
    reasoning: Value,
    store: bool,
    temperature: f64,
    text: Value,
    tool_choice: &'static str,
    tools: [(); 0],
    top_p: f64,
    truncation: &'static str,
    usage: Option<Usage>,
    user: Option<()>,
    metadata: Value,
}

impl Stored {
    /// The id, for logs and tests.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn output_tokens(&self) -> u32 {
        self.pieces.len() as u32
    }

    fn message(&self, status: &'static str) -> OutputMessage<'_> {
        OutputMessage {
            kind: "message",
            id: &self.message_id,
            status,
            role: "assistant",
            content: Vec::new(),
        }
    }

    /// The response object as of `status`: output and usage once it is done.
    fn view<'a>(&'a self, status: &'static str, text: &'a str) -> ResponseOut<'a> {
        let done = matches!(status, "completed" | "incomplete");
        let output = if done {
            let mut message = self.message("completed");
            message.content.push(OutputText {
                kind: "output_text",
                text,
                annotations: [],
            });
            vec![message]
        } else {
            Vec::new()
        };
        let usage = done.then(|| Usage {
            input_tokens: self.input_tokens,
            input_tokens_details: json!({"cached_tokens": 0}),
            output_tokens: self.output_tokens(),
            output_tokens_details: json!({"reasoning_tokens": 0}),
            total_tokens: self.input_tokens.saturating_add(self.output_tokens()),
        });
        ResponseOut {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status,
            background: self.background,
            error: None,
            incomplete_details: (status == "incomplete")
                .then(|| json!({"reason": "max_output_tokens"})),
            instructions: self.instructions.as_deref(),
            max_output_tokens: self.max_output_tokens,
            model: &self.model,
            output,
            parallel_tool_calls: true,
            previous_response_id: self.previous_response_id.as_deref(),
            reasoning: json!({"effort": null, "summary": null}),
            store: self.store,
            temperature: 1.0,
            text: json!({"format": {"type": "text"}}),
            tool_choice: "auto",
            tools: [],
            top_p: 1.0,
            truncation: "disabled",
            usage,
            user: None,
            metadata: json!({}),
        }
    }

    /// The response object as JSON (plain answer, `GET`, `cancel`).
    pub fn body(&self) -> Bytes {
        let text = self.pieces.concat();
        json_body(&self.view(self.status, &text))
    }

    /// The `input_items` list, oldest first when `order` is `asc`, else
    /// newest first (OpenAI's default).
    pub fn input_items_body(&self, order: Option<&str>) -> Bytes {
        let mut data: Vec<&Value> = self.input_items.iter().collect();
        if order != Some("asc") {
            data.reverse();
        }
        let id_of = |item: Option<&&Value>| item.and_then(|i| i.get("id")).cloned();
        json_body(&json!({
            "object": "list",
            "data": data,
            "first_id": id_of(data.first()),
            "last_id": id_of(data.last()),
            "has_more": false,
        }))
    }

    /// The stream: `response.created`, `response.in_progress`, the message
    /// item and its text part opened, one `response.output_text.delta` per
    /// chunk, everything closed again, and `response.completed` with the
    /// whole response and its usage; each event with its `sequence_number`.
    pub fn events(&self) -> Events {
        let mut events = Events::default();
        let mut seq = 0u64;
        let mut push = |events: &mut Events, kind: &str, mut payload: Value, chunk: bool| {
            if let Value::Object(map) = &mut payload {
                map.insert("type".into(), Value::from(kind));
                map.insert("sequence_number".into(), Value::from(seq));
            }
            seq += 1;
            let frame = named(kind, &payload);
            if chunk {
                events.push_chunk(frame);
            } else {
                events.push(frame);
            }
        };
        let text = self.pieces.concat();
        let started = self.view("in_progress", "");
        push(
            &mut events,
            "response.created",
            json!({"response": started}),
            false,
        );
        push(
            &mut events,
            "response.in_progress",
            json!({"response": started}),
            false,
        );
        let item = &self.message_id;
        let opened = self.message("in_progress");
        push(
            &mut events,
            "response.output_item.added",
            json!({"output_index": 0, "item": opened}),
            false,
        );
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
        let at = |extra: Value| {
            let mut payload = json!({"item_id": item, "output_index": 0, "content_index": 0});
            if let (Value::Object(map), Value::Object(extra)) = (&mut payload, extra) {
                map.extend(extra);
            }
            payload
        };
        push(
            &mut events,
            "response.content_part.added",
            at(json!({"part": part("")})),
            false,
        );
        for piece in &self.pieces {
            let delta = at(json!({"delta": piece, "logprobs": []}));
            push(&mut events, "response.output_text.delta", delta, true);
        }
        let done = at(json!({"text": text, "logprobs": []}));
        push(&mut events, "response.output_text.done", done, false);
        push(
            &mut events,
            "response.content_part.done",
            at(json!({"part": part(&text)})),
            false,
        );
        let finished = self.view(self.status, &text);
        push(
            &mut events,
            "response.output_item.done",
            json!({"output_index": 0, "item": finished.output.first()}),
            false,
        );
        let last = if self.status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        push(&mut events, last, json!({"response": finished}), false);
        events
    }
}
