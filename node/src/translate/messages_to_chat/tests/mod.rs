//! Tests of the Messages -> chat translation, with the helpers they share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::translate::{StreamTranslator, parse_events};

mod answer;
mod hostile;
mod request;
mod stream;

fn translate(body: Value) -> Value {
    let out = request(&serde_json::to_vec(&body).unwrap(), "gpt-4o").unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// The path of the error `body` is refused with.
fn refused(body: Value) -> String {
    request(&serde_json::to_vec(&body).unwrap(), "gpt-4o")
        .unwrap_err()
        .field
}

/// A valid request with `extra` merged in at the top level.
fn with(extra: Value) -> Value {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn answer(body: Value) -> Value {
    let out = response(&serde_json::to_vec(&body).unwrap()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// Events as (name, data) pairs.
fn events(out: &[u8]) -> Vec<(String, Value)> {
    parse_events(out)
        .into_iter()
        .map(|e| {
            (
                e.event.unwrap().to_owned(),
                serde_json::from_slice(&e.data).unwrap(),
            )
        })
        .collect()
}

fn names(out: &[u8]) -> Vec<String> {
    events(out).into_iter().map(|(name, _)| name).collect()
}

/// Chat chunks as SSE events, each its own `data:` event.
fn sse(chunks: &[Value]) -> Vec<Vec<u8>> {
    chunks
        .iter()
        .map(|c| format!("data: {c}\n\n").into_bytes())
        .chain([b"data: [DONE]\n\n".to_vec()])
        .collect()
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn usage_chunk() -> Value {
    json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 10}}})
}

/// Feeds each event in its own call, then all at once: both must agree.
fn run_stream(chunks: &[Value]) -> BytesMut {
    let events = sse(chunks);
    let mut one_by_one = BytesMut::new();
    let mut stream = Stream::new();
    for event in &events {
        stream.events(event, &mut one_by_one);
    }
    stream.finish(&mut one_by_one);
    let mut at_once = BytesMut::new();
    let mut stream = Stream::default();
    stream.events(&events.concat(), &mut at_once);
    stream.finish(&mut at_once);
    assert_eq!(one_by_one, at_once);
    one_by_one
}
