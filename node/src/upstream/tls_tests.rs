//! The owned HTTP/1.1 path over TLS, against a scripted TLS upstream on a
//! real socket: a private CA trusted through `ca_file`, another CA's
//! certificate refused before a byte of the request goes out, session
//! tickets and `close_notify` on idle connections, and bytes smuggled past
//! an answer inside the encrypted stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::certs::UpstreamCa;
use proto::config::{ProxyConfig, UpstreamConfig};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::tests::{read_request, whole};
use super::{Pools, SendError, pools_for};

const ANSWER: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";

/// A private CA in `dir/<name>-ca.pem`.
pub(super) fn ca(dir: &Path, name: &str) -> UpstreamCa {
    UpstreamCa::new(dir, name).unwrap()
}

/// What the upstream does after each answer.
#[derive(Clone, Copy)]
enum After {
    /// Keeps the connection.
    Keep,
    /// Sends `close_notify` and closes, as an idle timeout would.
    CloseNotify,
    /// Writes a second, forged answer right behind the real one.
    Smuggle,
}

/// A TLS upstream offering h2 and http/1.1 under `ca`'s certificate for
/// 127.0.0.1; records each connection's ALPN choice and each request head.
struct Upstream {
    base: String,
    alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

/// A server for 127.0.0.1 under `ca`'s certificate, speaking `versions`.
pub(super) fn server_config(
    ca: &UpstreamCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ServerConfig {
    let signed = ca.sign(&["127.0.0.1"]).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![signed.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signed.key.serialize_der())),
        )
        .unwrap()
}

async fn upstream(ca: &UpstreamCa, after: After) -> Upstream {
    let mut config = server_config(ca, rustls::DEFAULT_VERSIONS);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/v1", listener.local_addr().unwrap());
    let alpn = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (alpn_seen, heads_seen) = (alpn.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let (alpn, heads) = (alpn_seen.clone(), heads_seen.clone());
            tokio::spawn(async move {
                // A client that distrusts the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                alpn.lock()
                    .unwrap()
                    .push(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                while let Some(head) = read_request(&mut tls).await {
                    heads.lock().unwrap().push(head);
                    let answer = match after {
                        After::Smuggle => {
                            format!("{ANSWER}HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged")
                        }
                        _ => ANSWER.to_owned(),
                    };
                    tls.write_all(answer.as_bytes()).await.unwrap();
                    tls.flush().await.unwrap();
                    if let After::CloseNotify = after {
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    Upstream { base, alpn, heads }
}

fn pools_trusting(base: &str, ca: &UpstreamCa) -> Pools {
    let uc = UpstreamConfig {
        id: "tls".into(),
        base_url: base.into(),
        ca_file: Some(ca.pem().to_path_buf()),
        ..UpstreamConfig::default()
    };
    pools_for(&uc, &ProxyConfig::default()).unwrap()
}

/// Three requests in turn to an upstream that does `after` each time, each
/// answer read whole, with time between them for whatever the upstream
/// sends on the idle connection (session tickets, `close_notify`) to
/// arrive.
async fn three_answers(after: After) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path(), "private");
    let up = upstream(&ca, after).await;
    let pools = pools_trusting(&up.base, &ca);
    for _ in 0..3 {
        assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up
}

#[tokio::test]
async fn answers_over_tls_share_one_connection_that_offered_http1_alone() {
    let up = three_answers(After::Keep).await;
    assert_eq!(
        *up.alpn.lock().unwrap(),
        [Some(b"http/1.1".to_vec())],
        "one connection (its session tickets taken in), and HTTP/1.1 chosen \
         although the server prefers h2"
    );
    let heads = up.heads.lock().unwrap();
    assert_eq!(heads.len(), 3);
    let authority = up
        .base
        .trim_start_matches("https://")
        .trim_end_matches("/v1");
    assert!(
        heads[0].starts_with("POST /v1/chat/completions?api-version=2024-10-21 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0].contains(&format!("host: {authority}\r\n")),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_tls_connection_the_upstream_closed_while_idle_is_replaced_not_failed() {
    let up = three_answers(After::CloseNotify).await;
    assert_eq!(
        up.alpn.lock().unwrap().len(),
        3,
        "a new connection each time"
    );
}

#[tokio::test]
async fn an_answer_smuggled_inside_the_tls_stream_never_becomes_the_next_answer() {
    // `three_answers` checks each answer is the real one.
    let up = three_answers(After::Smuggle).await;
    assert_eq!(
        up.alpn.lock().unwrap().len(),
        3,
        "a connection with bytes past its answer is never reused"
    );
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_before_the_request_goes_out() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, stranger) = (ca(dir.path(), "private"), ca(dir.path(), "stranger"));
    let up = upstream(&ca, After::Keep).await;
    let pools = pools_trusting(&up.base, &stranger);
    let error = whole(&pools, &up.base).await.unwrap_err();
    assert!(matches!(error, SendError::Connect(_)), "{error:?}");
    assert!(
        !error.connected(),
        "nothing was sent: another target may be tried"
    );
    let causes = error.causes().join(": ");
    assert!(
        causes.contains("invalid peer certificate: UnknownIssuer"),
        "{causes}"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(up.heads.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_upstream_that_never_finishes_the_handshake_fails_at_the_connect_timeout() {
    // Accepts, reads the ClientHello, answers nothing: without a bound of
    // its own the handshake would hold the attempt until its first-byte
    // budget, and then look like an upstream that took the request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            held.push(tcp);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path(), "private");
    let uc = UpstreamConfig {
        id: "stalls".into(),
        base_url: base.clone(),
        ca_file: Some(ca.pem().to_path_buf()),
        ..UpstreamConfig::default()
    };
    let proxy = ProxyConfig {
        connect_timeout_ms: 200,
        ..ProxyConfig::default()
    };
    let pools = pools_for(&uc, &proxy).unwrap();
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), whole(&pools, &base))
        .await
        .expect("the handshake is bounded")
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(matches!(error, SendError::Connect(_)), "{error:?}");
    assert!(
        !error.connected(),
        "nothing was sent: another target may be tried"
    );
    let causes = error.causes().join(": ");
    assert!(causes.contains("TLS handshake timed out"), "{causes}");
}
