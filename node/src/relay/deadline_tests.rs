//! Tests of a stream's time limit (`proxy.max_stream_ms`): an upstream that
//! keeps sending, or keeps quiet, past it gets the error event then.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};

use super::tests::{Ended, Record};
use super::*;

/// Relays `upstream` with a 2 s idle timeout, ending by `limit` from now;
/// what the client got as text, and how the stream ended.
async fn relayed<B>(upstream: B, limit: Duration) -> (String, StreamEnd)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let ended: Ended = Arc::default();
    let mut relay = Relay::new(
        Bytes::from_static(b"data: 0\n\n"),
        upstream,
        true,
        Duration::from_secs(2),
        Arc::new(crate::scrub::Scrubber::default()),
        Box::new(Record(ended.clone())),
    )
    .ends_by(Instant::now() + limit);
    let mut got = String::new();
    while let Some(frame) = relay.frame().await {
        got.push_str(std::str::from_utf8(&frame.unwrap().into_data().unwrap()).unwrap());
    }
    let end = ended.lock().unwrap().clone().unwrap().0;
    (got, end)
}

/// A chunk every 500 ms for ever, well inside the idle timeout: the limit
/// ends it.
#[tokio::test(start_paused = true)]
async fn a_stream_that_never_ends_is_ended_at_its_limit() {
    let started = Instant::now();
    let endless = StreamBody::new(Box::pin(stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((Ok::<_, String>(Frame::data(Bytes::from("data: x\n\n"))), ()))
    })));
    let (got, end) = relayed(endless, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_millis(10_600),
        "{took:?}"
    );
    assert!(got.matches("data: x").count() >= 19, "{got}");
    assert!(got.contains("time limit"), "{got}");
    assert!(
        matches!(end, StreamEnd::UpstreamFailed(ref r) if r.contains("time limit")),
        "{end:?}"
    );
}

/// A quiet upstream whose limit comes before its idle timeout is ended at
/// the limit, saying so.
#[tokio::test(start_paused = true)]
async fn a_limit_before_the_idle_timeout_ends_a_quiet_stream() {
    let started = Instant::now();
    let quiet = StreamBody::new(stream::pending::<Result<Frame<Bytes>, String>>());
    let (got, end) = relayed(quiet, Duration::from_millis(700)).await;
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    assert!(got.contains("time limit"), "{got}");
    assert!(matches!(end, StreamEnd::UpstreamFailed(_)), "{end:?}");
}

/// A stream that ends inside its limit is untouched by it.
#[tokio::test(start_paused = true)]
async fn a_stream_inside_its_limit_ends_as_it_came() {
    let three = StreamBody::new(Box::pin(stream::unfold(0, |n| async move {
        if n == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((
            Ok::<_, String>(Frame::data(Bytes::from("data: x\n\n"))),
            n + 1,
        ))
    })));
    let (got, end) = relayed(three, Duration::from_secs(10)).await;
    assert_eq!(got, "data: 0\n\ndata: x\n\ndata: x\n\ndata: x\n\n");
    assert_eq!(end, StreamEnd::Complete);
}
