//! Connection hygiene on both listeners, over real sockets against a real
//! `meridian`: a slow request body holds no in-flight slot and is answered
//! 408 once `connections.body_timeout_ms` passes; a connection that never
//! sends a byte, or stops half-way through its head, is closed after the
//! header timeout, and an idle kept-alive one after the idle timeout; at
//! `max_connections` a new connection takes the place of an idle one, or,
//! when all are in a request, gets a JSON 503; an h2c connection cannot
//! open more than `max_h2_streams` streams at once; when the node stops,
//! its idle connections are closed at once and a request in flight is
//! answered first; an HTTP/1.1 client is served with `100 Continue` and
//! chunked bodies, and a request framed two ways never reaches an upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body::Frame;
use http_body_util::StreamBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::config::{Config, route_to, upstream};
use support::{Mock, Node, chat_body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any step here waits before the test fails (not a timing
/// assertion: every limit configured below is a fraction of it).
const PATIENCE: Duration = Duration::from_secs(15);

/// A node with upstream `a` on `mock` and route `m` to it, after `limits`
/// set its `[connections]` and `[proxy]` fields.
async fn node(mock: &Mock, limits: impl FnOnce(&mut Config)) -> Node {
    Node::start_with(
        |c: &mut Config| {
            limits(c);
            c.upstreams.push(upstream("a", mock));
            c.routes.push(route_to("m", "a", "x"));
        },
        &[],
    )
    .await
}

/// Reads until the peer closes; returns what it sent. Fails the test if the
/// connection is still open after [`PATIENCE`].
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("the connection was not closed");
        match read {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// An HTTP/1.1 request whose head is complete and whose body never is.
async fn slow_body(api: &str) -> TcpStream {
    let mut conn = TcpStream::connect(api).await.unwrap();
    conn.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          content-length: 100000\r\n\r\n{\"model\": \"m\", \"messages\": [",
    )
    .await
    .unwrap();
    conn
}

#[tokio::test]
async fn slow_bodies_hold_no_slot_and_are_answered_408_after_the_body_timeout() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, |c| {
        c.connections.body_timeout_ms = 1500;
        c.proxy.max_in_flight = 2;
    })
    .await;

    // More stalled bodies than the node has in-flight slots, on HTTP/1.1
    // connections and on the streams of one h2c connection.
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(slow_body(&node.api).await);
    }
    let h2 = TcpStream::connect(&node.api).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(h2))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let first: Result<Frame<Bytes>, std::io::Error> =
            Ok(Frame::data(Bytes::from_static(b"{\"model\": \"m\"")));
        let body = StreamBody::new(stream::StreamExt::chain(
            stream::iter([first]),
            stream::pending(),
        ));
        let req = Request::post(format!("http://{}/v1/chat/completions", node.api))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        streams.push(tokio::spawn(sender.send_request(req)));
    }

    // Others are served while those bodies trickle in (before: 429).
    for _ in 0..3 {
        let answer = node.chat(chat_body("m"), &[]).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    // Each stalled body is answered 408 once the body timeout passes.
    for mut conn in slow {
        let answer = read_to_close(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    }
    for stream in streams {
        let response = tokio::time::timeout(PATIENCE, stream)
            .await
            .expect("a stalled h2 stream was never answered")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 408);
    }
    let answer = node.chat(chat_body("m"), &[]).await;
    assert_eq!(answer.status, 200);

    // The admin API's bodies have the same deadline: a stalled write is
    // answered (an error, nothing applied) and its connection freed.
    let mut admin = TcpStream::connect(&node.admin).await.unwrap();
    admin
        .write_all(
            b"PUT /admin/v1/upstreams/x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              content-length: 1000\r\n\r\n{\"base_url\": ",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut admin).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let upstream = node.admin_get("/admin/v1/upstreams/x", &[]).await;
    assert_eq!(upstream.status, 404);
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed_on_both_listeners() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, |c| {
        c.connections.header_read_timeout_ms = 500;
        c.connections.idle_timeout_ms = 1000;
    })
    .await;
    for addr in [&node.api, &node.admin] {
        // Never sends a byte.
        let mut silent = TcpStream::connect(addr.as_str()).await.unwrap();
        assert_eq!(read_to_close(&mut silent).await, "", "{addr}");

        // Stops half-way through its request head (slowloris).
        let mut half = TcpStream::connect(addr.as_str()).await.unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: ")
            .await
            .unwrap();
        let answer = read_to_close(&mut half).await;
        assert!(!answer.contains(" 200 "), "{addr}: {answer}");

        // Speaks h2c's preface, then opens no stream.
        let mut h2 = TcpStream::connect(addr.as_str()).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        read_to_close(&mut h2).await;

        // One request, answered, then nothing: closed once idle.
        let mut idle = TcpStream::connect(addr.as_str()).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut idle).await;
        assert!(answer.starts_with("HTTP/1.1 "), "{addr}: {answer}");

        // One request answered, then half of the next head (slowloris on a
        // kept-alive connection): closed once idle, the second never
        // answered.
        let mut kept = TcpStream::connect(addr.as_str()).await.unwrap();
        kept.write_all(
            b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nx-a: ",
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let answer = read_to_close(&mut kept).await;
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{addr}: {answer}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{addr}: closed after {:?}",
            started.elapsed()
        );
    }
    // The listeners still serve.
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 200);
    assert_eq!(node.admin_get("/healthz", &[]).await.status, 200);
}

/// Sends a request on a fresh connection and returns everything the server
/// sent before closing it (`connection: close`).
async fn one_request(addr: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut conn).await
}

#[tokio::test]
async fn past_the_connection_cap_with_every_connection_busy_a_new_one_gets_a_json_503() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, |c| {
        c.connections.max_connections = 3;
        c.connections.admin_max_connections = 2;
        c.connections.header_read_timeout_ms = 60000;
    })
    .await;
    let busy = [
        (&node.api, 3, "/v1/models", "POST /v1/chat/completions"),
        (&node.admin, 2, "/healthz", "PUT /admin/v1/upstreams/x"),
    ];
    for (addr, cap, path, slow) in busy {
        // Connections in a request (a body still arriving): none can give
        // way to a newcomer.
        let mut held = Vec::new();
        for _ in 0..cap {
            let mut conn = TcpStream::connect(addr.as_str()).await.unwrap();
            let head = format!(
                "{slow} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                 content-length: 1000\r\n\r\n{{"
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            held.push(conn);
        }
        // Until the node has read their heads they look idle, and a
        // newcomer could take the place of one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Let the listener count them (they are accepted asynchronously).
        let refused = wait_for(
            || async { one_request(addr, path).await },
            |a| a.starts_with("HTTP/1.1 503 "),
        )
        .await;
        let (head, body) = refused.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("retry-after: 1"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections", "{body}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("limit of {cap} open connections")),
            "{body}"
        );

        // One held connection goes away: a new one is served again.
        held.pop();
        let served = wait_for(
            || async { one_request(addr, path).await },
            |a| a.starts_with("HTTP/1.1 200 "),
        )
        .await;
        assert!(served.starts_with("HTTP/1.1 200 "), "{served}");
    }
    assert!(node.log().contains("connections refused"), "{}", node.log());
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_displaces_a_silent_connection() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, |c| {
        c.connections.max_connections = 3;
        c.connections.admin_max_connections = 2;
        c.connections.header_read_timeout_ms = 60000;
    })
    .await;
    for (addr, cap, path) in [(&node.api, 3, "/v1/models"), (&node.admin, 2, "/healthz")] {
        // The listener full of connections that never speak (before: they
        // held their place until the header timeout, and everyone else got
        // nothing). Opened one by one, so the first is the oldest.
        let mut silent = Vec::new();
        for _ in 0..cap {
            silent.push(TcpStream::connect(addr.as_str()).await.unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..cap {
            let answer = one_request(addr, path).await;
            assert!(answer.starts_with("HTTP/1.1 200 "), "{addr}: {answer}");
        }
        // The first newcomer closed the oldest silent connection.
        assert_eq!(read_to_close(&mut silent[0]).await, "", "{addr}");
    }
}

#[tokio::test]
async fn a_stopping_node_closes_idle_connections_at_once_and_answers_those_in_flight() {
    let mock = Mock::start(&[]).await;
    mock.behave(serde_json::json!({"first_byte": {"fixed_ms": 1500}}))
        .await;
    // Far past PATIENCE: only the stop can close these connections in time
    // (the node's drain itself lasts 30 s).
    let node = node(&mock, |c| {
        c.connections.header_read_timeout_ms = 120_000;
        c.connections.idle_timeout_ms = 120_000;
    })
    .await;
    let mut silent = TcpStream::connect(node.api.as_str()).await.unwrap();
    // Kept alive after an answer.
    let mut kept = TcpStream::connect(node.api.as_str()).await.unwrap();
    kept.write_all(b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, kept.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    // In flight when the node is told to stop.
    let body = chat_body("m").to_string();
    let mut busy = TcpStream::connect(node.api.as_str()).await.unwrap();
    busy.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.signal("TERM").await;
    assert_eq!(read_to_close(&mut silent).await, "");
    assert_eq!(read_to_close(&mut kept).await, "");
    let answer = read_to_close(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("chat.completion"), "{answer}");
}

/// Runs `attempt` until `done` holds of its result (at most [`PATIENCE`]).
async fn wait_for<F, Fut>(attempt: F, done: impl Fn(&str) -> bool) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = attempt().await;
        if done(&answer) || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP/2 frame: (type, flags, stream, payload).
type H2Frame = (u8, u8, u32, Vec<u8>);

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

async fn read_h2_frame(conn: &mut TcpStream) -> H2Frame {
    let mut head = [0u8; 9];
    tokio::time::timeout(PATIENCE, conn.read_exact(&mut head))
        .await
        .expect("no frame from the server")
        .unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await.unwrap();
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (head[3], head[4], stream, payload)
}

/// A HEADERS block for `POST /v1/chat/completions` (HPACK literals without
/// indexing, so every block stands alone).
fn post_headers() -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    for (index, value) in [(4u8, "/v1/chat/completions"), (1, "localhost")] {
        block.push(index); // literal without indexing, indexed name
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

#[tokio::test]
async fn an_h2c_connection_cannot_open_more_streams_than_the_cap() {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const END_HEADERS: u8 = 0x4;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const REFUSED_STREAM: u32 = 0x7;

    let mock = Mock::start(&[]).await;
    let node = node(&mock, |c| c.connections.max_h2_streams = 4).await;
    let mut conn = TcpStream::connect(&node.api).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&h2_frame(SETTINGS, 0, 0, &[]))
        .await
        .unwrap();

    // The server announces the cap in its first SETTINGS; acknowledge it.
    let (kind, flags, _, payload) = read_h2_frame(&mut conn).await;
    assert_eq!((kind, flags & 1), (SETTINGS, 0));
    let announced = payload
        .chunks(6)
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == MAX_CONCURRENT_STREAMS)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(announced, Some(4));
    conn.write_all(&h2_frame(SETTINGS, 1, 0, &[]))
        .await
        .unwrap();

    // A client ignoring it opens a fifth stream while four bodies are open.
    for stream in [1u32, 3, 5, 7, 9] {
        conn.write_all(&h2_frame(HEADERS, END_HEADERS, stream, &post_headers()))
            .await
            .unwrap();
    }
    let reset = loop {
        let (kind, _, stream, payload) = read_h2_frame(&mut conn).await;
        if kind == RST_STREAM {
            break (stream, u32::from_be_bytes(payload[..4].try_into().unwrap()));
        }
    };
    assert_eq!(reset, (9, REFUSED_STREAM));
    // The node still serves others.
    assert_eq!(node.chat(chat_body("m"), &[]).await.status, 200);
}

/// Reads until `seen` holds `want`; fails the test after [`PATIENCE`].
async fn read_until(conn: &mut TcpStream, want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("the answer never came")
            .unwrap();
        assert!(
            n > 0,
            "closed before {want:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn raw_http1_clients_are_served_and_ambiguous_framing_never_reaches_an_upstream() {
    let mock = Mock::start(&[]).await;
    let node = node(&mock, |_| {}).await;
    let body = chat_body("m").to_string();

    // curl's way with a body over 1 KB: the head, a wait for `100
    // Continue`, then the body.
    let mut conn = TcpStream::connect(&node.api).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut conn, "HTTP/1.1 100 Continue\r\n\r\n").await;
    conn.write_all(body.as_bytes()).await.unwrap();
    let answer = read_until(&mut conn, "\"chat.completion\"").await;
    assert!(answer.contains("HTTP/1.1 200 OK\r\n"), "{answer}");

    // A chunked body, on the same kept-alive connection.
    let (first, rest) = body.split_at(10);
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
        first.len(),
        rest.len()
    );
    conn.write_all(chunked.as_bytes()).await.unwrap();
    let answer = read_until(&mut conn, "\"chat.completion\"").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let served = mock.requests().await;
    assert_eq!(served, 2);

    // Both lengths: a front proxy reading `content-length` would pass the
    // second request on as part of the first's body. Refused whole.
    let mut conn = TcpStream::connect(&node.api).await.unwrap();
    let smuggled = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n\
         POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n{body}",
        5 + body.len() + 60,
        body.len()
    );
    conn.write_all(smuggled.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut conn).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\"code\":\"bad_request\""), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(mock.requests().await, served);
}
