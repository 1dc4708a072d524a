//! The owned path against upstreams that lie about their framing, over
//! real sockets: each test scripts the bytes the upstream writes, and
//! checks what the client gets and whether the connection is kept. The
//! one that matters most: no byte an upstream sends past its answer ever
//! becomes the next request's answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::tests::{pools as pools_to, read_request, request};
use super::{Pools, UpstreamBody};

/// An upstream that answers the n-th request it reads (on any connection)
/// with `answers[n]`, written in two pieces 20 ms apart, split at `split`
/// bytes, so the client sees a head or a body cut anywhere. It keeps each
/// connection open after answering unless `close` is set.
struct Scripted {
    base: String,
    accepted: Arc<AtomicUsize>,
}

async fn scripted(answers: &[&str], split: usize, close: bool) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let answers: Arc<Vec<Vec<u8>>> =
        Arc::new(answers.iter().map(|a| a.as_bytes().to_vec()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let (answers, next) = (answers.clone(), next.clone());
            tokio::spawn(async move {
                while read_request(&mut stream).await.is_some() {
                    let answer = &answers[next.fetch_add(1, Ordering::SeqCst)];
                    let (a, b) = answer.split_at(split.min(answer.len()));
                    // A client that gave up on the answer closes early.
                    if stream.write_all(a).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if stream.write_all(b).await.is_err() {
                        return;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    Scripted { base, accepted }
}

async fn body_of(pools: &Pools, base: &str) -> Result<(u16, Bytes), String> {
    let response = pools.send(request(base)).await.map_err(|e| {
        let mut causes = e.causes();
        causes.insert(0, e.to_string());
        causes.join(": ")
    })?;
    assert!(matches!(response.body(), UpstreamBody::Owned(_)));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes()))
}

fn idle(pools: &Pools) -> usize {
    pools.owned().unwrap().idle_here()
}

const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                       5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";

#[tokio::test]
async fn a_chunked_answer_cut_anywhere_reads_whole_and_keeps_its_connection() {
    for split in [10, 47, 50, 55, 60, 70] {
        let up = scripted(&[CHUNKED, CHUNKED], split, false).await;
        let pools = pools_to(&up.base);
        for _ in 0..2 {
            let (status, body) = body_of(&pools, &up.base).await.unwrap();
            assert_eq!((status, &body[..]), (200, &b"hello, world"[..]), "{split}");
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "split at {split}");
        assert_eq!(idle(&pools), 1);
    }
}

#[tokio::test]
async fn bytes_past_an_answer_are_never_the_next_answer() {
    // The smuggled answer follows the first in the same write.
    let smuggled = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}\
                    HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED";
    let honest = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhonest";
    let up = scripted(&[smuggled, honest], 1000, false).await;
    let pools = pools_to(&up.base);
    assert_eq!(body_of(&pools, &up.base).await.unwrap().1, "{}");
    assert_eq!(
        idle(&pools),
        0,
        "a connection with bytes past its answer is closed"
    );
    assert_eq!(body_of(&pools, &up.base).await.unwrap().1, "honest");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_answer_with_both_lengths_is_read_as_chunked_and_its_connection_closed() {
    let both = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n";
    let up = scripted(&[both, both], 1000, false).await;
    let pools = pools_to(&up.base);
    assert_eq!(body_of(&pools, &up.base).await.unwrap().1, "hello");
    assert_eq!(idle(&pools), 0);
    assert_eq!(body_of(&pools, &up.base).await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_answer_shorter_than_its_length_is_an_error_not_an_answer() {
    let short = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{\"a\"";
    let up = scripted(&[short], 1000, true).await;
    let pools = pools_to(&up.base);
    let error = body_of(&pools, &up.base).await.unwrap_err();
    assert!(error.contains("closed before the answer's end"), "{error}");
    assert_eq!(idle(&pools), 0);
}

#[tokio::test]
async fn an_answer_without_a_length_ends_at_the_close_and_is_not_reused() {
    let open = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end";
    let up = scripted(&[open], 30, true).await;
    let pools = pools_to(&up.base);
    assert_eq!(body_of(&pools, &up.base).await.unwrap().1, "until the end");
    assert_eq!(idle(&pools), 0);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_a_bad_head_fails_the_request() {
    let continued = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n\
                     HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok";
    let up = scripted(&[continued], 30, false).await;
    let pools = pools_to(&up.base);
    assert_eq!(body_of(&pools, &up.base).await.unwrap(), (201, "ok".into()));

    let huge = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(70_000)
    );
    let lies = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}";
    let smuggle = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity\r\n\r\n";
    for (answer, why) in [
        (huge.as_str(), "over 65536 bytes"),
        (lies, "values differ"),
        (smuggle, "framing is invalid"),
        ("HTTP/1.1 200 OK\r\nx:\x01\r\n\r\n", "invalid"),
        ("HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    ] {
        let up = scripted(&[answer], 1000, false).await;
        let pools = pools_to(&up.base);
        let error = body_of(&pools, &up.base).await.unwrap_err();
        assert!(error.contains(why), "{why}: {error}");
        assert_eq!(idle(&pools), 0);
    }
}

#[tokio::test]
async fn a_stream_read_in_another_task_gives_its_connection_back_at_its_end() {
    let up = scripted(&[CHUNKED, CHUNKED], 50, false).await;
    let pools = pools_to(&up.base);
    let response = pools.send(request(&up.base)).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "hello");
    let rest = tokio::spawn(async move { body.collect().await.unwrap().to_bytes() });
    assert_eq!(rest.await.unwrap(), ", world");
    assert_eq!(idle(&pools), 1);
    assert_eq!(body_of(&pools, &up.base).await.unwrap().1, "hello, world");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "one warm connection");
}

#[tokio::test]
async fn an_upstream_that_answers_before_reading_a_large_body_is_heard() {
    // It reads the head only, answers 413, and reads nothing more: the
    // body cannot all be written, and the answer must not wait for it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let answer = "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig";
        let _ = stream.write_all(answer.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let pools = pools_to(&base);
    let large = Request::post(format!("{base}/chat/completions"))
        .body(Full::new(Bytes::from(vec![b'x'; 64 << 20])))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), pools.send(large))
        .await
        .expect("the early answer is read while the body is still being written")
        .unwrap();
    assert_eq!(response.status(), 413);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "big");
    assert_eq!(idle(&pools), 0, "its connection is not reused");
}
