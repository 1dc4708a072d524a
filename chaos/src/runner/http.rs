//! The HTTP client of the runner (admin calls, mock control, load), with
//! failures sorted the way the suite judges them: a refused connection
//! (nothing was sent) is not the same as a broken one.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A keep-alive HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long a connection attempt may take (loopback: a dead port refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled client, Nagle off, keeping up to `pool` idle connections per host.
pub fn client(pool: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No connection could be made: nothing was sent.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection broke after the request may have been sent.
    #[error("transport: {0}")]
    Transport(String),
    /// No complete answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One exchange: the status and the whole body, within `timeout`.
pub async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), CallError> {
    let mut builder = Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| CallError::Connect(format!("bad request: {e}")))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                CallError::Connect(format!("{e:?}"))
            } else {
                CallError::Transport(format!("{e:?}"))
            }
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Transport(format!("body: {e}")))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CallError::Timeout(timeout))?
}
