//! `https://` upstreams through rustls: a `meridian-mock` serving TLS with a
//! certificate from a private CA, trusted through the upstream's `ca_file`
//! and distrusted under another CA, so we know verification really happens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::Path;

use harness::certs::UpstreamCa;
use serde_json::json;
use support::config::{Config, UpstreamConfig, route_to, upstream};
use support::{Mock, Node, chat_body};

/// A server certificate for `127.0.0.1` and `localhost`, as PEM files in
/// `dir`: (certificate, key).
fn server_cert(ca: &UpstreamCa, dir: &Path) -> (String, String) {
    let (cert, key) = ca
        .write_server(dir, "server", &["127.0.0.1", "localhost"])
        .unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

/// An upstream for `mock` trusting the CA file `ca`.
fn tls_upstream(id: &str, mock: &Mock, ca: &Path) -> UpstreamConfig {
    let mut upstream = upstream(id, mock);
    upstream.ca_file = Some(ca.to_path_buf());
    upstream
}

#[tokio::test]
async fn https_upstream_is_verified_against_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = UpstreamCa::new(dir.path(), "private").unwrap();
    let stranger = UpstreamCa::new(dir.path(), "stranger").unwrap();
    let (cert, key) = server_cert(&ca, dir.path());
    let mock = Mock::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    assert!(mock.tls && mock.base_url().starts_with("https://127.0.0.1:"));
    mock.behave(json!({"chunks": 4})).await;
    let node = Node::start_with(
        |c: &mut Config| {
            let mut h2 = tls_upstream("tls-h2", &mock, ca.pem());
            h2.http2 = true;
            c.upstreams = vec![
                tls_upstream("tls", &mock, ca.pem()),
                h2,
                tls_upstream("wrong-ca", &mock, stranger.pem()),
            ];
            c.routes = vec![
                route_to("m", "tls", "tls-model"),
                route_to("m2", "tls-h2", "tls-model"),
                route_to("bad", "wrong-ca", "x"),
            ];
        },
        &[],
    )
    .await;

    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["model"], "tls-model");
    assert_eq!(answer.header("x-meridian-upstream"), "tls");

    let mut body = chat_body("m");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, headers, frames) = node.chat_stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-meridian-upstream"], "tls");
    let text: String = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert_eq!(text.matches("chat.completion.chunk").count(), 5, "{text}");
    assert!(text.contains("\"usage\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    let stats = mock.stats().await;
    assert_eq!(stats["requests"], 2, "{stats}");
    assert_eq!(stats["outcomes"]["ok"], 2, "{stats}");
    assert_eq!(stats["by_model"]["tls-model"], 2, "{stats}");
    // HTTP/1.1 over connections the node owns (it offers nothing else by
    // ALPN, although the mock prefers h2); HTTP/2 where the upstream asks
    // for it.
    assert_eq!(stats["by_version"], json!({"HTTP/1": 2}), "{stats}");
    let answer = node.chat(chat_body("m2"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-upstream"), "tls-h2");
    let stats = mock.stats().await;
    assert_eq!(
        stats["by_version"],
        json!({"HTTP/1": 2, "HTTP/2": 1}),
        "{stats}"
    );

    // Under another CA the handshake fails: 502, naming the certificate.
    let answer = node.chat(chat_body("bad"), &[]).await;
    assert_eq!(
        answer.status,
        502,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let error = answer.error();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("wrong-ca/x")
            && message.contains("invalid peer certificate: UnknownIssuer"),
        "{message}"
    );
    assert_eq!(error["code"], "upstream_error");
    assert_eq!(
        mock.requests().await,
        3,
        "a request went through an unverified connection"
    );
}
