//! What the in-process API tests share: a mock from `mock::spawn`, a client
//! that sends JSON with chosen headers, and readers of JSON and SSE answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mock::{MockConfig, MockHandle};
use serde_json::Value;

/// A mock started in-process, and a client for it.
pub struct Api {
    pub mock: MockHandle,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the body ended with an error (a cut) instead of cleanly.
    pub broken: bool,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The SSE events as (event name or "", data JSON or the raw string).
    pub fn events(&self) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(&self.body).unwrap();
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|event| {
                let mut name = String::new();
                let mut data = Value::Null;
                for line in event.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap_or(Value::String(d.to_owned()));
                    }
                }
                (name, data)
            })
            .collect()
    }
}

impl Api {
    pub fn start(api_key: Option<&str>) -> Api {
        let config = MockConfig {
            api_key: api_key.map(str::to_owned),
            ..MockConfig::default()
        };
        Api {
            mock: mock::spawn(config, 2).unwrap(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = format!("http://{}{path}", self.mock.api_addr());
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let (parts, mut incoming) = response.into_parts();
        let mut body = Vec::new();
        let mut broken = false;
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        body.extend_from_slice(&data);
                    }
                }
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(body),
            broken,
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn behave(&self, behavior: Value) {
        let answer = self
            .control(Method::PATCH, "/_mock/behavior", Some(&behavior))
            .await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }

    pub async fn stats(&self) -> Value {
        self.control(Method::GET, "/_mock/stats", None).await.1
    }

    async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url = format!("http://{}{path}", self.mock.control_addr());
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(body))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}
