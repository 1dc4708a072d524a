#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Writing answers over real sockets: a client that stops reading.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::StreamBody;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::RequestBody;
use super::tests::{Answer, Dropped, PATIENCE};
use crate::server::{Gate, Limits, serve_data};

/// A client that asks for an answer and then reads none of it is closed
/// once a write has waited the idle timeout, and its request (here an
/// endless stream; in the proxy, the upstream call and the in-flight slot)
/// is dropped with it, rather than held for as long as the client likes.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_its_request_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let handler = move |_req: Request<RequestBody>| {
        let guard = Dropped(flag.clone());
        async move {
            // 64 KiB a frame, for ever, while the guard lives in the body.
            let endless = futures_util::stream::unfold(guard, |guard| async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                Some((Ok(http_body::Frame::data(chunk)), guard))
            });
            Ok::<_, Infallible>(Response::new(Answer::Right(StreamBody::new(
                endless.boxed(),
            ))))
        }
    };
    let config = proto::config::ConnectionsConfig {
        idle_timeout_ms: 300,
        ..Default::default()
    };
    tokio::spawn(serve_data(
        listener,
        handler,
        shutdown,
        Duration::from_secs(1),
        Limits::data(&config),
        Gate::new("API", 64),
    ));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /endless HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    // The socket buffers fill, the write waits, and 300 ms later the
    // connection is closed and the body dropped.
    tokio::time::timeout(PATIENCE, async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a client that reads nothing held its request");
    drop(conn);
}
