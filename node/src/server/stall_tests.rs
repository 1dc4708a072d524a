#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! h2c answers over real sockets: a client that never opens a stream's
//! window, and one whose answer is slow to come.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Gate, Limits, RequestBody, serve_data};

type Answer = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// Set when the answer's body is dropped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A data listener with 300 ms header and idle timeouts whose answers are `answer`'s;
/// its address, and the flag set once an answer's body is dropped.
async fn server(
    answer: fn(Dropped) -> Answer,
) -> (std::net::SocketAddr, watch::Sender<bool>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let handler = move |_req: Request<RequestBody>| {
        let body = answer(Dropped(flag.clone()));
        async move { Ok::<_, Infallible>(Response::new(body)) }
    };
    // The watchdog first looks at the header timeout, then every idle
    // timeout: both short, so the test is.
    let config = proto::config::ConnectionsConfig {
        idle_timeout_ms: 300,
        header_read_timeout_ms: 300,
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
    (addr, stop, dropped)
}

/// An h2c request's answer, its head only: the body is the caller's to
/// read, or not.
async fn h2c(addr: std::net::SocketAddr) -> Response<hyper::body::Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/answer"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(req).await.unwrap()
}

/// An h2c client that takes the answer's head and never reads its body
/// keeps the stream's window closed while its connection answers pings.
/// Once the answer has waited the idle timeout, the connection is closed
/// and the answer (in the proxy: the upstream call and the in-flight slot)
/// dropped, rather than held for as long as the client likes.
#[tokio::test]
async fn a_stream_whose_window_is_never_opened_is_dropped_with_its_connection() {
    let (addr, _stop, dropped) = server(|guard| {
        // 64 KiB a frame, for ever, while the guard lives in the body.
        let endless = futures_util::stream::unfold(guard, |guard| async move {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Some((Ok(Frame::data(chunk)), guard))
        });
        StreamBody::new(endless.boxed())
    })
    .await;
    let answer = h2c(addr).await;
    assert_eq!(answer.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a stream whose client reads nothing held its answer");
    // The client sees its answer broken, not ended.
    let read = tokio::time::timeout(Duration::from_secs(5), answer.into_body().collect()).await;
    assert!(matches!(read, Ok(Err(_))), "{read:?}");
}

/// An answer that waits on its own source (an upstream thinking) past the
/// idle timeout does not wait on its client: it is sent whole.
#[tokio::test]
async fn a_slow_answer_is_not_taken_for_a_stalled_client() {
    let (addr, _stop, _dropped) = server(|guard| {
        let slow = futures_util::stream::unfold(0u8, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            Some((Ok(Frame::data(Bytes::from(vec![b'a' + i; 100_000]))), i + 1))
        })
        .chain(futures_util::stream::once(async move {
            drop(guard);
            Ok(Frame::data(Bytes::from_static(b"end")))
        }));
        StreamBody::new(slow.boxed())
    })
    .await;
    let answer = h2c(addr).await;
    let body = tokio::time::timeout(Duration::from_secs(10), answer.into_body().collect())
        .await
        .expect("the answer did not end")
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), 300_003);
    assert!(body.ends_with(b"cend"));
}
