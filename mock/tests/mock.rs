//! End-to-end tests of `meridian-mock`: each test spawns the real binary,
//! reads its address line, and talks to it over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type HttpClient = Client<HttpConnector, Full<Bytes>>;
type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A spawned mock, killed on drop.
struct Mock {
    child: Child,
    api: SocketAddr,
    control: SocketAddr,
    /// What the address line says about the data plane.
    tls: bool,
    client: HttpClient,
}

impl Mock {
    async fn start(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meridian-mock"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        let addrs: Value = serde_json::from_str(&line).unwrap();
        let addr = |key: &str| addrs[key].as_str().unwrap().parse().unwrap();
        Mock {
            api: addr("api"),
            control: addr("control"),
            tls: addrs["tls"].as_bool().unwrap(),
            child,
            client: client(false),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    async fn chat(&self, body: Value) -> Response<Incoming> {
        send(
            &self.client,
            Method::POST,
            &self.url("/v1/chat/completions"),
            Some(body),
            None,
        )
        .await
    }

    async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("http://{}{path}", self.control);
        let response = send(&self.client, method, &url, body, None).await;
        let status = response.status();
        (status, json_of(response).await)
    }

    async fn patch(&self, behavior: Value) -> Value {
        let (status, body) = self
            .control(Method::PATCH, "/_mock/behavior", Some(behavior))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn stats(&self) -> Value {
        self.control(Method::GET, "/_mock/stats", None).await.1
    }
}

fn client(http2: bool) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http()
}

async fn send<C>(
    client: &Client<C, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Option<Value>,
    authorization: Option<&str>,
) -> Response<Incoming>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut request = Request::builder().method(method).uri(url);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let request = request
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap();
    client.request(request).await.unwrap()
}

async fn json_of(response: Response<Incoming>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello, mock."}]})
}

/// A stream's body frames as they arrived: (text, time since the headers),
/// and whether the body ended with an error instead of cleanly.
async fn read_frames(response: Response<Incoming>) -> (Vec<(String, Duration)>, bool) {
    let start = Instant::now();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                // HTTP/2 ends a body with an empty DATA frame: not an event.
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    frames.push((String::from_utf8(data.to_vec()).unwrap(), start.elapsed()));
                }
            }
            Err(_) => return (frames, true),
        }
    }
    (frames, false)
}

/// The JSON payloads of the frames, checking each frame is one SSE event;
/// `[DONE]` is returned as the string "[DONE]".
fn sse_events(frames: &[(String, Duration)]) -> Vec<Value> {
    frames
        .iter()
        .map(|(text, _)| {
            let payload = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .unwrap_or_else(|| panic!("not one SSE event: {text:?}"));
            assert!(
                !payload.contains("\n\n"),
                "two events in one frame: {text:?}"
            );
            if payload == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(payload).unwrap()
            }
        })
        .collect()
}

#[tokio::test]
async fn plain_chat_answers_in_openai_shape() {
    let mock = Mock::start(&[]).await;
    assert!(!mock.tls);
    let response = mock.chat(hello("gpt-test")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = json_of(response).await;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], "chatcmpl-mock-0");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    // "Say hello, mock." is 16 characters: 4 tokens; 8 chunks by default.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12})
    );
}

#[tokio::test]
async fn stream_sends_each_chunk_as_its_own_frame() {
    let mock = Mock::start(&[]).await;
    mock.patch(json!({"chunks": 4, "chunk_delay": {"fixed_ms": 25}}))
        .await;

    let mut request = hello("m");
    request["stream"] = json!(true);
    let response = mock.chat(request.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let (frames, failed) = read_frames(response).await;
    assert!(!failed);
    let events = sse_events(&frames);
    assert_eq!(events.len(), 5, "4 chunks and [DONE]: {events:?}");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[3]["choices"][0]["finish_reason"], "stop");
    assert!(
        events[..4]
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk" && e.get("usage").is_none())
    );
    assert_eq!(events[4], "[DONE]");
    // The chunks were flushed as produced, not buffered to the end.
    let spread = frames[3].1 - frames[0].1;
    assert!(
        spread >= Duration::from_millis(60),
        "chunks arrived within {spread:?}"
    );

    request["stream_options"] = json!({"include_usage": true});
    let (frames, failed) = read_frames(mock.chat(request).await).await;
    assert!(!failed);
    let events = sse_events(&frames);
    assert_eq!(events.len(), 6);
    // As OpenAI's: every chunk before the usage says `"usage": null`.
    assert!(
        events[..4]
            .iter()
            .all(|e| e.get("usage") == Some(&serde_json::Value::Null)),
        "{events:?}"
    );
    assert_eq!(events[4]["choices"], json!([]));
    assert_eq!(events[4]["usage"]["completion_tokens"], 4);
    assert_eq!(events[5], "[DONE]");
}

#[tokio::test]
async fn legacy_completions_embeddings_and_models() {
    let mock = Mock::start(&["--model-list", "alpha,beta"]).await;
    let url = mock.url("/v1/completions");
    let request = json!({"model": "text-m", "prompt": "abcdefgh", "max_tokens": 3});
    let body = json_of(send(&mock.client, Method::POST, &url, Some(request), None).await).await;
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
    );

    let request = json!({"model": "text-m", "prompt": "x", "stream": true});
    let (frames, _) =
        read_frames(send(&mock.client, Method::POST, &url, Some(request), None).await).await;
    let events = sse_events(&frames);
    assert_eq!(events.len(), 9);
    assert_eq!(events[0]["choices"][0]["text"], "Hello");

    let url = mock.url("/v1/embeddings");
    let request = json!({"model": "emb", "input": ["a", "b"]});
    let body = json_of(send(&mock.client, Method::POST, &url, Some(request), None).await).await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    let request =
        json!({"model": "emb", "input": "a", "encoding_format": "base64", "dimensions": 3});
    let body = json_of(send(&mock.client, Method::POST, &url, Some(request), None).await).await;
    // 3 little-endian f32 = 12 bytes = 16 base64 characters.
    assert_eq!(body["data"][0]["embedding"].as_str().unwrap().len(), 16);

    let body = json_of(
        send(
            &mock.client,
            Method::GET,
            &mock.url("/v1/models"),
            None,
            None,
        )
        .await,
    )
    .await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert_eq!(body["data"][0]["owned_by"], "meridian-mock");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = Mock::start(&[]).await;
    let url = mock.url("/v1/chat/completions");
    let request = Request::post(&url)
        .body(Full::new(Bytes::from_static(b"{nope")))
        .unwrap();
    let response = mock.client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], Value::Null);

    let response = send(
        &mock.client,
        Method::GET,
        &mock.url("/v2/nothing"),
        None,
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(json_of(response).await["error"]["message"].is_string());

    let (status, body) = mock
        .control(Method::PUT, "/_mock/behavior", Some(json!({"chunkz": 1})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chunkz")
    );
    let (status, _) = mock.control(Method::GET, "/_mock/healthz", None).await;
    assert_eq!(status, StatusCode::OK);

    let stats = mock.stats().await;
    assert_eq!(stats["outcomes"]["bad_request"], 1);
    assert_eq!(stats["outcomes"]["not_found"], 1);
}

#[tokio::test]
async fn injected_errors_come_after_the_first_byte_delay() {
    let mock = Mock::start(&[]).await;
    mock.patch(json!({"error_rate": 1.0, "error_status": 503, "first_byte": {"fixed_ms": 100}}))
        .await;
    let start = Instant::now();
    let response = mock.chat(hello("m")).await;
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(response).await["error"]["type"], "server_error");
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let mock = Mock::start(&[]).await;
    mock.patch(json!({"rate_limit_rate": 1.0, "retry_after_s": 7}))
        .await;
    let response = mock.chat(hello("m")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    let body = json_of(response).await;
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn stall_never_answers() {
    let mock = Mock::start(&[]).await;
    mock.patch(json!({"stall": true})).await;
    let answer = tokio::time::timeout(Duration::from_millis(300), mock.chat(hello("m"))).await;
    assert!(answer.is_err(), "a stalled request was answered");
    assert_eq!(mock.stats().await["outcomes"]["stalled"], 1);
}

#[tokio::test]
async fn cut_aborts_the_body_after_n_chunks() {
    let mock = Mock::start(&[]).await;
    mock.patch(json!({"chunks": 8, "cut_after_chunks": 3}))
        .await;
    let mut request = hello("m");
    request["stream"] = json!(true);
    for http2 in [false, true] {
        let client = client(http2);
        let url = mock.url("/v1/chat/completions");
        let response = send(&client, Method::POST, &url, Some(request.clone()), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (frames, failed) = read_frames(response).await;
        assert!(failed, "the body ended cleanly (http2: {http2})");
        let events = sse_events(&frames);
        assert_eq!(events.len(), 3, "http2: {http2}");
        assert!(
            events
                .iter()
                .all(|e| e["choices"][0]["finish_reason"].is_null())
        );
    }

    // A plain answer is cut part-way through its body.
    let response = mock.chat(hello("m")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.into_body().collect().await.is_err());
    assert_eq!(mock.stats().await["outcomes"]["cut"], 3);
}

#[tokio::test]
async fn refuse_closes_the_data_port_until_lifted() {
    let mock = Mock::start(&[]).await;
    assert_eq!(mock.chat(hello("m")).await.status(), StatusCode::OK);
    assert_eq!(mock.patch(json!({"refuse": true})).await["refuse"], true);
    let connect = tokio::net::TcpStream::connect(mock.api).await;
    assert!(connect.is_err(), "connected while refusing");

    mock.patch(json!({"refuse": false})).await;
    let fresh = client(false);
    let url = mock.url("/v1/chat/completions");
    let response = send(&fresh, Method::POST, &url, Some(hello("m")), None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn stats_count_outcomes_models_and_paths_then_reset() {
    let mock = Mock::start(&[]).await;
    mock.chat(hello("a")).await;
    mock.chat(hello("a")).await;
    mock.chat(hello("b")).await;
    mock.patch(json!({"error_rate": 1.0})).await;
    mock.chat(hello("b")).await;
    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["outcomes"]["ok"], 3);
    assert_eq!(stats["outcomes"]["error"], 1);
    assert_eq!(stats["by_model"], json!({"a": 2, "b": 2}));
    assert_eq!(stats["by_path"], json!({"/v1/chat/completions": 4}));
    assert_eq!(stats["by_version"], json!({"HTTP/1": 4}));
    assert_eq!(stats["last_authorization_seen"], false);

    let (status, behavior) = mock.control(Method::POST, "/_mock/reset", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(behavior["error_rate"], 0.0);
    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["by_model"], json!({}));
}

/// Statuses of `count` sequential chat requests.
async fn statuses(mock: &Mock, count: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        statuses.push(mock.chat(hello("m")).await.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn the_seed_repeats_a_run() {
    let faults = r#"{"error_rate": 0.4, "rate_limit_rate": 0.2}"#;
    let mock = Mock::start(&["--seed", "42", "--behavior", faults]).await;
    let first = statuses(&mock, 40).await;
    assert!(
        first.contains(&200) && first.contains(&500) && first.contains(&429),
        "{first:?}"
    );

    mock.control(Method::POST, "/_mock/reset", None).await;
    assert_eq!(
        statuses(&mock, 40).await,
        first,
        "same process after a reset"
    );

    let twin = Mock::start(&["--seed", "42", "--behavior", faults]).await;
    assert_eq!(
        statuses(&twin, 40).await,
        first,
        "another process, same seed"
    );
    let other = Mock::start(&["--seed", "7", "--behavior", faults]).await;
    assert_ne!(statuses(&other, 40).await, first, "another seed");
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let mock = Mock::start(&[]).await;
    let h2 = client(true);
    let url = mock.url("/v1/chat/completions");
    let response = send(&h2, Method::POST, &url, Some(hello("m")), None).await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(json_of(response).await["object"], "chat.completion");

    mock.patch(json!({"chunks": 3})).await;
    let mut request = hello("m");
    request["stream"] = json!(true);
    let (frames, failed) =
        read_frames(send(&h2, Method::POST, &url, Some(request), None).await).await;
    assert!(!failed);
    assert_eq!(sse_events(&frames).len(), 4);
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let mock = Mock::start(&["--api-key", "sekret"]).await;
    let url = mock.url("/v1/chat/completions");
    let response = send(&mock.client, Method::POST, &url, Some(hello("m")), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json_of(response).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let wrong = send(
        &mock.client,
        Method::POST,
        &url,
        Some(hello("m")),
        Some("Bearer nope"),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = send(
        &mock.client,
        Method::POST,
        &url,
        Some(hello("m")),
        Some("Bearer sekret"),
    )
    .await;
    assert_eq!(right.status(), StatusCode::OK);

    let stats = mock.stats().await;
    assert_eq!(stats["outcomes"]["unauthorized"], 2);
    assert_eq!(stats["outcomes"]["ok"], 1);
    assert_eq!(stats["last_authorization_seen"], true);
    assert!(!stats.to_string().contains("sekret"));
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut mock = Mock::start(&[]).await;
    let pid = mock.child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), mock.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A private CA and a server certificate it signed for `127.0.0.1` and
/// `localhost`, as PEM files in `dir`: (CA, certificate, key).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A client trusting only the CA in `ca`, offering ALPN `h2` and
/// `http/1.1`, or only `http/1.1`.
fn tls_client(ca: &Path, offer_h2: bool) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&std::fs::read(ca).unwrap()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1();
    let connector = if offer_h2 {
        builder.enable_http2().build()
    } else {
        builder.build()
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

#[tokio::test]
async fn tls_serves_what_alpn_picked_and_keeps_control_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mock = Mock::start(&["--tls-cert", cert, "--tls-key", key]).await;
    assert!(mock.tls);
    mock.patch(json!({"chunks": 3})).await;
    let url = format!("https://localhost:{}/v1/chat/completions", mock.api.port());

    for (offer_h2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let client = tls_client(&ca, offer_h2);
        let response = send(&client, Method::POST, &url, Some(hello("m")), None).await;
        assert_eq!(response.version(), version);
        assert_eq!(json_of(response).await["object"], "chat.completion");

        let mut request = hello("m");
        request["stream"] = json!(true);
        let response = send(&client, Method::POST, &url, Some(request), None).await;
        assert_eq!(response.version(), version);
        let (frames, failed) = read_frames(response).await;
        assert!(!failed, "version {version:?}");
        assert_eq!(sse_events(&frames).len(), 4, "version {version:?}");
    }

    // Plain HTTP to the TLS port gets no answer; the control plane is plain.
    let plain = mock
        .client
        .request(
            Request::post(mock.url("/v1/chat/completions"))
                .body(Full::new(Bytes::from(hello("m").to_string())))
                .unwrap(),
        )
        .await;
    assert!(plain.is_err(), "a plain request was answered");
    let stats = mock.stats().await;
    assert_eq!(stats["outcomes"]["ok"], 4);
    assert_eq!(stats["by_version"], json!({"HTTP/1": 2, "HTTP/2": 2}));
}

#[tokio::test]
async fn refuse_closes_and_reopens_the_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mock = Mock::start(&["--tls-cert", cert, "--tls-key", key]).await;
    let url = format!("https://127.0.0.1:{}/v1/chat/completions", mock.api.port());
    let client = tls_client(&ca, true);
    let response = send(&client, Method::POST, &url, Some(hello("m")), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    mock.patch(json!({"refuse": true})).await;
    let connect = tokio::net::TcpStream::connect(mock.api).await;
    assert!(connect.is_err(), "connected while refusing");

    mock.patch(json!({"refuse": false})).await;
    let fresh = tls_client(&ca, true);
    let response = send(&fresh, Method::POST, &url, Some(hello("m")), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = tls_files(dir.path());
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_meridian-mock"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&not_a_key)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "it printed an address line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not-a-key.pem") && stderr.contains("no PEM private key"),
        "{stderr}"
    );

    // A certificate without its key is refused before anything starts.
    let output = Command::new(env!("CARGO_BIN_EXE_meridian-mock"))
        .arg("--tls-cert")
        .arg(&cert)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[tokio::test]
async fn spawn_starts_one_in_process_from_the_binarys_flags() {
    use clap::Parser as _;
    let args = mock::cli::Args::try_parse_from([
        "meridian-mock",
        "--api-key",
        "sk-in-process",
        "--model-list",
        "m1,m2",
    ])
    .unwrap();
    let handle = mock::spawn(args.config().unwrap(), 1).unwrap();
    assert!(!handle.tls());
    assert_eq!(
        handle.base_url(),
        format!("http://{}/v1", handle.api_addr())
    );
    let http = client(false);
    let url = format!("http://{}/v1/models", handle.api_addr());
    let refused = send(&http, Method::GET, &url, None, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let listed = send(&http, Method::GET, &url, None, Some("Bearer sk-in-process")).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let models = json_of(listed).await;
    assert_eq!(models["data"][1]["id"], "m2");
    let health = format!("http://{}/_mock/healthz", handle.control_addr());
    assert_eq!(
        send(&http, Method::GET, &health, None, None).await.status(),
        StatusCode::OK
    );
    drop(handle);
}
