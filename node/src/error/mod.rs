//! The data plane's one error type. Every variant knows the HTTP status it
//! maps to, whether another target may still succeed (retryable), and how it
//! reads as an OpenAI error body, so clients and SDKs see the error classes
//! they already handle.
//!
//! [`AttemptError`] is why one attempt at one upstream failed, and
//! [`Attempts`] the account of a request's failed attempts that the client's
//! 502, 504 or 429 quotes.

mod anthropic;
mod attempt;
mod stream;

pub use anthropic::{
    anthropic_error_json, anthropic_error_to_openai, anthropic_stream_error, anthropic_type,
    openai_error_to_anthropic,
};
pub use attempt::{AttemptError, Attempts, FailureSource, Tried, retry_after, retryable_status};
pub use stream::openai_stream_error;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use proto::api::openai::ErrorEnvelope;

use crate::translate::TranslateError;

/// Why a request was not answered by an upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The body is not the JSON object the endpoint expects.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, for the client.
        message: String,
        /// The offending request field, when there is one.
        param: Option<&'static str>,
    },
    /// A request that cannot reach any target of its route faithfully:
    /// every target speaks another API and the request holds what that
    /// API cannot express (Anthropic's `thinking` for an OpenAI target).
    #[error("`{}` cannot be sent to this route's targets: {}", .0.field, .0.message)]
    Untranslatable(TranslateError),
    /// The route has no target that can answer this endpoint at all
    /// (count_tokens without a native Anthropic target, the Responses API
    /// without a target that declares it).
    #[error("{message}")]
    NotServed {
        /// What is missing and how to fix it.
        message: String,
        /// Answered 404 (an endpoint the route lacks) rather than 400.
        not_found: bool,
    },
    /// A header the client sent for the upstream is not acceptable.
    #[error("The `{name}` header is not valid: {message}")]
    BadHeader {
        /// The header.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// A query string on an endpoint that takes none (the Responses API's
    /// calls check their own): named, never silently dropped.
    #[error(
        "Query parameters are not accepted on this endpoint (got `{param}`): send every option \
         in the JSON body; an upstream's own, such as Azure's api-version, is set by Meridian's \
         configuration."
    )]
    QueryRefused {
        /// The first parameter's name as sent (percent-encoded), cut to 64 bytes.
        param: String,
    },
    /// No client key, or one that is not configured.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The `model` names no route.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    UnknownModel(String),
    /// `{upstream}/{model}` names an upstream whose catalogue (declared or
    /// discovered) does not list the model.
    #[error(
        "The model `{model}` is not among the {count} models upstream `{upstream}` serves; \
         GET /v1/models lists them."
    )]
    NotInCatalogue {
        /// The name the client sent.
        model: String,
        /// The upstream it addressed.
        upstream: String,
        /// How many models that upstream lists.
        count: usize,
    },
    /// No such endpoint.
    #[error("Unknown request URL: {method} {path}.")]
    UnknownPath {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The endpoint exists but not for this method.
    #[error("{method} is not supported on {path}; use {allowed}.")]
    MethodNotAllowed {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The method the path takes.
        allowed: &'static str,
    },
    /// The body is larger than `proxy.max_request_bytes`.
    #[error("Request body is larger than the limit of {limit} bytes.")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body did not arrive whole within `connections.body_timeout_ms`.
    #[error("The request body did not arrive within {timeout_ms} ms.")]
    BodyTimeout {
        /// The configured limit.
        timeout_ms: u64,
    },
    /// This node is at `proxy.max_in_flight`.
    #[error("Meridian is at its limit of {limit} requests in flight; retry shortly.")]
    Overloaded {
        /// The configured limit.
        limit: usize,
    },
    /// No target of the route had a slot the request's class may use
    /// (each upstream's `max_concurrency`, or the node's `max_in_flight`,
    /// as the classes divide it).
    #[error("No capacity is left for class `{class}` right now; retry shortly.")]
    Shed {
        /// The request's class.
        class: String,
        /// How long the client should wait.
        retry_after: Duration,
    },
    /// Every upstream tried answered 429.
    #[error("Every upstream is rate limiting: {attempts}")]
    RateLimited {
        /// The attempts made, in order.
        attempts: Attempts,
        /// The shortest wait any upstream asked for.
        retry_after: Duration,
    },
    /// The route has no target this node can use (e.g. provider keys missing).
    #[error("No upstream of model `{0}` is usable on this node.")]
    NoUsableUpstream(String),
    /// The cluster removed this node: its configuration may be stale (a
    /// deleted route, a revoked key), so it serves nothing.
    #[error(
        "This Meridian node was removed from its cluster and serves nothing; send the request to another region."
    )]
    Removed,
    /// Attempts were made and none succeeded.
    #[error("No upstream could answer: {attempts}")]
    UpstreamsFailed {
        /// The attempts made, in order.
        attempts: Attempts,
    },
    /// Every upstream tried said it is overloaded (Anthropic's 529).
    #[error("Every upstream is overloaded: {attempts}")]
    UpstreamsOverloaded {
        /// The attempts made, in order.
        attempts: Attempts,
    },
    /// The key may not call this model (its allowlist).
    #[error("This key may not use the model `{0}`.")]
    ModelNotAllowed(String),
    /// The key is over its requests or tokens per minute.
    #[error(
        "Rate limit reached for {what} per minute: this key may use {limit} {what} per minute \
         across the cluster. Retry after {}s.", retry_secs(.retry_after)
    )]
    KeyRateLimited {
        /// `requests` or `tokens`: OpenAI's error type for it.
        what: &'static str,
        /// The key's limit per minute.
        limit: u64,
        /// How long until this node admits it again.
        retry_after: Duration,
    },
    /// The key's prepaid credits are spent.
    #[error(
        "This key's credits are spent: its prepaid balance is used up. Ask the operator for a \
         top-up."
    )]
    InsufficientQuota,
    /// The request deadline passed before any upstream answered.
    #[error("No upstream answered in time: {attempts}")]
    UpstreamsTimedOut {
        /// The attempts made, in order.
        attempts: Attempts,
    },
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. }
            | Self::Untranslatable(_)
            | Self::BadHeader { .. }
            | Self::QueryRefused { .. } => StatusCode::BAD_REQUEST,
            Self::NotServed { not_found, .. } => {
                if *not_found {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::UnknownModel(_) | Self::NotInCatalogue { .. } | Self::UnknownPath { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Overloaded { .. }
            | Self::Shed { .. }
            | Self::RateLimited { .. }
            | Self::KeyRateLimited { .. }
            | Self::InsufficientQuota => StatusCode::TOO_MANY_REQUESTS,
            Self::NoUsableUpstream(_) | Self::UpstreamsOverloaded { .. } | Self::Removed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamsFailed { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamsTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the client may succeed by sending the same request again:
    /// the node or its upstreams failed, not the request. Such failures are
    /// logged as warnings; refusals of the request itself as information.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Overloaded { .. }
                | Self::Shed { .. }
                | Self::RateLimited { .. }
                | Self::NoUsableUpstream(_)
                | Self::Removed
                | Self::UpstreamsOverloaded { .. }
                | Self::UpstreamsFailed { .. }
                | Self::UpstreamsTimedOut { .. }
        )
    }

    /// How long the client should wait before retrying, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { .. } | Self::UpstreamsOverloaded { .. } => {
                Some(Duration::from_secs(1))
            }
            Self::RateLimited { retry_after, .. }
            | Self::KeyRateLimited { retry_after, .. }
            | Self::Shed { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    fn kind(&self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::BadRequest { .. } => ("invalid_request_error", None),
            Self::Untranslatable(_) => ("invalid_request_error", Some("untranslatable")),
            Self::NotServed { .. } => ("invalid_request_error", Some("not_served")),
            Self::BadHeader { .. } => ("invalid_request_error", Some("invalid_header")),
            Self::QueryRefused { .. } => ("invalid_request_error", Some("unsupported_parameter")),
            Self::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key")),
            Self::UnknownModel(_) | Self::NotInCatalogue { .. } => {
                ("invalid_request_error", Some("model_not_found"))
            }
            Self::UnknownPath { .. } => ("invalid_request_error", Some("unknown_url")),
            Self::MethodNotAllowed { .. } => ("invalid_request_error", Some("method_not_allowed")),
            Self::TooLarge { .. } => ("invalid_request_error", Some("request_too_large")),
            Self::BodyTimeout { .. } => ("invalid_request_error", Some("request_timeout")),
            Self::Overloaded { .. } | Self::Shed { .. } => ("rate_limit_error", Some("overloaded")),
            Self::RateLimited { .. } => ("rate_limit_error", Some("rate_limit_exceeded")),
            Self::ModelNotAllowed(_) => ("permission_error", Some("model_not_allowed")),
            Self::KeyRateLimited { what, .. } => (what, Some("rate_limit_exceeded")),
            Self::InsufficientQuota => ("insufficient_quota", Some("insufficient_quota")),
            Self::NoUsableUpstream(_) => ("server_error", Some("no_usable_upstream")),
            Self::Removed => ("server_error", Some("node_removed")),
            Self::UpstreamsFailed { .. } => ("server_error", Some("upstream_error")),
            Self::UpstreamsOverloaded { .. } => ("server_error", Some("upstream_overloaded")),
            Self::UpstreamsTimedOut { .. } => ("server_error", Some("upstream_timeout")),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            Self::BadRequest { param, .. } => *param,
            Self::Untranslatable(e) => Some(&e.field),
            Self::BadHeader { name, .. } => Some(name),
            Self::QueryRefused { param } => Some(param),
            Self::UnknownModel(_) | Self::NotInCatalogue { .. } | Self::ModelNotAllowed(_) => {
                Some("model")
            }
            _ => None,
        }
    }

    /// The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Bytes {
        let (kind, code) = self.kind();
        error_json(&self.to_string(), kind, self.param(), code)
    }

    /// The status and body an Anthropic Messages client gets, so the
    /// anthropic SDK raises its own classes: the same status, except that
    /// this node being full is Anthropic's 529 `overloaded_error`.
    pub fn anthropic(&self) -> (StatusCode, Bytes) {
        let status = match self {
            Self::Overloaded { .. } | Self::UpstreamsOverloaded { .. } => anthropic::OVERLOADED,
            _ => self.status(),
        };
        // A shed request stays a 429, as for OpenAI clients, in the shape
        // of Anthropic's `overloaded_error`.
        let kind = match self {
            Self::Shed { .. } => "overloaded_error",
            _ => anthropic_type(status),
        };
        (status, anthropic_error_json(kind, &self.to_string()))
    }
}

/// A wait in whole seconds, at least one, as `Retry-After` says it.
pub fn retry_secs(wait: &Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Serialises an OpenAI-style error object ([`ErrorEnvelope`]); shared
/// with the SSE error event and the admin API's errors.
pub fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    let envelope = ErrorEnvelope::new(message, kind, param, code);
    // Serialising plain strings and options into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use http::HeaderMap;

    use super::attempt::attempts;
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let e = ProxyError::UnknownModel("gpt-9".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(!e.retryable());
    }

    #[test]
    fn a_keys_limits_read_as_openai_says_them() {
        let v = |e: &ProxyError| serde_json::from_slice::<serde_json::Value>(&e.body()).unwrap();
        let denied = ProxyError::ModelNotAllowed("big".into());
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        let body = v(&denied);
        assert_eq!(body["error"]["type"], "permission_error");
        assert_eq!(body["error"]["code"], "model_not_allowed");
        assert_eq!(body["error"]["param"], "model");
        let limited = ProxyError::KeyRateLimited {
            what: "tokens",
            limit: 100,
            retry_after: Duration::from_millis(1_200),
        };
        assert_eq!(v(&limited)["error"]["type"], "tokens");
        assert_eq!(v(&limited)["error"]["code"], "rate_limit_exceeded");
        assert!(
            v(&limited)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2s")
        );
        let quota = ProxyError::InsufficientQuota;
        assert_eq!(quota.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(quota.retry_after(), None);
        assert_eq!(v(&quota)["error"]["code"], "insufficient_quota");
        let (status, body) = quota.anthropic();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let a: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(a["error"]["type"], "rate_limit_error");
        assert!(a["error"]["message"].as_str().unwrap().contains("credits"));
        let (status, body) = denied.anthropic();
        assert_eq!(status, StatusCode::FORBIDDEN);
        let a: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(a["error"]["type"], "permission_error");
    }

    #[test]
    fn upstream_failures_are_retryable_server_errors() {
        let failed = ProxyError::UpstreamsFailed {
            attempts: attempts(AttemptError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                None,
            )),
        };
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
        assert!(failed.retryable());
        let timed_out = ProxyError::UpstreamsTimedOut {
            attempts: attempts(AttemptError::Timeout {
                after: Duration::from_secs(1),
            }),
        };
        assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);
        let limited = ProxyError::RateLimited {
            attempts: attempts(AttemptError::status(
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                None,
            )),
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    }

    /// What the client may retry is what the node logs as a warning: the
    /// server errors and the 429s.
    #[test]
    fn client_retries_are_the_server_side_failures() {
        let none = Attempts::default;
        let all = [
            ProxyError::BadRequest {
                message: "m".into(),
                param: None,
            },
            ProxyError::Unauthorized("no"),
            ProxyError::Untranslatable(TranslateError::new("thinking", "no")),
            ProxyError::NotServed {
                message: "m".into(),
                not_found: true,
            },
            ProxyError::BadHeader {
                name: "anthropic-beta",
                message: "m".into(),
            },
            ProxyError::UnknownModel("m".into()),
            ProxyError::UnknownPath {
                method: "GET".into(),
                path: "/".into(),
            },
            ProxyError::MethodNotAllowed {
                method: "GET".into(),
                path: "/".into(),
                allowed: "POST",
            },
            ProxyError::TooLarge { limit: 1 },
            ProxyError::BodyTimeout { timeout_ms: 1 },
            ProxyError::Overloaded { limit: 1 },
            ProxyError::Shed {
                class: "free".into(),
                retry_after: Duration::from_secs(1),
            },
            ProxyError::RateLimited {
                attempts: none(),
                retry_after: Duration::from_secs(1),
            },
            ProxyError::NoUsableUpstream("m".into()),
            ProxyError::Removed,
            ProxyError::UpstreamsFailed { attempts: none() },
            ProxyError::UpstreamsOverloaded { attempts: none() },
            ProxyError::UpstreamsTimedOut { attempts: none() },
        ];
        // A key's own limits are refusals of the request, not failures.
        for e in [
            ProxyError::ModelNotAllowed("m".into()),
            ProxyError::KeyRateLimited {
                what: "requests",
                limit: 1,
                retry_after: Duration::from_secs(1),
            },
            ProxyError::InsufficientQuota,
        ] {
            assert!(!e.retryable(), "{e:?}");
        }
        for e in all {
            let status = e.status();
            assert_eq!(
                e.retryable(),
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
                "{e:?}"
            );
        }
    }
}
