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
    #[error("the node refused the admin token (set it in {token_env})")]
    Unauthorized {
        /// The variable the token is read from.
        token_env: String,
    },
    /// Any other error answer.
    #[error("{status}: {message}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The node's message, with the field it names.
        message: String,
    },
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
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == StatusCode::UNAUTHORIZED {
            return Err(AdminError::Unauthorized {
                token_env: self.token_env.clone(),
            });
        }
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned();
            let message = match value["error"]["param"].as_str() {
                Some(field) => format!("{field}: {message}"),
                None => message,
            };
            return Err(AdminError::Refused { status, message });
        }
        Ok(value)
    }
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
