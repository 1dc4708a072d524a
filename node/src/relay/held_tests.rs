//! The relay's bounds against a hostile upstream: an event that never
//! ends, boundaries cut across frames, and the tail a long line keeps back
//! for the scrubber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};

use super::tests::{Ended, Record, relay_all, relay_framed};
use super::*;

/// An upstream that sends one event and then never ends the next one is
/// cut off once the unfinished event passes the limit: the client gets the
/// whole event, then the error event, and the upstream is read no further.
#[tokio::test]
async fn an_event_that_never_ends_is_cut_off_at_the_held_limit() {
    let ended: Ended = Arc::default();
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = read.clone();
    // 1,000 frames of 1 KiB with no event boundary anywhere.
    let endless = StreamBody::new(stream::iter((0..1_000).map(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, String>(Frame::data(Bytes::from(vec![b'x'; 1024])))
    })));
    let mut relay = Relay::new(
        Bytes::from_static(b"data: 1\n\ndata: "),
        endless,
        true,
        Duration::from_secs(5),
        Arc::new(Scrubber::default()),
        Box::new(Record(ended.clone())),
    )
    .held_max(10_000);
    let mut out = Vec::new();
    while let Some(frame) = relay.frame().await {
        out.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(out[0], "data: 1\n\n");
    let last = std::str::from_utf8(out.last().unwrap()).unwrap();
    assert!(last.starts_with("data: {\"error\""), "{last}");
    assert!(last.contains("ran past 10000 bytes"), "{last}");
    assert_eq!(out.len(), 2, "nothing of the unfinished event went out");
    // Ten frames take it past 10,000 bytes; none is read after that.
    assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert!(relay.pending.is_empty());
    assert!(matches!(
        ended.lock().unwrap().clone().unwrap().0,
        StreamEnd::UpstreamFailed(r) if r.contains("ran past")
    ));
}

/// A boundary cut anywhere across two frames, after a long held prefix, is
/// still found: the search of a frame starts three bytes before it.
#[tokio::test]
async fn a_boundary_cut_across_frames_after_a_long_prefix_is_found() {
    let long = format!("data: {}", "y".repeat(300));
    for boundary in ["\n\n", "\r\n\r\n", "\r\r"] {
        for at in 1..boundary.len() {
            let first = String::leak(format!("{long}{}", &boundary[..at]));
            let second = String::leak(format!("{}data: 2{boundary}", &boundary[at..]));
            let (out, ended) = relay_all(first, vec![Ok(second)]).await;
            assert_eq!(
                out[0],
                format!("{long}{boundary}data: 2{boundary}"),
                "{boundary:?} cut at {at}"
            );
            assert_eq!(
                ended.lock().unwrap().clone().unwrap().0,
                StreamEnd::Complete
            );
        }
    }
}

/// A line of a stream that is not SSE, forwarded in part once it is
/// [`LINE_MAX`] long, keeps back a tail: a key cut there is still scrubbed.
#[tokio::test]
async fn a_key_at_the_cut_of_a_long_line_is_scrubbed_whole() {
    let key = "sk-abcdefgh-0123";
    for cut_in_key in [1, 8, key.len() - 1] {
        let pad = "a".repeat(LINE_MAX - cut_in_key);
        let first = String::leak(format!("{pad}{}", &key[..cut_in_key]));
        let rest = String::leak(format!("{} end\n", &key[cut_in_key..]));
        let (out, _) = relay_framed(first, vec![Ok(rest)], false, Scrubber::new([key])).await;
        let text = String::from_utf8(out.concat()).unwrap();
        assert!(
            !text.contains("sk-abcd") && !text.contains("efgh-0123"),
            "cut {cut_in_key}"
        );
        assert!(text.ends_with("[redacted] end\n"), "cut {cut_in_key}");
    }
}
