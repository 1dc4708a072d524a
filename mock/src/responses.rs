//! The OpenAI Responses API as the fake provider speaks it: `POST
//! /v1/responses` (plain and as named SSE events), and the stored responses
//! behind `GET|DELETE /v1/responses/{id}`, `POST /v1/responses/{id}/cancel`
//! and `GET /v1/responses/{id}/input_items`. A response lives only in the
//! mock that made it, so a `previous_response_id` this mock did not make is
//! a 404: what lets a test prove every follow-up reached the right upstream.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::openai::json_body;
use super::tools;

mod wire;

/// Stored responses kept per mock; the oldest go first.
pub const MAX_STORED: usize = 10_000;

/// The most input-item JSON one stored response keeps for `input_items`, so
/// the store stays small whatever clients send; later items are dropped.
const MAX_ITEM_BYTES: usize = 256 << 10;

/// `POST /v1/responses`: only the fields the mock uses.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    /// The model asked for, echoed back.
    pub model: String,
    /// A string, or a list of input items.
    #[serde(default)]
    pub input: Option<Input>,
    /// A system message, echoed back.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The response this one follows; it must be one this mock made.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Whether to answer as SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Whether to keep the response (default true).
    #[serde(default)]
    pub store: Option<bool>,
    /// Answered `in_progress` and left so, until cancelled.
    #[serde(default)]
    pub background: Option<bool>,
    /// Caps the number of chunks (`status: "incomplete"` when it bites).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

/// The input: a string or items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Messages and other items, kept as sent.
    Items(Vec<Value>),
}

/// One response, as stored and as answered.
#[derive(Clone, Debug)]
pub struct Stored {
    id: String,
    message_id: String,
    created_at: u64,
    model: String,
    instructions: Option<String>,
    previous_response_id: Option<String>,
    status: &'static str,
    pieces: Vec<String>,
    input_tokens: u32,
    max_output_tokens: Option<u32>,
    background: bool,
    store: bool,
    input_items: Vec<Value>,
}

/// Makes unique ids: a random salt per mock, so two mocks never share one,
/// and a counter that a reset does not rewind.
#[derive(Debug)]
pub struct Ids {
    salt: u64,
    next: AtomicU64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            salt: rand::random(),
            next: AtomicU64::new(0),
        }
    }
}

impl Ids {
    fn next(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Relaxed);
        format!("{prefix}_mock{:016x}{n:08x}", self.salt)
    }
}

/// The stored responses, newest [`MAX_STORED`] kept.
#[derive(Debug, Default)]
pub struct Store {
    ids: Ids,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Arc<Stored>>,
    order: VecDeque<String>,
}

/// Why a Responses request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponsesError {
    /// `previous_response_id` names a response this mock does not hold.
    #[error("Previous response with id '{0}' not found.")]
    PreviousNotFound(String),
    /// The id of a `/v1/responses/{id}` call is unknown.
    #[error("Response with id '{0}' not found.")]
    NotFound(String),
    /// Cancel of a response that was not created in the background.
    #[error("Cannot cancel a synchronous response.")]
    NotBackground,
}

impl Store {
    /// Builds the answer to `request` (checking its `previous_response_id`),
    /// from a behaviour of `chunks` chunks; [`Store::keep`] stores it once
    /// it is sent.
    pub fn answer(&self, request: ResponsesRequest, chunks: u32) -> Result<Stored, ResponsesError> {
        if let Some(previous) = &request.previous_response_id
            && !self.lock().by_id.contains_key(previous)
        {
            return Err(ResponsesError::PreviousNotFound(previous.clone()));
        }
        let (pieces, cut) = tools::text_pieces(None, chunks, request.max_output_tokens);
        let background = request.background == Some(true) && request.stream != Some(true);
        let status = match (background, cut) {
            (true, _) => "in_progress",
            (false, true) => "incomplete",
            (false, false) => "completed",
        };
        let id = self.ids.next("resp");
        let message_id = self.ids.next("msg");
        let input_tokens = request.input_tokens();
        let input_items = request
            .input
            .map(|i| i.into_items(&self.ids))
            .unwrap_or_default();
        Ok(Stored {
            id,
            message_id,
            created_at: unix_now(),
            model: request.model,
            instructions: request.instructions,
            previous_response_id: request.previous_response_id,
            status,
            pieces: pieces.into_iter().map(Cow::into_owned).collect(),
            input_tokens,
            max_output_tokens: request.max_output_tokens,
            background,
            store: request.store != Some(false),
            input_items,
        })
    }

    /// Keeps a sent response (unless it asked `store: false`).
    pub fn keep(&self, response: Stored) {
        if !response.store {
            return;
        }
        let mut inner = self.lock();
        inner.order.push_back(response.id.clone());
        inner.by_id.insert(response.id.clone(), Arc::new(response));
        while inner.order.len() > MAX_STORED {
            if let Some(old) = inner.order.pop_front() {
                inner.by_id.remove(&old);
            }
        }
    }

    /// The stored response with this id.
    pub fn get(&self, id: &str) -> Result<Arc<Stored>, ResponsesError> {
        self.lock()
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| ResponsesError::NotFound(id.to_owned()))
    }

    /// Forgets a response; the answer body of `DELETE`.
    pub fn delete(&self, id: &str) -> Result<Bytes, ResponsesError> {
        self.lock()
            .by_id
            .remove(id)
            .ok_or_else(|| ResponsesError::NotFound(id.to_owned()))?;
        Ok(json_body(
            &json!({"id": id, "object": "response", "deleted": true}),
        ))
    }

    /// Cancels a background response; the answer body of `cancel`.
    pub fn cancel(&self, id: &str) -> Result<Bytes, ResponsesError> {
        let mut inner = self.lock();
        let stored = inner
            .by_id
            .get_mut(id)
            .ok_or_else(|| ResponsesError::NotFound(id.to_owned()))?;
        if !stored.background {
            return Err(ResponsesError::NotBackground);
        }
        if stored.status == "in_progress" {
            Arc::make_mut(stored).status = "cancelled";
        }
        Ok(stored.body())
    }

    /// Forgets every response (`POST /_mock/reset`).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.by_id.clear();
        inner.order.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Input {
    /// The items as `input_items` lists them, each with an id.
    fn into_items(self, ids: &Ids) -> Vec<Value> {
        let items = match self {
            Input::Text(text) => vec![json!({
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}],
            })],
            Input::Items(items) => items,
        };
        let mut budget = MAX_ITEM_BYTES;
        let mut kept = Vec::new();
        for mut item in items {
            if let Value::Object(map) = &mut item {
                map.entry("id")
                    .or_insert_with(|| Value::from(ids.next("msg")));
                map.entry("status")
                    .or_insert_with(|| Value::from("completed"));
            }
            let size = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len());
            if size > budget {
                break;
            }
            budget -= size;
            kept.push(item);
        }
        kept
    }
}

impl ResponsesRequest {
    /// Token count of the instructions and input text: characters / 4,
    /// rounded up, at least 1.
    pub fn input_tokens(&self) -> u32 {
        fn chars(value: &Value) -> usize {
            match value {
                Value::String(text) => text.chars().count(),
                Value::Array(parts) => parts.iter().map(chars).sum(),
                Value::Object(map) => ["content", "text", "output"]
                    .iter()
                    .filter_map(|k| map.get(*k))
                    .map(chars)
                    .sum(),
                _ => 0,
            }
        }
        let input = match &self.input {
            Some(Input::Text(text)) => text.chars().count(),
            Some(Input::Items(items)) => items.iter().map(chars).sum(),
            None => 0,
        };
        let instructions = self
            .instructions
            .as_deref()
            .map_or(0, |t| t.chars().count());
        u32::try_from((input + instructions).div_ceil(4))
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn request(json: Value) -> ResponsesRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_store_keeps_the_newest_and_follows_only_its_own() {
        let store = Store::default();
        let mut ids = Vec::new();
        for _ in 0..MAX_STORED + 2 {
            let stored = store
                .answer(request(json!({"model": "m", "input": "hi"})), 2)
                .unwrap();
            ids.push(stored.id().to_owned());
            store.keep(stored);
        }
        assert!(store.get(&ids[0]).is_err());
        assert!(store.get(&ids[1]).is_err());
        assert!(store.get(&ids[2]).is_ok());
        let follow = json!({"model": "m", "input": "x", "previous_response_id": ids[0]});
        assert_eq!(
            store.answer(request(follow), 2).unwrap_err(),
            ResponsesError::PreviousNotFound(ids[0].clone())
        );

        let other = Store::default();
        let theirs = other.answer(request(json!({"model": "m"})), 1).unwrap();
        assert!(
            !ids.contains(&theirs.id().to_owned()),
            "ids differ between mocks"
        );
        store.clear();
        assert!(store.get(ids.last().unwrap()).is_err());
    }

    #[test]
    fn input_tokens_count_instructions_and_item_text() {
        let r = request(json!({"model": "m", "instructions": "abcd", "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "abcd"}]},
            {"type": "function_call_output", "call_id": "c", "output": "ab"},
        ]}));
        assert_eq!(r.input_tokens(), 3); // 10 characters
    }
}
