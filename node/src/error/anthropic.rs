//! Errors in the shape of Anthropic's Messages API, for clients of
//! `/v1/messages`: `{"type": "error", "error": {"type", "message"}}` with
//! Anthropic's statuses and types, which the anthropic SDK maps to its own
//! exception classes.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// Anthropic's "overloaded" status (529), which the SDK raises as
/// `OverloadedError` and retries.
pub(super) const OVERLOADED: StatusCode = match StatusCode::from_u16(529) {
    Ok(status) => status,
    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
};

/// Anthropic's error `type` for a status.
pub fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// `{"type": "error", "error": {"type": kind, "message": message}}`.
pub fn anthropic_error_json(kind: &str, message: &str) -> Bytes {
    let envelope = Envelope {
        kind: "error",
        error: Inner { kind, message },
    };
    // Serialising two strings into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// The `error.message` of an error body in either API's shape (both put
/// it there), if it has one.
fn message_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Message,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error.message)
}

/// An OpenAI-compatible upstream's error answer (the client's own mistake,
/// passed on) in Anthropic's shape, for a Messages client.
pub fn openai_error_to_anthropic(status: StatusCode, body: &[u8]) -> Bytes {
    let message = message_of(body)
        .unwrap_or_else(|| format!("The upstream answered HTTP {}", status.as_u16()));
    anthropic_error_json(anthropic_type(status), &message)
}

/// A native Anthropic upstream's error answer in OpenAI's shape, for a
/// chat-completions client.
pub fn anthropic_error_to_openai(status: StatusCode, body: &[u8]) -> Bytes {
    let message = message_of(body)
        .unwrap_or_else(|| format!("The upstream answered HTTP {}", status.as_u16()));
    super::error_json(&message, "invalid_request_error", None, None)
}

/// The SSE event that ends an Anthropic stream on an error.
pub fn anthropic_stream_error(message: &str) -> Bytes {
    let mut event = b"event: error\ndata: ".to_vec();
    event.extend_from_slice(&anthropic_error_json("api_error", message));
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::error::ProxyError;

    #[test]
    fn every_status_has_the_type_the_sdk_expects() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (405, "invalid_request_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(anthropic_type(StatusCode::from_u16(status).unwrap()), kind);
        }
    }

    #[test]
    fn proxy_errors_read_as_anthropic_errors() {
        let (status, body) = ProxyError::Overloaded { limit: 3 }.anthropic();
        assert_eq!(status.as_u16(), 529);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "overloaded_error");
        // A request shed for its class stays a 429, in the overloaded shape.
        let shed = ProxyError::Shed {
            class: "free".into(),
            retry_after: std::time::Duration::from_secs(2),
        };
        let (status, body) = shed.anthropic();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        let v: serde_json::Value = serde_json::from_slice(&shed.body()).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
        assert_eq!(shed.retry_after(), Some(std::time::Duration::from_secs(2)));
        let (status, body) = ProxyError::UnknownModel("claude-9".into()).anthropic();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "not_found_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("claude-9"));
        // A hostile message stays a JSON string.
        let body = anthropic_error_json("api_error", "\"}\n{\"type\":\"x");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "\"}\n{\"type\":\"x");
    }

    #[test]
    fn upstream_errors_change_shape_and_keep_their_message() {
        let openai =
            br#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error"}}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&openai_error_to_anthropic(StatusCode::BAD_REQUEST, openai))
                .unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "max_tokens is too large");
        let anthropic =
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad tools"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&anthropic_error_to_openai(
            StatusCode::BAD_REQUEST,
            anthropic,
        ))
        .unwrap();
        assert_eq!(v["error"]["message"], "bad tools");
        // Not JSON at all: a generic message naming the status.
        let v: serde_json::Value = serde_json::from_slice(&openai_error_to_anthropic(
            StatusCode::UNPROCESSABLE_ENTITY,
            b"<html>",
        ))
        .unwrap();
        assert_eq!(v["error"]["message"], "The upstream answered HTTP 422");
        let event = anthropic_stream_error("cut");
        assert!(event.starts_with(b"event: error\ndata: {"));
        assert!(event.ends_with(b"\n\n"));
    }
}
