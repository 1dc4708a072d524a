//! A small client for a node's admin API, with the errors an operator needs
//! to see: the node cannot be reached, the token is wrong, or the node
//! refused the change (with the field it names).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proto::api::openai::ErrorEnvelope;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address is not a URL.
    #[error("`{0}` is not an admin URL (expected e.g. http://127.0.0.1:9080)")]
    BadUrl(String),
    /// Nothing answered.
    #[error("cannot reach the node at {url}: {message}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
    /// 401: the token is missing or wrong.
    #[error("{}", unauthorized(url, token_env, *token_set))]
    Unauthorized {
        /// Where.
        url: String,
        /// The variable the token is read from.
        token_env: String,
        /// Whether that variable held a token at all.
        token_set: bool,
    },
    /// Any other error answer.
    #[error("the node refused: {status}: {message}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The field the node named, if any.
        field: Option<String>,
        /// The node's message, with the field it names.
        message: String,
    },
    /// The node answered, but not in the shape this CLI reads (a node of
    /// another version, or not a Meridian node).
    #[error("the node at {url} answered {path} in a shape this CLI does not read: {message}")]
    Unexpected {
        /// Where.
        url: String,
        /// What was asked.
        path: String,
        /// What did not fit.
        message: String,
    },
}

fn unauthorized(url: &str, token_env: &str, token_set: bool) -> String {
    if token_set {
        format!(
            "the node at {url} refused the admin token in {token_env} (401): set {token_env} to the \
             node's token, or name another variable with --token-env"
        )
    } else {
        format!(
            "the node at {url} requires an admin token (401) and {token_env} is not set: set \
             {token_env}, or name another variable with --token-env"
        )
    }
}

/// Exit status for input the node or the CLI refused (EX_USAGE), as for an
/// unusable configuration file.
pub const EXIT_INPUT: u8 = 64;
/// Exit status for a refused admin token (EX_NOPERM).
pub const EXIT_TOKEN: u8 = 77;

impl AdminError {
    /// The process exit status this error should end the command with:
    /// 64 for input refused (a 4xx naming a field, a bad URL), 77 for a
    /// refused token, 1 when the node cannot be reached or failed itself,
    /// so scripts can tell "fix your input" from "try again".
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BadUrl(_) => EXIT_INPUT,
            Self::Unauthorized { .. } => EXIT_TOKEN,
            Self::Refused { status, .. } if status.is_client_error() => EXIT_INPUT,
            Self::Refused { .. } | Self::Unreachable { .. } | Self::Unexpected { .. } => 1,
        }
    }
}

/// An admin API endpoint and its token.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    token_env: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:9080`), with
    /// the token read from the environment variable `token_env`.
    pub fn new(base: &str, token_env: &str) -> Result<Self, AdminError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(AdminError::BadUrl(base));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        Ok(Self {
            token: std::env::var(token_env).ok().filter(|t| !t.is_empty()),
            token_env: token_env.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(http),
            base,
        })
    }

    /// The node's admin URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let payload = body.map(Value::to_string).unwrap_or_default();
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .map_err(|_| AdminError::BadUrl(url.clone()))?;
        let unreachable = |message: String| AdminError::Unreachable {
            url: self.base.clone(),
            message,
        };
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| unreachable("no answer within 30 s".into()))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if status == StatusCode::UNAUTHORIZED {
            return Err(AdminError::Unauthorized {
                url: self.base.clone(),
                token_env: self.token_env.clone(),
                token_set: self.token.is_some(),
            });
        }
        if !status.is_success() {
            let envelope = serde_json::from_slice::<ErrorEnvelope<'_>>(&bytes).ok();
            let message = envelope.as_ref().map_or_else(
                || String::from_utf8_lossy(&bytes).trim().to_owned(),
                |e| e.error.message.to_string(),
            );
            let field = envelope.and_then(|e| e.error.param.map(|p| p.into_owned()));
            // The node's messages often start with the field already.
            let message = match &field {
                Some(f) if !message.starts_with(f.as_str()) => format!("{f}: {message}"),
                _ => message,
            };
            return Err(AdminError::Refused {
                status,
                field,
                message,
            });
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Sends a request and reads the answer as `T`, keeping the JSON as the
    /// node wrote it (for `--output json`).
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer<T>, AdminError> {
        let json = self.call(method, path, body).await?;
        let typed = T::deserialize(&json).map_err(|e| AdminError::Unexpected {
            url: self.base.clone(),
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Answer { typed, json })
    }
}

/// An answer read as its wire type, with the JSON it came as.
pub struct Answer<T> {
    /// The answer, typed.
    pub typed: T,
    /// The same, as the node wrote it.
    pub json: Value,
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn exit_codes_tell_input_from_token_from_trouble() {
        let refused = |status| AdminError::Refused {
            status,
            field: None,
            message: String::new(),
        };
        assert_eq!(refused(StatusCode::BAD_REQUEST).exit_code(), EXIT_INPUT);
        assert_eq!(refused(StatusCode::SERVICE_UNAVAILABLE).exit_code(), 1);
        let unexpected = AdminError::Unexpected {
            url: "http://127.0.0.1:9080".into(),
            path: "/admin/v1/cluster".into(),
            message: "missing field `role`".into(),
        };
        assert_eq!(unexpected.exit_code(), 1);
        assert!(unexpected.to_string().contains("/admin/v1/cluster"));
        assert_eq!(AdminError::BadUrl("x".into()).exit_code(), EXIT_INPUT);
    }
}
