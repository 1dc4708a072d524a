//! The admin API's one error type: every refusal and failure a handler can
//! answer, each with its HTTP status and stable `code`, written as the
//! OpenAI error envelope in one place ([`IntoResponse`]), naming the
//! offending field in `param`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::state::LAST_KEY;

use crate::cluster::WriteError;
use crate::error::error_json;

/// Why an admin request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No bearer token, or not the admin token.
    #[error("A valid admin token is required: `Authorization: Bearer TOKEN`.")]
    Unauthorized,
    /// The body is over the admin API's limit.
    #[error("the body is over the admin API's limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request (its body, or a value in it) cannot be used; names the
    /// field when it can.
    #[error("{message}")]
    Invalid {
        /// The field at fault, as a path in the body (`tiers[0][1].model`).
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// No upstream, route or key of this name.
    #[error("no {what} `{name}`")]
    NotFound {
        /// `upstream`, `route` or `key`.
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// No member of this id.
    #[error("node {0} is not a member")]
    NotAMember(u64),
    /// Removing the last voter would leave a cluster that commits nothing.
    #[error(
        "node {0} is the cluster's last voter: without a voter nothing can be committed; \
         add another voter first"
    )]
    LastVoter(u64),
    /// Deleting the last client key would open the data plane on loopback.
    #[error("{LAST_KEY}")]
    LastKey,
    /// Another change won a race between the check and the commit.
    #[error("{message}")]
    Conflict {
        /// The field the state machine refused.
        field: String,
        /// Why.
        message: String,
    },
    /// A write or a consistent read did not complete.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// This node's Raft core stopped.
    #[error("The Raft core stopped: {0}.")]
    RaftStopped(String),
    /// `/metrics` could not be encoded.
    #[error("The metrics could not be encoded.")]
    Metrics,
    /// Without an admin token, a request whose `Host` or `Origin` (named)
    /// is not a loopback host: a web page's, not a local tool's.
    #[error(
        "Without an admin token this API answers only requests to and from a loopback \
         host; the {0} header names another. Set the admin token to use it from elsewhere."
    )]
    NotLocal(&'static str),
}

impl AdminError {
    /// A refused value, naming its field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A body that cannot be used as a whole (no single field at fault).
    pub fn unusable(message: impl Into<String>) -> Self {
        Self::Invalid {
            field: None,
            message: message.into(),
        }
    }

    /// The status the client receives. A write fails 503 while there is no
    /// leader to reach or no quorum (retry), 421 at a follower for what only
    /// the leader does, 504 when a new member did not catch up, 500 when
    /// Raft itself failed.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotLocal(_) => StatusCode::FORBIDDEN,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } | Self::NotAMember(_) => StatusCode::NOT_FOUND,
            Self::LastVoter(_) | Self::LastKey | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Write(
                WriteError::NoLeader
                | WriteError::Unreachable(_)
                | WriteError::NoQuorum(_)
                | WriteError::CutOff(_),
            )
            | Self::RaftStopped(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Write(WriteError::NotLeader { .. }) => StatusCode::MISDIRECTED_REQUEST,
            Self::Write(WriteError::NotCaughtUp(..)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Write(WriteError::Raft(_)) | Self::Metrics => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code programs match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "invalid_admin_token",
            Self::NotLocal(_) => "not_local",
            Self::TooLarge { .. } => "request_too_large",
            Self::Invalid { .. } => "invalid_config",
            Self::NotFound { .. } | Self::NotAMember(_) => "not_found",
            Self::LastVoter(_) => "last_voter",
            Self::LastKey => "last_key",
            Self::Conflict { .. } => "conflict",
            Self::Write(
                WriteError::NoLeader
                | WriteError::Unreachable(_)
                | WriteError::NoQuorum(_)
                | WriteError::CutOff(_),
            ) => "no_leader",
            Self::Write(WriteError::NotLeader { .. }) => "not_leader",
            Self::Write(WriteError::NotCaughtUp(..)) => "not_caught_up",
            Self::Write(WriteError::Raft(_)) => "raft_error",
            Self::RaftStopped(_) => "raft_stopped",
            Self::Metrics => "metrics_error",
        }
    }

    /// The field at fault, for `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => field.as_deref(),
            Self::Conflict { field, .. } => Some(field),
            Self::NotAMember(_) | Self::LastVoter(_) | Self::Write(WriteError::NotCaughtUp(..)) => {
                Some("id")
            }
            Self::LastKey => Some("name"),
            _ => None,
        }
    }

    /// Whether the client should retry after a second (`Retry-After: 1`):
    /// a write or consistent read that found no leader or no quorum.
    fn retry_soon(&self) -> bool {
        matches!(
            self,
            Self::Write(
                WriteError::NoLeader
                    | WriteError::Unreachable(_)
                    | WriteError::NoQuorum(_)
                    | WriteError::CutOff(_)
            )
        )
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = if status.is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        };
        let body = error_json(&self.to_string(), kind, self.param(), Some(self.code()));
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if self.retry_soon() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// What a client reads of an admin answer: its status, its `Retry-After`
/// and its body, for the tests of this module and of the handlers.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(super) fn read(response: Response) -> (StatusCode, Option<String>, String) {
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = runtime
        .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
        .unwrap();
    (status, retry, String::from_utf8(bytes.to_vec()).unwrap())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    fn answer(e: AdminError) -> (StatusCode, Option<String>, String) {
        read(e.into_response())
    }

    #[test]
    fn each_error_has_its_status_code_and_body() {
        // The bodies as the handlers wrote them by hand before this type.
        let cases = [
            (
                AdminError::Unauthorized,
                401,
                None,
                r#"{"error":{"message":"A valid admin token is required: `Authorization: Bearer TOKEN`.","type":"invalid_request_error","param":null,"code":"invalid_admin_token"}}"#,
            ),
            (
                AdminError::TooLarge { limit: 1 << 20 },
                413,
                None,
                r#"{"error":{"message":"the body is over the admin API's limit of 1048576 bytes","type":"invalid_request_error","param":null,"code":"request_too_large"}}"#,
            ),
            (
                AdminError::invalid("raft_addr", "must be host:port"),
                400,
                None,
                r#"{"error":{"message":"must be host:port","type":"invalid_request_error","param":"raft_addr","code":"invalid_config"}}"#,
            ),
            (
                AdminError::NotFound {
                    what: "route",
                    name: "gpt-9".into(),
                },
                404,
                None,
                r#"{"error":{"message":"no route `gpt-9`","type":"invalid_request_error","param":null,"code":"not_found"}}"#,
            ),
            (
                AdminError::NotAMember(7),
                404,
                None,
                r#"{"error":{"message":"node 7 is not a member","type":"invalid_request_error","param":"id","code":"not_found"}}"#,
            ),
            (
                AdminError::LastKey,
                409,
                None,
                &format!(
                    r#"{{"error":{{"message":"{LAST_KEY}","type":"invalid_request_error","param":"name","code":"last_key"}}}}"#
                ),
            ),
            (
                AdminError::Write(WriteError::NoLeader),
                503,
                Some("1"),
                r#"{"error":{"message":"no leader is known; the cluster may be electing or without quorum","type":"server_error","param":null,"code":"no_leader"}}"#,
            ),
            (
                AdminError::Write(WriteError::NotLeader {
                    leader: 2,
                    where_: "127.0.0.1:9081".into(),
                }),
                421,
                None,
                r#"{"error":{"message":"membership changes are made on the leader: node 2 at 127.0.0.1:9081","type":"invalid_request_error","param":null,"code":"not_leader"}}"#,
            ),
            (
                AdminError::Write(WriteError::Raft("boom".into())),
                500,
                None,
                r#"{"error":{"message":"raft: boom","type":"server_error","param":null,"code":"raft_error"}}"#,
            ),
            (
                AdminError::RaftStopped("fatal".into()),
                503,
                None,
                r#"{"error":{"message":"The Raft core stopped: fatal.","type":"server_error","param":null,"code":"raft_stopped"}}"#,
            ),
        ];
        for (error, status, retry, body) in cases {
            let (s, r, b) = answer(error);
            assert_eq!(
                (s.as_u16(), r.as_deref(), b.as_str()),
                (status, retry, body)
            );
        }
        let (s, r, _) = answer(AdminError::Write(WriteError::NoQuorum(
            Duration::from_secs(5),
        )));
        assert_eq!((s.as_u16(), r.as_deref()), (503, Some("1")));
        let (s, _, b) = answer(AdminError::Write(WriteError::NotCaughtUp(
            4,
            Duration::from_secs(5),
        )));
        assert_eq!(s.as_u16(), 504);
        assert!(b.contains(r#""param":"id","code":"not_caught_up""#), "{b}");
    }
}
