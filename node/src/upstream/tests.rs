//! The owned HTTP/1.1 path over real sockets: an upstream written by hand
//! on a `TcpListener`, so each test says exactly what the upstream does
//! with its connections (keeps them, closes them idle, stalls, lies).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use proto::config::{ProxyConfig, UpstreamConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::owned::{IDLE_TIMEOUT, SWEEP_EVERY};
use super::{Alpn, Pools, SendError, UpstreamBody, pools_for};

const ANSWER: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";

/// What the hand-written upstream does after answering each request.
#[derive(Clone, Copy)]
enum After {
    /// Keeps the connection for the next request.
    Keep,
    /// Answers once, then closes the connection and says so.
    CloseIdle,
    /// Sends the head and half the body, then stalls.
    Stall,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers with `connection: close`, then leaves the socket open.
    SaysClose,
    /// Answers, then writes an answer nobody asked for 50 ms later and
    /// keeps the socket open.
    Chatter,
}

struct Upstream {
    base: String,
    accepted: Arc<AtomicUsize>,
    /// Each request's head as it arrived.
    heads: mpsc::UnboundedReceiver<String>,
    /// One message per connection the upstream closed, or saw closed.
    closed: mpsc::UnboundedReceiver<()>,
}

async fn upstream(after: After) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let (heads_tx, heads) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, after, heads_tx.clone(), closed_tx.clone()));
        }
    });
    Upstream {
        base,
        accepted,
        heads,
        closed,
    }
}

async fn serve(
    mut stream: TcpStream,
    after: After,
    heads: mpsc::UnboundedSender<String>,
    closed: mpsc::UnboundedSender<()>,
) {
    loop {
        let Some(head) = read_request(&mut stream).await else {
            let _ = closed.send(());
            return;
        };
        let _ = heads.send(head);
        match after {
            After::Keep => stream.write_all(ANSWER.as_bytes()).await.unwrap(),
            After::CloseIdle => {
                stream.write_all(ANSWER.as_bytes()).await.unwrap();
                drop(stream);
                let _ = closed.send(());
                return;
            }
            After::Stall => {
                let half = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\":";
                stream.write_all(half.as_bytes()).await.unwrap();
                // Until the client gives up and closes its end.
                let mut rest = [0u8; 64];
                while stream.read(&mut rest).await.is_ok_and(|n| n > 0) {}
                let _ = closed.send(());
                return;
            }
            After::Garbage => {
                stream.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await.unwrap();
            }
            After::Chatter => {
                stream.write_all(ANSWER.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                stream.write_all(ANSWER.as_bytes()).await.unwrap();
            }
            After::SaysClose => {
                let close = ANSWER.replacen("\r\n\r\n", "\r\nconnection: close\r\n\r\n", 1);
                stream.write_all(close.as_bytes()).await.unwrap();
            }
        }
    }
}

/// A request's head and body, or `None` once the client closed.
pub(super) async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(head)
}

/// Waits until the upstream saw a connection closed (by this side).
async fn sees_closed(up: &mut Upstream) {
    tokio::time::timeout(Duration::from_secs(5), up.closed.recv())
        .await
        .expect("the upstream sees the connection closed")
        .unwrap();
}

pub(super) fn pools(base: &str) -> Pools {
    let uc = UpstreamConfig {
        id: "u".into(),
        base_url: base.into(),
        ..UpstreamConfig::default()
    };
    pools_for(&uc, &ProxyConfig::default()).unwrap()
}

pub(super) fn request(base: &str) -> Request<Full<Bytes>> {
    let uri: Uri = format!("{base}/chat/completions?api-version=2024-10-21")
        .parse()
        .unwrap();
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
        .unwrap()
}

/// Sends one request on the owned path and reads its answer whole.
pub(super) async fn whole(pools: &Pools, base: &str) -> Result<Bytes, SendError> {
    let response = pools.send(request(base)).await?;
    assert!(
        matches!(response.body(), UpstreamBody::Owned(_)),
        "an HTTP/1.1 upstream's answer is owned"
    );
    Ok(response.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn whole_answers_in_turn_share_one_connection_sent_in_origin_form() {
    let mut up = upstream(After::Keep).await;
    let pools = pools(&up.base);
    for _ in 0..5 {
        assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pools.owned().unwrap().idle_here(), 1);

    let head = up.heads.recv().await.unwrap();
    let authority = up
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    assert!(
        head.starts_with("POST /v1/chat/completions?api-version=2024-10-21 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced_not_failed() {
    let mut up = upstream(After::CloseIdle).await;
    let pools = pools(&up.base);
    for round in 1..=3 {
        assert_eq!(
            whole(&pools, &up.base).await.unwrap(),
            "{}",
            "round {round}"
        );
        up.closed.recv().await.unwrap();
        // The close reaches this side's I/O driver before the next request.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

// The sweeps: a worker that gets no more requests still closes what the
// upstream closed, and what it kept unused too long. The clock is tokio's,
// paused: it jumps to the next timer whenever every task waits.

#[tokio::test(start_paused = true)]
async fn a_connection_the_upstream_closed_is_closed_here_without_another_request() {
    let mut up = upstream(After::CloseIdle).await;
    let pools = pools(&up.base);
    let owned = pools.owned().unwrap();
    for round in 1..=2 {
        assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
        up.closed.recv().await.unwrap();
        assert_eq!(owned.idle_here(), 1, "round {round}: kept until a sweep");
        assert!(owned.swept_here(), "round {round}");
        tokio::time::sleep(SWEEP_EVERY + Duration::from_secs(1)).await;
        assert_eq!(owned.idle_here(), 0, "round {round}: the sweep closed it");
        // Nothing is left to sweep: the sweeper stopped, and the next
        // connection given back starts another.
        assert!(!owned.swept_here(), "round {round}");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_connection_unused_for_the_idle_timeout_is_closed_by_a_sweep() {
    let mut up = upstream(After::Keep).await;
    let pools = pools(&up.base);
    let owned = pools.owned().unwrap();
    assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
    tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(1)).await;
    assert_eq!(
        owned.idle_here(),
        1,
        "open and young: kept through the sweeps"
    );
    assert!(up.closed.try_recv().is_err());
    tokio::time::sleep(SWEEP_EVERY + Duration::from_secs(1)).await;
    assert_eq!(owned.idle_here(), 0);
    sees_closed(&mut up).await;
    assert!(!owned.swept_here());
}

#[tokio::test(start_paused = true)]
async fn a_connection_the_upstream_wrote_to_unasked_is_closed_by_a_sweep() {
    let mut up = upstream(After::Chatter).await;
    let pools = pools(&up.base);
    let owned = pools.owned().unwrap();
    assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(owned.idle_here(), 1, "kept until a sweep");
    tokio::time::sleep(SWEEP_EVERY).await;
    assert_eq!(
        owned.idle_here(),
        0,
        "the unasked answer is never read as one"
    );
    sees_closed(&mut up).await;
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_ends_with_its_pool() {
    let mut up = upstream(After::Keep).await;
    let pools = pools(&up.base);
    assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
    assert!(pools.owned().unwrap().swept_here());
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // The upstream's accept loop and its connection's task, the sweeper.
    let before = tasks();
    drop(pools);
    sees_closed(&mut up).await;
    tokio::time::sleep(SWEEP_EVERY + Duration::from_secs(1)).await;
    assert_eq!(
        tasks(),
        before - 2,
        "the connection's task and the sweeper ended"
    );
}

#[tokio::test]
async fn an_answer_abandoned_mid_body_closes_its_connection() {
    let mut up = upstream(After::Stall).await;
    let pools = pools(&up.base);
    let response = pools.send(request(&up.base)).await.unwrap();
    let mut body = response.into_body();
    let read = (&mut body).collect();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), read)
            .await
            .is_err()
    );
    drop(body);
    sees_closed(&mut up).await;
    assert_eq!(pools.owned().unwrap().idle_here(), 0);
}

#[tokio::test]
async fn an_answer_saying_connection_close_is_not_reused_even_if_the_upstream_keeps_the_socket() {
    let mut up = upstream(After::SaysClose).await;
    let pools = pools(&up.base);
    assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
    sees_closed(&mut up).await;
    assert_eq!(pools.owned().unwrap().idle_here(), 0);
    assert_eq!(whole(&pools, &up.base).await.unwrap(), "{}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_that_speaks_no_http_fails_the_request_and_keeps_nothing() {
    let up = upstream(After::Garbage).await;
    let pools = pools(&up.base);
    let error = whole(&pools, &up.base).await.unwrap_err();
    assert!(error.connected(), "{error:?}");
    assert!(!error.causes().is_empty(), "{error:?}");
    assert_eq!(pools.owned().unwrap().idle_here(), 0);
}

#[tokio::test]
async fn a_refused_connection_says_nothing_was_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let pools = pools(&base);
    let error = whole(&pools, &base).await.unwrap_err();
    assert!(!error.connected(), "{error:?}");
    let causes = error.causes().join(": ");
    assert!(causes.contains("refused"), "{causes}");
}

#[tokio::test]
async fn a_stream_dropped_mid_body_closes_its_connection() {
    let mut up = upstream(After::Stall).await;
    let pools = pools(&up.base);
    let response = pools.send(request(&up.base)).await.unwrap();
    drop(response);
    sees_closed(&mut up).await;
    assert_eq!(pools.owned().unwrap().idle_here(), 0);
}

#[tokio::test]
async fn http2_upstreams_go_through_the_pooled_client_and_tls_ones_are_owned() {
    let up = upstream(After::Keep).await;
    for (base_url, http2) in [
        ("https://api.openai.com/v1", true),
        (up.base.as_str(), true),
        ("ftp://files.example/v1", false),
    ] {
        let uc = UpstreamConfig {
            base_url: base_url.into(),
            http2,
            ..UpstreamConfig::default()
        };
        let pools = pools_for(&uc, &ProxyConfig::default()).unwrap();
        assert!(pools.owned().is_none(), "{base_url}");
    }
    for base_url in [
        "https://api.openai.com/v1",
        "https://[::1]:8443/v1",
        "https://10.0.0.7/v1",
    ] {
        let uc = UpstreamConfig {
            base_url: base_url.into(),
            ..UpstreamConfig::default()
        };
        let pools = pools_for(&uc, &ProxyConfig::default()).unwrap();
        assert!(pools.owned().is_some(), "{base_url}");
    }
}

#[tokio::test]
async fn a_send_in_flight_holds_the_owned_path_behind_one_pointer() {
    // A stream's task keeps the request's future, and with it the space of
    // every future it holds, until the stream ends: 10,000 streams pay it
    // 10,000 times. The owned path's send (over a kilobyte) is boxed.
    let pools = pools("http://127.0.0.1:9/v1");
    let whole = std::mem::size_of_val(&pools.send(request("http://127.0.0.1:9/v1")));
    let owned = std::mem::size_of_val(
        &pools
            .owned()
            .unwrap()
            .send(request("http://127.0.0.1:9/v1")),
    );
    assert!(
        whole < owned,
        "Pools::send {whole} bytes, Owned::send {owned}"
    );
    assert!(whole <= 512, "Pools::send {whole} bytes");
}

#[test]
fn upstreams_trusting_only_the_public_roots_share_one_tls_configuration() {
    let public = |base: &str| UpstreamConfig {
        base_url: base.into(),
        ..UpstreamConfig::default()
    };
    let a = super::tls_for(&public("https://api.openai.com/v1"), Alpn::Http2OrHttp1).unwrap();
    let b = super::tls_for(&public("https://api.anthropic.com/v1"), Alpn::Http2OrHttp1).unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "one root store and session cache for both"
    );
    assert_eq!(a.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    // The owned connections' offer HTTP/1.1 alone, shared the same way.
    let h1 = super::tls_for(&public("https://api.openai.com/v1"), Alpn::Http1).unwrap();
    let h1_again = super::tls_for(&public("https://api.deepseek.com/v1"), Alpn::Http1).unwrap();
    assert!(Arc::ptr_eq(&h1, &h1_again));
    assert_eq!(h1.alpn_protocols, [b"http/1.1".to_vec()]);

    // A private CA is that upstream's own.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["private.test".into()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let private = UpstreamConfig {
        ca_file: Some(ca),
        ..public("https://private.test/v1")
    };
    let c = super::tls_for(&private, Alpn::Http2OrHttp1).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(c.alpn_protocols.contains(&b"h2".to_vec()));
}
