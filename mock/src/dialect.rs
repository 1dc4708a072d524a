//! Every error answer of the data plane, in the wire format of the path it
//! answers: OpenAI's `{"error": {"message", "type", "param", "code"}}`, or
//! Anthropic's `{"type": "error", "error": {"type", "message"}}` with its
//! error types by status, so either SDK raises its own classes.

use http::{HeaderValue, Method, Response, StatusCode, header};

use super::anthropic;
use super::body::{self, Body};
use super::stats::Endpoint;

/// The wire format of a path, which its errors speak too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The OpenAI paths (chat, completions, embeddings, models, responses).
    OpenAi,
    /// `/v1/messages` and `/v1/messages/count_tokens`.
    Anthropic,
}

impl Dialect {
    /// The format `endpoint` speaks.
    pub(crate) fn of(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Messages | Endpoint::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// A client error (4xx).
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response<Body> {
        match self {
            Dialect::OpenAi => body::error(status, message, "invalid_request_error", None),
            Dialect::Anthropic => anthropic::error(status, message),
        }
    }

    /// 401 for a missing or wrong key.
    pub(crate) fn unauthorized(self) -> Response<Body> {
        match self {
            Dialect::OpenAi => body::error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            Dialect::Anthropic => anthropic::error(StatusCode::UNAUTHORIZED, "invalid x-api-key"),
        }
    }

    /// 404 for an unknown path or method.
    pub(crate) fn not_found(self, method: &Method, path: &str) -> Response<Body> {
        match self {
            Dialect::OpenAi => body::not_found(method, path),
            Dialect::Anthropic => {
                let message = format!("Not found: {method} {path}");
                anthropic::error(StatusCode::NOT_FOUND, &message)
            }
        }
    }

    /// 413 for a body over `limit` bytes.
    pub(crate) fn too_large(self, limit: usize) -> Response<Body> {
        match self {
            Dialect::OpenAi => body::too_large(limit),
            Dialect::Anthropic => {
                let message = format!("request body over {limit} bytes");
                anthropic::error(StatusCode::PAYLOAD_TOO_LARGE, &message)
            }
        }
    }

    /// 400 for a body that does not parse (or lacks a required field).
    pub(crate) fn bad_json(self, detail: &dyn std::fmt::Display) -> Response<Body> {
        match self {
            Dialect::OpenAi => body::bad_json(detail),
            Dialect::Anthropic => anthropic::error(StatusCode::BAD_REQUEST, &detail.to_string()),
        }
    }

    /// The injected 429, with `Retry-After`.
    pub(crate) fn rate_limited(self, retry_after_s: u64) -> Response<Body> {
        let mut response = match self {
            Dialect::OpenAi => {
                let message = format!(
                    "Rate limit reached (meridian-mock). Please try again in {retry_after_s}s."
                );
                body::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    &message,
                    "requests",
                    Some("rate_limit_exceeded"),
                )
            }
            Dialect::Anthropic => {
                let message =
                    format!("Rate limit reached (meridian-mock). Retry after {retry_after_s}s.");
                anthropic::error(StatusCode::TOO_MANY_REQUESTS, &message)
            }
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        response
    }

    /// The injected `error_status` (a 429 among them carries `Retry-After`).
    pub(crate) fn injected(self, status: u16, retry_after_s: u64) -> Response<Body> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!("Injected error {} (meridian-mock)", status.as_u16());
        let mut response = match self {
            Dialect::OpenAi => {
                let kind = if status.is_server_error() {
                    "server_error"
                } else {
                    "invalid_request_error"
                };
                body::error(status, &message, kind, None)
            }
            Dialect::Anthropic => anthropic::error(status, &message),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}
