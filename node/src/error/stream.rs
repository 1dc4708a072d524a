//! The SSE event that ends an OpenAI stream on an error, for the relay and
//! every translator that writes OpenAI events (Anthropic's is in
//! `anthropic`).

use bytes::{Bytes, BytesMut};

use super::error_json;

/// The SSE event that ends an OpenAI stream on an error: the error body
/// with code `stream_interrupted`, so a client can tell a cut stream from a
/// complete one.
pub fn openai_stream_error(message: &str) -> Bytes {
    let mut event = BytesMut::from(&b"data: "[..]);
    event.extend_from_slice(&error_json(
        message,
        "server_error",
        None,
        Some("stream_interrupted"),
    ));
    event.extend_from_slice(b"\n\n");
    event.freeze()
}
