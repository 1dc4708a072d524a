//! A client of OpenAI chat completions, a native Anthropic Messages target:
//! the request rewritten into a Messages request, the answer and the
//! stream rewritten back into a chat completion and its chunks, so an
//! OpenAI-SDK application can use native Claude (prompt caching and all)
//! without changing a line.
//!
//! # Layout
//!
//! - `request.rs`: chat request → Messages request ([`request()`]); what
//!   cannot be carried over faithfully is a
//!   [`TranslateError`](super::TranslateError) naming the
//!   field.
//! - `messages.rs`: the `messages` array (roles, content parts, tool
//!   calls and results), for `request.rs`.
//! - `response.rs`: Messages answer → chat completion ([`response()`]).
//! - `stream.rs`: Messages events → chat chunks ([`Stream`]), one event in,
//!   its chunks out, nothing held back.
//! - `usage.rs`: Anthropic's usage → OpenAI's, shared by the answer and the
//!   stream.

mod messages;
mod request;
mod response;
mod stream;
mod usage;

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use request::request;
pub use response::response;
pub use stream::Stream;

/// A translated request, and what the answer's translation needs to know
/// about it: the client's `stream_options.include_usage` is not sent on
/// (Anthropic always reports usage), so the stream translator must know
/// whether the client wants its closing usage chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The Anthropic Messages request body.
    pub body: Bytes,
    /// The client asked `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`. A reason this
/// build does not know is `stop`: the message did end, and `stop` is the
/// reason a client treats as "nothing unusual".
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn (the turn paused; the client
        // continues it by sending the answer back) and anything newer.
        _ => "stop",
    }
}
