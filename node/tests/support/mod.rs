//! Real processes for integration tests: `meridian-mock` upstreams and
//! `meridian` nodes on ephemeral loopback ports, killed when dropped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod cluster;

/// `target/<profile>`, where cargo put this test and the binaries.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The mock binary, built on first use if `cargo test` did not build it.
pub fn mock_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = target_dir().join("meridian-mock");
        if !bin.exists() {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "-p", "meridian-chaos", "--bin", "meridian-mock"])
                .status()
                .unwrap();
            assert!(status.success(), "building meridian-mock failed");
        }
        bin
    })
}

async fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("process did not print its address in time")
    .unwrap();
    line
}

/// A running `meridian-mock`.
pub struct Mock {
    pub api: String,
    pub control: String,
    /// Whether its data plane speaks TLS (started with `--tls-cert`).
    pub tls: bool,
    _child: Child,
}

impl Mock {
    pub async fn start(extra: &[&str]) -> Mock {
        let mut child = Command::new(mock_bin())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--control",
                "127.0.0.1:0",
                "--seed",
                "7",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let line = first_line(&mut child).await;
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("mock said {line:?}: {e}"));
        Mock {
            api: v["api"].as_str().unwrap().to_owned(),
            control: v["control"].as_str().unwrap().to_owned(),
            tls: v["tls"].as_bool().unwrap_or(false),
            _child: child,
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
    /// Starts a node whose config is `[node]`/`[listen]` on ephemeral ports
    /// followed by `rest` (upstreams, routes, keys…).
    pub async fn start(rest: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[node]\nid = 1\nregion = \"test-region\"\ndata_dir = \"{}\"\n\n[listen]\napi = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nraft = \"127.0.0.1:0\"\n\n{rest}",
            dir.path().join("data").display()
        );
        let path = dir.path().join("meridian.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("meridian.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let line = first_line(&mut child).await;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| {
                    panic!(
                        "no {name} in {line:?}; log: {}",
                        std::fs::read_to_string(dir.path().join("meridian.log"))
                            .unwrap_or_default()
                    )
                })
                .trim_start_matches("http://")
                .to_owned()
        };
        Node {
            api: field("api="),
            admin: field("admin="),
            _child: child,
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("meridian.log")).unwrap_or_default()
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
        let req = request(
            Method::POST,
            &format!("http://{}/v1/chat/completions", self.api),
            &[],
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

/// An upstream section pointing at a mock.
pub fn upstream(id: &str, mock: &Mock) -> String {
    format!(
        "[[upstreams]]\nid = \"{id}\"\nbase_url = \"{}\"\n\n",
        mock.base_url()
    )
}
