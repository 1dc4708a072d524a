#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The request head's rules with hostile values, and the server over real
//! sockets: a listener served by [`crate::server::serve_data`] with a
//! handler that says what it was given.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::head::{self, BodyFraming, HeadError};
use super::write::hex;
use super::*;
use crate::server::{Gate, Limits, serve_data};

pub(super) const PATIENCE: Duration = Duration::from_secs(5);

fn parse(text: &str) -> (Result<Option<head::Head>, HeadError>, BytesMut) {
    let mut buf = BytesMut::from(text.as_bytes());
    let parsed = head::parse(&mut buf);
    (parsed, buf)
}

#[test]
fn a_head_is_taken_off_the_buffer_with_its_framing() {
    let (parsed, rest) = parse(
        "\r\nPOST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\
         Expect: 100-continue\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody",
    );
    let head = parsed.unwrap().unwrap();
    assert_eq!(head.request.method(), http::Method::POST);
    assert_eq!(head.request.uri().path(), "/v1/chat/completions");
    assert_eq!(head.request.uri().query(), Some("x=1"));
    assert_eq!(head.request.headers().get_all("x-a").iter().count(), 2);
    assert_eq!(head.framing, BodyFraming::Length(4));
    assert!(head.keep_alive && head.expect_continue);
    assert_eq!(&rest[..], b"body");
    // Only the exact expectation asks for a `100 Continue`, and never in
    // HTTP/1.0.
    for expect in [
        "POST / HTTP/1.1\r\nexpect: 100-continue-please\r\n\r\n",
        "POST / HTTP/1.1\r\nexpect: 200-ok\r\n\r\n",
        "POST / HTTP/1.0\r\nexpect: 100-continue\r\n\r\n",
    ] {
        assert!(
            !parse(expect).0.unwrap().unwrap().expect_continue,
            "{expect}"
        );
    }
    let (partial, _) = parse("GET / HTTP/1.1\r\nhost: a\r\n");
    assert!(partial.unwrap().is_none());
}

#[test]
fn ambiguous_or_unknown_body_framing_is_refused() {
    for (framing, why) in [
        ("content-length: 5\r\ntransfer-encoding: chunked", "both"),
        ("transfer-encoding: gzip, chunked, gzip", "after chunked"),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
            "after chunked",
        ),
        ("transfer-encoding: gzip", "other than chunked"),
        ("transfer-encoding: gzip, chunked", "other than chunked"),
        ("transfer-encoding: ,", "empty"),
        ("content-length: 5\r\ncontent-length: 6", "differ"),
        ("content-length: 5, 6", "differ"),
        ("content-length: +5", "content-length"),
        ("content-length: -1", "content-length"),
        ("content-length: 0x10", "content-length"),
        ("content-length: 99999999999999999999", "content-length"),
    ] {
        let (parsed, _) = parse(&format!("POST / HTTP/1.1\r\n{framing}\r\n\r\n"));
        let refused = parsed.unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{framing}");
        assert!(refused.to_string().contains(why), "{framing}: {refused}");
    }
    let (parsed, _) = parse("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n");
    assert!(matches!(parsed, Err(HeadError::Framing(_))));
    // The same length twice is one length.
    let (parsed, _) = parse("POST / HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\n");
    assert_eq!(parsed.unwrap().unwrap().framing, BodyFraming::Length(5));
}

#[test]
fn malformed_and_oversized_heads_are_refused() {
    for bad in [
        "GET / HTTP/1.1\r\nbad header\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET\r\n\r\n",
        "G\0T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nx: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\n x: folded\r\n\r\n",
    ] {
        let (parsed, _) = parse(bad);
        assert!(
            matches!(parsed, Err(HeadError::Bad(_))),
            "{bad:?}: {parsed:?}"
        );
    }
    let fields: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    let (parsed, _) = parse(&format!("GET / HTTP/1.1\r\n{fields}\r\n"));
    assert_eq!(parsed.unwrap_err(), HeadError::TooLarge);
    let long = "a".repeat(head::MAX_HEAD_BYTES + 1);
    let (parsed, _) = parse(&format!("GET / HTTP/1.1\r\nx: {long}"));
    assert_eq!(
        parsed.unwrap_err().status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

#[test]
fn keep_alive_follows_the_version_and_the_connection_field() {
    for (text, keep) in [
        ("GET / HTTP/1.1\r\n\r\n", true),
        (
            "GET / HTTP/1.1\r\nconnection: keep-alive, Close\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", true),
    ] {
        assert_eq!(parse(text).0.unwrap().unwrap().keep_alive, keep, "{text}");
    }
}

#[test]
fn an_answer_head_carries_the_nodes_own_framing_only() {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-length", "999".parse().unwrap());
    headers.insert("transfer-encoding", "chunked".parse().unwrap());
    headers.insert("connection", "upgrade".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    headers.insert("x-kept", "1".parse().unwrap());
    let mut out = BytesMut::new();
    let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
    head::encode(
        StatusCode::OK,
        &headers,
        AnswerFraming::Length(3),
        true,
        false,
        date,
        &mut out,
    );
    assert_eq!(
        &out[..],
        b"HTTP/1.1 200 OK\r\nx-kept: 1\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 3\r\n\r\n"
    );
    let get = http::Method::GET;
    let v11 = http::Version::HTTP_11;
    assert_eq!(
        AnswerFraming::of(StatusCode::OK, &get, v11, None),
        AnswerFraming::Chunked
    );
    assert_eq!(
        AnswerFraming::of(StatusCode::OK, &get, http::Version::HTTP_10, None),
        AnswerFraming::UntilClose
    );
    assert_eq!(
        AnswerFraming::of(StatusCode::NO_CONTENT, &get, v11, Some(4)),
        AnswerFraming::Empty
    );
    assert_eq!(
        AnswerFraming::of(StatusCode::OK, &http::Method::HEAD, v11, Some(4)),
        AnswerFraming::Empty
    );
    let mut small = [0u8; 16];
    assert_eq!(hex(0, &mut small), b"0");
    assert_eq!(hex(0x1a2f, &mut small), b"1a2f");
}

pub(super) type Answer = Either<
    Full<Bytes>,
    StreamBody<
        futures_util::stream::BoxStream<'static, Result<http_body::Frame<Bytes>, Infallible>>,
    >,
>;

/// Released when the handler's future is dropped.
pub(super) struct Dropped(pub(super) Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A server whose handler answers `<method> <path> <body length>:<body>`,
/// or a body that fails; `/stream` answers two events, the second once
/// the test sends on the returned channel; `/wait` never answers, and
/// raises the returned flag once its request is dropped.
async fn server() -> (
    String,
    watch::Sender<bool>,
    mpsc::Sender<()>,
    Arc<AtomicBool>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, shutdown) = watch::channel(false);
    let (next, events) = mpsc::channel::<()>(1);
    let events = Arc::new(tokio::sync::Mutex::new(events));
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let handler = move |req: Request<RequestBody>| {
        let (events, flag) = (events.clone(), flag.clone());
        async move {
            let (parts, body) = req.into_parts();
            if parts.uri.path() == "/wait" {
                let _guard = Dropped(flag);
                std::future::pending::<()>().await;
            }
            if parts.uri.path() == "/stream" {
                let stream = futures_util::stream::unfold(0, move |n| {
                    let events = events.clone();
                    async move {
                        match n {
                            0 => {}
                            1 => {
                                events.lock().await.recv().await;
                            }
                            _ => return None,
                        }
                        let event = Bytes::from(format!("data: {n}\n\n"));
                        Some((Ok(http_body::Frame::data(event)), n + 1))
                    }
                });
                return Ok::<_, Infallible>(Response::new(Answer::Right(StreamBody::new(
                    stream.boxed(),
                ))));
            }
            let text = match body.collect().await {
                Ok(body) => {
                    let body = body.to_bytes();
                    format!(
                        "{} {} {}:{}",
                        parts.method,
                        parts.uri.path(),
                        body.len(),
                        String::from_utf8_lossy(&body)
                    )
                }
                Err(e) => format!("body failed: {e}"),
            };
            Ok(Response::new(Answer::Left(Full::new(Bytes::from(text)))))
        }
    };
    let limits = Limits::data(&proto::config::ConnectionsConfig::default());
    tokio::spawn(serve_data(
        listener,
        handler,
        shutdown,
        Duration::from_secs(1),
        limits,
        Gate::new("API", 64),
    ));
    (addr, stop, next, dropped)
}

/// Reads until the peer closes.
pub(super) async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, conn.read_to_end(&mut seen))
        .await
        .expect("the connection was not closed")
        .ok();
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads until `seen` holds `want`.
pub(super) async fn read_until(conn: &mut TcpStream, want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!("never saw {want:?} in {:?}", String::from_utf8_lossy(&seen))
            })
            .unwrap();
        assert!(
            n > 0,
            "closed before {want:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (addr, _stop, _next, _) = server().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /a HTTP/1.1\r\ncontent-length: 3\r\n\r\nonePOST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
          2\r\ntw\r\n1;ext=1\r\no\r\n0\r\nx-trailer: 1\r\n\r\nGET /c HTTP/1.1\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let answers = read_to_close(&mut conn).await;
    let a = answers.find("POST /a 3:one").unwrap();
    let b = answers.find("POST /b 3:two").unwrap();
    let c = answers.find("GET /c 0:").unwrap();
    assert!(a < b && b < c, "{answers}");
    assert_eq!(
        answers.matches("HTTP/1.1 200 OK\r\n").count(),
        3,
        "{answers}"
    );
    assert!(answers.contains("content-length: 13\r\n"), "{answers}");
    assert!(answers.contains("\r\ndate: "), "{answers}");
    assert_eq!(answers.matches("connection: close").count(), 1, "{answers}");
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_is_read_whole_and_the_connection_kept() {
    let (addr, _stop, _next, _) = server().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /slow HTTP/1.1\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b"defg").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b"hij").await.unwrap();
    read_until(&mut conn, "POST /slow 10:abcdefghij").await;
    // A chunked body cut anywhere, on the same connection.
    conn.write_all(b"POST /chunks HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b"lo\r\n0\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b"\n\r\n").await.unwrap();
    read_until(&mut conn, "POST /chunks 5:hello").await;
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_before_sending_its_body() {
    let (addr, _stop, _next, _) = server().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /e HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut conn, "HTTP/1.1 100 Continue\r\n\r\n").await;
    conn.write_all(b"ok").await.unwrap();
    read_until(&mut conn, "POST /e 2:ok").await;
}

#[tokio::test]
async fn smuggling_attempts_get_a_json_400_and_the_connection_closes() {
    let (addr, _stop, _next, _) = server().await;
    for attack in [
        "POST / HTTP/1.1\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\ncontent-length: 4\r\ncontent-length: 30\r\n\r\nabcdGET /smuggled HTTP/1.1\r\n\r\n",
    ] {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(attack.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut conn).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("\"type\":\"invalid_request_error\""),
            "{answer}"
        );
        assert!(!answer.contains("smuggled"), "{answer}");
    }
    // A chunked body that breaks its format fails the body, and the
    // connection is not read further.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut conn).await;
    assert!(
        answer.contains("body failed: the chunked body is invalid"),
        "{answer}"
    );
    assert!(!answer.contains("smuggled"), "{answer}");
    // An oversized head: 431.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let long = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(70_000));
    let _ = conn.write_all(long.as_bytes()).await;
    let answer = read_to_close(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[tokio::test]
async fn a_streamed_answer_goes_out_event_by_event_chunked() {
    let (addr, _stop, next, _) = server().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /stream HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    // The first event arrives while the second is not yet made.
    let first = read_until(&mut conn, "data: 0\n\n\r\n").await;
    assert!(first.contains("transfer-encoding: chunked\r\n"), "{first}");
    assert!(first.ends_with("9\r\ndata: 0\n\n\r\n"), "{first}");
    next.send(()).await.unwrap();
    read_until(&mut conn, "9\r\ndata: 1\n\n\r\n0\r\n\r\n").await;
    // To an HTTP/1.0 client: no chunks, the end is the close.
    let mut old = TcpStream::connect(&addr).await.unwrap();
    old.write_all(b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut old, "data: 0\n\n").await;
    next.send(()).await.unwrap();
    let rest = read_to_close(&mut old).await;
    assert!(rest.ends_with("data: 1\n\n"), "{rest}");
}

#[tokio::test]
async fn a_client_that_hangs_up_drops_its_request() {
    let (addr, _stop, _next, dropped) = server().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /wait HTTP/1.1\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!dropped.load(Ordering::SeqCst));
    drop(conn);
    tokio::time::timeout(PATIENCE, async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request outlived its connection");
}

#[tokio::test]
async fn h2c_connections_are_still_served() {
    let (addr, _stop, _next, _) = server().await;
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{addr}/h2"))
        .body(Full::new(Bytes::from_static(b"hi")))
        .unwrap();
    let answer = sender.send_request(req).await.unwrap();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"POST /h2 2:hi");
}

#[tokio::test]
async fn a_stopping_server_answers_the_request_in_flight_then_closes() {
    let (addr, stop, next, _) = server().await;
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /a HTTP/1.1\r\n\r\n").await.unwrap();
    read_until(&mut idle, "GET /a 0:").await;
    let mut busy = TcpStream::connect(&addr).await.unwrap();
    busy.write_all(b"GET /stream HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut busy, "data: 0").await;
    stop.send(true).unwrap();
    // The idle one closes at once; the busy one finishes its answer.
    assert_eq!(read_to_close(&mut idle).await, "");
    next.send(()).await.unwrap();
    let rest = read_to_close(&mut busy).await;
    assert!(rest.ends_with("data: 1\n\n\r\n0\r\n\r\n"), "{rest}");
}
