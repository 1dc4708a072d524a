//! Tests of the drain: a client that hangs up before the usage events is
//! still charged what they report, within the grace and no longer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::tests::{Ended, Record};
use super::*;

fn frame(s: &'static str) -> Result<Frame<Bytes>, String> {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

const CONTENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
const LAST: &str = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":40}}\n\n";

/// Ends like [`Record`], asking for an estimate of `.1` input tokens when
/// the client leaves before the usage comes.
struct Estimating(Ended, u64);

impl OnStreamEnd for Estimating {
    fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64) {
        *self.0.lock().unwrap() = Some((end, usage, bytes));
    }

    fn prompt_estimate(&self) -> Option<u64> {
        Some(self.1)
    }
}

/// A relay over an upstream fed through the returned sender, draining for
/// `grace` when it is given.
fn relay(
    grace: Option<Duration>,
) -> (
    Relay<impl Body<Data = Bytes, Error = String> + Send + Unpin + 'static>,
    mpsc::Sender<&'static str>,
    Ended,
) {
    relay_ending(grace, None)
}

/// The same, its end asking for an estimate of `prompt` input tokens.
fn relay_ending(
    grace: Option<Duration>,
    prompt: Option<u64>,
) -> (
    Relay<impl Body<Data = Bytes, Error = String> + Send + Unpin + 'static>,
    mpsc::Sender<&'static str>,
    Ended,
) {
    let (tx, mut rx) = mpsc::channel::<&'static str>(16);
    let frames = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|s| s.map(frame)));
    let body = StreamBody::new(frames);
    let ended: Ended = Arc::default();
    let relay = Relay::new(
        Bytes::from_static(CONTENT.as_bytes()),
        body,
        true,
        Duration::from_secs(60),
        Arc::new(crate::scrub::Scrubber::default()),
        match prompt {
            Some(prompt) => Box::new(Estimating(ended.clone(), prompt)) as Box<dyn OnStreamEnd>,
            None => Box::new(Record(ended.clone())),
        },
    );
    let relay = match grace {
        Some(grace) => relay.drain_on_hangup(grace),
        None => relay,
    };
    (relay, tx, ended)
}

/// Lets the drain's task run what it has.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_hangs_up_before_the_usage_is_charged_it() {
    let (mut relay, tx, ended) = relay(Some(Duration::from_secs(1)));
    tx.send(LAST).await.unwrap();
    // The client takes the whole answer, and goes.
    let first = relay.frame().await.unwrap().unwrap().into_data().unwrap();
    let second = relay.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, CONTENT);
    assert_eq!(second, LAST);
    let sent = (CONTENT.len() + LAST.len()) as u64;
    drop(relay);
    settle().await;
    assert!(ended.lock().unwrap().is_none(), "finished before the grace");

    // The usage arrives cut in two, with the end: it is counted.
    tx.send(&USAGE[..20]).await.unwrap();
    tx.send(&USAGE[20..]).await.unwrap();
    tx.send("data: [DONE]\n\n").await.unwrap();
    drop(tx);
    settle().await;
    let (end, usage, bytes) = ended.lock().unwrap().clone().expect("finished");
    assert_eq!(end, StreamEnd::ClientGone);
    assert_eq!(
        usage,
        Some(Usage {
            prompt_tokens: 30,
            completion_tokens: 40,
            cached_tokens: 0
        })
    );
    assert_eq!(
        bytes, sent,
        "what the client was sent, not what was drained"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_goes_on_past_the_grace_is_let_go() {
    let (mut relay, tx, ended) = relay(Some(Duration::from_secs(1)));
    relay.frame().await.unwrap().unwrap();
    drop(relay);
    tx.send(CONTENT).await.unwrap();
    settle().await;
    assert!(ended.lock().unwrap().is_none());
    tokio::time::advance(Duration::from_millis(1001)).await;
    settle().await;
    let (end, usage, _) = ended
        .lock()
        .unwrap()
        .clone()
        .expect("finished at the grace");
    assert_eq!(end, StreamEnd::ClientGone);
    assert_eq!(usage, None);
    // The upstream's body was dropped with the drain.
    assert!(tx.is_closed(), "the upstream is still held");
}

#[tokio::test(start_paused = true)]
async fn a_drained_event_that_never_ends_stops_the_drain_at_the_held_limit() {
    let (relay, tx, ended) = relay(Some(Duration::from_secs(3600)));
    let relay = relay.held_max(64);
    drop(relay);
    tx.send("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1")
        .await
        .unwrap();
    tx.send("                                                    ")
        .await
        .unwrap();
    settle().await;
    let (end, usage, _) = ended
        .lock()
        .unwrap()
        .clone()
        .expect("finished at the limit");
    assert_eq!((end, usage), (StreamEnd::ClientGone, None));
    assert!(tx.is_closed());
}

#[tokio::test]
async fn without_a_drain_a_hang_up_finishes_at_once() {
    let (mut relay, tx, ended) = relay(None);
    relay.frame().await.unwrap().unwrap();
    drop(relay);
    let (end, usage, bytes) = ended.lock().unwrap().clone().expect("finished at once");
    assert_eq!(
        (end, usage, bytes),
        (StreamEnd::ClientGone, None, CONTENT.len() as u64)
    );
    assert!(tx.is_closed());
}

#[test]
fn a_relay_dropped_outside_a_runtime_finishes_at_once() {
    let (relay, tx, ended) = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        relay(Some(Duration::from_secs(1)))
    };
    drop(relay);
    assert_eq!(
        ended.lock().unwrap().clone().unwrap().0,
        StreamEnd::ClientGone
    );
    assert!(tx.is_closed());
}

/// A client that leaves long before the end is charged an estimate: the
/// input from the prompt's size, an output token per data event it was
/// sent (the role and finish chunks included).
#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_long_before_the_end_is_charged_an_estimate() {
    let estimate = |events| Usage {
        prompt_tokens: 250,
        completion_tokens: events,
        cached_tokens: 0,
    };
    // Past the grace, nothing reported: the estimate.
    let (mut relay, tx, ended) = relay_ending(Some(Duration::from_secs(1)), Some(250));
    tx.send(CONTENT).await.unwrap();
    relay.frame().await.unwrap().unwrap();
    relay.frame().await.unwrap().unwrap();
    drop(relay);
    tx.send(CONTENT).await.unwrap();
    settle().await;
    tokio::time::advance(Duration::from_millis(1001)).await;
    settle().await;
    let (end, usage, _) = ended.lock().unwrap().clone().unwrap();
    assert_eq!((end, usage), (StreamEnd::ClientGone, Some(estimate(2))));

    // No drain: the estimate at once.
    let (mut relay, _tx, ended) = relay_ending(None, Some(250));
    relay.frame().await.unwrap().unwrap();
    drop(relay);
    assert_eq!(ended.lock().unwrap().clone().unwrap().1, Some(estimate(1)));

    // The upstream ends within the grace: its own report, not the estimate,
    // however many events were sent.
    let (mut relay, tx, ended) = relay_ending(Some(Duration::from_secs(1)), Some(250));
    for _ in 0..5 {
        tx.send(CONTENT).await.unwrap();
    }
    relay.frame().await.unwrap().unwrap();
    relay.frame().await.unwrap().unwrap();
    drop(relay);
    tx.send(USAGE).await.unwrap();
    drop(tx);
    settle().await;
    let reported = Usage {
        prompt_tokens: 30,
        completion_tokens: 40,
        cached_tokens: 0,
    };
    assert_eq!(ended.lock().unwrap().clone().unwrap().1, Some(reported));

    // The upstream ends within the grace, reporting nothing: the estimate.
    let (mut relay, tx, ended) = relay_ending(Some(Duration::from_secs(1)), Some(250));
    relay.frame().await.unwrap().unwrap();
    drop(relay);
    tx.send(LAST).await.unwrap();
    drop(tx);
    settle().await;
    assert_eq!(ended.lock().unwrap().clone().unwrap().1, Some(estimate(1)));
}

/// An upstream that ends its stream with no usage at all (one that ignores
/// `stream_options`, or writes figures that are not numbers) is charged the
/// estimate; one that reports is charged its report; a broken stream is
/// charged only what was reported.
#[tokio::test]
async fn a_stream_ended_without_usage_is_charged_an_estimate() {
    let estimate = Usage {
        prompt_tokens: 250,
        completion_tokens: 3,
        cached_tokens: 0,
    };
    let lying = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":\"many\",\"completion_tokens\":-1}}\n\n";
    for (last, expected) in [
        (None, Some(estimate)),
        // Its chunk is an event the client got, too.
        (
            Some(lying),
            Some(Usage {
                completion_tokens: 4,
                ..estimate
            }),
        ),
        (
            Some(USAGE),
            Some(Usage {
                prompt_tokens: 30,
                completion_tokens: 40,
                cached_tokens: 0,
            }),
        ),
    ] {
        let (mut relay, tx, ended) = relay_ending(None, Some(250));
        tx.send(CONTENT).await.unwrap();
        tx.send(LAST).await.unwrap();
        if let Some(last) = last {
            tx.send(last).await.unwrap();
        }
        drop(tx);
        while relay.frame().await.is_some() {}
        let (end, usage, _) = ended.lock().unwrap().clone().unwrap();
        assert_eq!((end, usage), (StreamEnd::Complete, expected), "{last:?}");
    }

    // Broken before its usage: the client got an error, not an answer.
    let ended: Ended = Arc::default();
    let mut relay = Relay::new(
        Bytes::from_static(CONTENT.as_bytes()),
        super::tests::upstream(vec![Ok(LAST), Err("connection reset")]),
        true,
        Duration::from_secs(60),
        Arc::new(crate::scrub::Scrubber::default()),
        Box::new(Estimating(ended.clone(), 250)),
    );
    while relay.frame().await.is_some() {}
    let (end, usage, _) = ended.lock().unwrap().clone().unwrap();
    assert!(matches!(end, StreamEnd::UpstreamFailed(_)), "{end:?}");
    assert_eq!(usage, None);
}
