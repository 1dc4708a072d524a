//! Real processes for integration tests: `meridian` nodes on ephemeral
//! loopback ports, killed when dropped, and `meridian-mock` upstreams run
//! in-process; thin helpers over `meridian-harness`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::process::Child;

use self::config::Config;

pub mod cluster;
pub mod config;
pub mod tenancy;

/// The directory cargo built `meridian` into for these tests; the other
/// workspace binaries (`meridian-mock`) are there after
/// `cargo build --workspace --bins`, which `scripts/test` runs.
pub fn bin_dir() -> PathBuf {
    harness::bins::dir_of(Path::new(env!("CARGO_BIN_EXE_meridian")))
}

/// The `meridian-mock` binary, for tests that need it as a process of its
/// own; a clear failure (never a build) when it is missing.
pub fn mock_bin() -> PathBuf {
    harness::bins::locate(&bin_dir(), harness::bins::MOCK).unwrap_or_else(|e| panic!("{e}"))
}

async fn first_line(child: &mut Child) -> String {
    harness::process::read_line(child, Duration::from_secs(30))
        .await
        .expect("process did not print its address in time")
}

/// A `meridian-mock` running in this test process on a thread of its own
/// (see `mock::spawn`), started from the binary's flags; stopped when
/// dropped.
pub struct Mock {
    pub api: String,
    pub control: String,
    /// Whether its data plane speaks TLS (started with `--tls-cert`).
    pub tls: bool,
    _handle: mock::MockHandle,
}

impl Mock {
    pub async fn start(extra: &[&str]) -> Mock {
        use clap::Parser as _;
        let flags = ["meridian-mock", "--seed", "7"]
            .into_iter()
            .chain(extra.iter().copied());
        let args = mock::cli::Args::try_parse_from(flags).unwrap_or_else(|e| panic!("{e}"));
        let config = args.config().unwrap_or_else(|e| panic!("{e}"));
        let handle = mock::spawn(config, 2).unwrap();
        Mock {
            api: handle.api_addr().to_string(),
            control: handle.control_addr().to_string(),
            tls: handle.tls(),
            _handle: handle,
        }
    }

    /// Base URL for a meridian upstream (`https://` when the mock speaks TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/v1", self.api)
    }

    pub async fn behave(&self, behavior: Value) {
        let (status, _, body) = send(
            Method::PATCH,
            &format!("http://{}/_mock/behavior", self.control),
            &[],
            Some(behavior.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }

    pub async fn stats(&self) -> Value {
        let (_, _, body) = send(
            Method::GET,
            &format!("http://{}/_mock/stats", self.control),
            &[],
            None,
        )
        .await;
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn requests(&self) -> u64 {
        self.stats().await["requests"].as_u64().unwrap()
    }
}

/// A running `meridian serve`.
pub struct Node {
    pub api: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    _child: Child,
}

impl Node {
    /// Starts a node whose config is the harness's lone node on ephemeral
    /// ports (region `test-region`) with what `configure` sets on it
    /// (upstreams, routes, keys…); `env` is added to its environment.
    pub async fn start_with(configure: impl FnOnce(&mut Config), env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut config = harness::config::node(1, "test-region", &dir.path().join("data"));
        configure(&mut config);
        let path = dir.path().join("meridian.toml");
        harness::config::write(&path, &config).unwrap();
        Node::spawn(dir, &path, env).await
    }

    /// Runs `meridian serve` on the config file at `path` inside `dir`
    /// until its ready line.
    async fn spawn(dir: tempfile::TempDir, path: &Path, env: &[(&str, &str)]) -> Node {
        let mut command = harness::process::NodeCommand::new(
            Path::new(env!("CARGO_BIN_EXE_meridian")),
            path,
            &dir.path().join("meridian.log"),
        );
        command.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut child = command.spawn().unwrap();
        let line = first_line(&mut child).await;
        let ready = harness::process::Ready::parse(&line).unwrap_or_else(|| {
            panic!(
                "no ready line but {line:?}; log: {}",
                std::fs::read_to_string(dir.path().join("meridian.log")).unwrap_or_default()
            )
        });
        Node {
            api: ready.api.to_string(),
            admin: ready.admin.to_string(),
            _child: child,
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("meridian.log")).unwrap_or_default()
    }

    /// Sends the node a signal (`TERM`, `KILL`…).
    pub async fn signal(&self, name: &str) {
        let pid = self._child.id().expect("the node has exited");
        harness::process::signal(pid, name).await.unwrap();
    }

    pub async fn chat(&self, body: Value, headers: &[(&str, &str)]) -> Answer {
        self.post("/v1/chat/completions", body.to_string(), headers)
            .await
    }

    pub async fn post(&self, path: &str, body: String, headers: &[(&str, &str)]) -> Answer {
        let (status, headers, body) = send(
            Method::POST,
            &format!("http://{}{path}", self.api),
            headers,
            Some(body),
        )
        .await;
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let (status, headers, body) = send(
            Method::GET,
            &format!("http://{}{path}", self.api),
            headers,
            None,
        )
        .await;
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn admin_get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let (status, headers, body) = send(
            Method::GET,
            &format!("http://{}{path}", self.admin),
            headers,
            None,
        )
        .await;
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends a streamed chat request and collects its body frame by frame.
    pub async fn chat_stream(&self, body: Value) -> (StatusCode, HeaderMap, Vec<Bytes>) {
        self.stream("/v1/chat/completions", body, &[]).await
    }

    /// A streamed answer to `POST path`, frame by frame as it arrived.
    pub async fn stream(
        &self,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<Bytes>) {
        let req = request(
            Method::POST,
            &format!("http://{}{path}", self.api),
            headers,
            Some(body.to_string()),
        );
        let resp = client().request(req).await.unwrap();
        let (parts, mut body) = resp.into_parts();
        let mut frames = Vec::new();
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("stream stalled")
        {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        frames.push(data);
                    }
                }
                Err(e) => panic!("client saw a broken body: {e}"),
            }
        }
        (parts.status, parts.headers, frames)
    }
}

/// A complete answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// The OpenAI error object, asserting the shape.
    pub fn error(&self) -> Value {
        let v = self.json();
        let e = v["error"].clone();
        assert!(
            e["message"].is_string() && e["type"].is_string(),
            "not an OpenAI error: {v}"
        );
        e
    }
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap()
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, HeaderMap, Bytes) {
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client().request(request(method, url, headers, body)),
    )
    .await
    .expect("no answer in 20 s")
    .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// A small chat body.
pub fn chat_body(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}
