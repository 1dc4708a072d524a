//! The relay's tests: whole events forwarded, batching, idle and broken
//! upstreams, scrubbing and the figures reported at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::routing::Price;
use std::sync::{Arc, Mutex};

use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};

pub(super) type Ended = Arc<Mutex<Option<(StreamEnd, Option<Usage>, u64)>>>;

pub(super) struct Record(pub(super) Ended);
impl OnStreamEnd for Record {
    fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64) {
        *self.0.lock().unwrap() = Some((end, usage, bytes));
    }
}

pub(super) fn upstream(
    frames: Vec<Result<&'static str, &'static str>>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, String>> + Unpin> {
    StreamBody::new(stream::iter(frames.into_iter().map(|f| {
        f.map(|s| Frame::data(Bytes::from_static(s.as_bytes())))
            .map_err(str::to_owned)
    })))
}

pub(super) async fn relay_all(
    first: &'static str,
    rest: Vec<Result<&'static str, &'static str>>,
) -> (Vec<Bytes>, Ended) {
    relay_scrubbed(first, rest, Scrubber::default()).await
}

async fn relay_scrubbed(
    first: &'static str,
    rest: Vec<Result<&'static str, &'static str>>,
    scrub: Scrubber,
) -> (Vec<Bytes>, Ended) {
    relay_framed(first, rest, true, scrub).await
}

/// Relays `first` and `rest`, cut on SSE events when `sse`, and returns
/// what the client got, piece by piece, and how it ended.
pub(super) async fn relay_framed(
    first: &'static str,
    rest: Vec<Result<&'static str, &'static str>>,
    sse: bool,
    scrub: Scrubber,
) -> (Vec<Bytes>, Ended) {
    let ended: Ended = Arc::default();
    let mut relay = Relay::new(
        Bytes::from_static(first.as_bytes()),
        upstream(rest),
        sse,
        Duration::from_secs(5),
        Arc::new(scrub),
        Box::new(Record(ended.clone())),
    );
    let mut out = Vec::new();
    while let Some(frame) = relay.frame().await {
        out.push(frame.unwrap().into_data().unwrap());
    }
    (out, ended)
}

#[tokio::test]
async fn frames_ready_together_leave_together() {
    let (out, ended) = relay_all(
        "data: {\"a\":1}\n\n",
        vec![Ok("data: {\"a\":2}\n\n"), Ok("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n"), Ok("data: [DONE]\n\n")],
    )
    .await;
    // The first chunk goes at once; the three behind it were ready
    // together, so they are written together.
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], "data: {\"a\":1}\n\n");
    assert!(out[1].starts_with(b"data: {\"a\":2}\n\n") && out[1].ends_with(b"[DONE]\n\n"));
    let (end, usage, bytes) = ended.lock().unwrap().clone().unwrap();
    assert_eq!(end, StreamEnd::Complete);
    assert_eq!(
        usage,
        Some(Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 0
        })
    );
    assert_eq!(bytes, out.iter().map(|b| b.len() as u64).sum::<u64>());
}

/// What the upstream has ready goes out on the poll that found it, not a
/// scheduler turn later: a relay that held the batch for more polls made
/// each batch cost the connection's task two wake-ups, and its chunks a
/// turn of latency each.
#[test]
fn a_batch_goes_out_on_the_poll_that_finds_the_upstream_waiting() {
    use futures_util::StreamExt;
    // Polled by hand, so that no executor polls it again in between.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let ended: Ended = Arc::default();
    let ready = stream::iter(
        ["data: 2\n\n", "data: 3\n\n"].map(|s| Ok::<_, String>(Frame::data(Bytes::from(s)))),
    );
    let mut relay = Relay::new(
        Bytes::from_static(b"data: 1\n\n"),
        StreamBody::new(ready.chain(stream::pending())),
        true,
        Duration::from_secs(5),
        Arc::new(Scrubber::default()),
        Box::new(Record(ended)),
    );
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut poll = || match Pin::new(&mut relay).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(poll(), "data: 1\n\n");
    assert_eq!(poll(), "data: 2\n\ndata: 3\n\n");
    // Nothing more: now the relay waits (for data, or its idle timer).
    assert!(Pin::new(&mut relay).poll_frame(&mut cx).is_pending());
}

#[tokio::test]
async fn split_events_are_joined_before_sending() {
    let (out, _) = relay_all(
        "data: {\"a\"",
        vec![Ok(":1}\n\ndata: {\"b\""), Ok(":2}\n\n")],
    )
    .await;
    assert_eq!(
        out,
        vec![Bytes::from("data: {\"a\":1}\n\ndata: {\"b\":2}\n\n")]
    );
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_not_half_an_event() {
    let (out, ended) = relay_all(
        "data: {\"a\":1}\n\n",
        vec![Ok("data: {\"hal"), Err("connection reset")],
    )
    .await;
    assert_eq!(out.len(), 2);
    let last = std::str::from_utf8(&out[1]).unwrap();
    assert!(last.starts_with("data: {\"error\""), "{last}");
    assert!(last.contains("stream_interrupted") && last.contains("connection reset"));
    assert!(last.ends_with("\n\n"));
    assert!(matches!(
        ended.lock().unwrap().clone().unwrap().0,
        StreamEnd::UpstreamFailed(_)
    ));
}

#[tokio::test]
async fn keys_split_across_frames_are_scrubbed_whole() {
    let key = "UPSECRETB+x/y=Zq81";
    let (out, ended) = relay_scrubbed(
        "data: {\"a\":\"UPSECR",
        vec![
            Ok("ETB+x\\/y=Zq81\"}\n\ndata: {\"b\":\"UPSECRETB%2Bx"),
            Ok("%2Fy%3DZq81\"}\n\ndata: {\"c\":\"UPSECRETB+x/y"),
            Ok("=Zq81"),
            Err("reset after UPSECRETB+x/y=Zq81"),
        ],
        Scrubber::new([key]),
    )
    .await;
    let all: Vec<u8> = out.concat();
    let text = String::from_utf8(all).unwrap();
    assert!(!text.contains("UPSECRETB"), "{text}");
    assert_eq!(text.matches("[redacted]").count(), 3, "{text}");
    let Some((StreamEnd::UpstreamFailed(reason), _, _)) = ended.lock().unwrap().clone() else {
        panic!("not a failed stream");
    };
    assert!(!reason.contains("UPSECRETB"), "{reason}");
}

#[tokio::test]
async fn streams_that_are_not_sse_are_scrubbed_by_line() {
    let ended: Ended = Arc::default();
    let mut relay = Relay::new(
        Bytes::from_static(b"{\"a\":1}\n{\"k\":\"sk-abcd"),
        upstream(vec![Ok("efgh-0123\"}\n"), Ok("{\"tail\":\"sk-abcdefgh-0")]),
        false,
        Duration::from_secs(5),
        Arc::new(Scrubber::new(["sk-abcdefgh-0123"])),
        Box::new(Record(ended.clone())),
    );
    let mut out = Vec::new();
    while let Some(frame) = relay.frame().await {
        out.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(out[0], "{\"a\":1}\n");
    assert_eq!(
        out.concat(),
        b"{\"a\":1}\n{\"k\":\"[redacted]\"}\n{\"tail\":\"sk-abcdefgh-0"
    );
    assert_eq!(
        ended.lock().unwrap().clone().unwrap().0,
        StreamEnd::Complete
    );
}

#[tokio::test]
async fn the_tail_of_a_stream_is_scrubbed_too() {
    let (out, _) = relay_scrubbed(
        "data: 1\n\n",
        vec![Ok("data: sk-abcdefgh-0123")],
        Scrubber::new(["sk-abcdefgh-0123"]),
    )
    .await;
    assert_eq!(out.concat(), b"data: 1\n\ndata: [redacted]");
}

#[tokio::test(start_paused = true)]
async fn a_quiet_upstream_times_out_with_an_error_event() {
    let ended: Ended = Arc::default();
    let never = StreamBody::new(stream::pending::<Result<Frame<Bytes>, String>>());
    let mut relay = Relay::new(
        Bytes::from_static(b"data: 1\n\n"),
        never,
        true,
        Duration::from_secs(2),
        Arc::new(Scrubber::default()),
        Box::new(Record(ended.clone())),
    );
    assert_eq!(
        relay.frame().await.unwrap().unwrap().into_data().unwrap(),
        "data: 1\n\n"
    );
    let err = relay.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(
        std::str::from_utf8(&err)
            .unwrap()
            .contains("no data for 2000 ms")
    );
    assert!(relay.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn data_keeps_a_slow_stream_alive_past_the_first_deadline() {
    let ended: Ended = Arc::default();
    // A chunk every 1.5 s, under a 2 s idle timeout: 4.5 s in all.
    let slow = StreamBody::new(Box::pin(stream::unfold(0, |n| async move {
        if n == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        Some((
            Ok::<_, String>(Frame::data(Bytes::from("data: x\n\n"))),
            n + 1,
        ))
    })));
    let mut relay = Relay::new(
        Bytes::from_static(b"data: 0\n\n"),
        slow,
        true,
        Duration::from_secs(2),
        Arc::new(Scrubber::default()),
        Box::new(Record(ended.clone())),
    );
    let mut frames = 0;
    while let Some(frame) = relay.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(!data.starts_with(b"data: {\"error\""), "timed out early");
        frames += 1;
    }
    assert_eq!(frames, 4);
    assert_eq!(
        ended.lock().unwrap().clone().unwrap().0,
        StreamEnd::Complete
    );
}

#[tokio::test]
async fn dropping_mid_stream_reports_the_client_gone() {
    let ended: Ended = Arc::default();
    let relay = Relay::new(
        Bytes::from_static(b"data: 1\n\n"),
        upstream(vec![Ok("data: 2\n\n")]),
        true,
        Duration::from_secs(2),
        Arc::new(Scrubber::default()),
        Box::new(Record(ended.clone())),
    );
    drop(relay);
    assert_eq!(
        ended.lock().unwrap().clone().unwrap().0,
        StreamEnd::ClientGone
    );
}

// ------------------------------------------------ the cost in the usage

/// Ends like [`Record`], with a target price: the relay prices the usage.
struct Priced(Ended);
impl OnStreamEnd for Priced {
    fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64) {
        *self.0.lock().unwrap() = Some((end, usage, bytes));
    }
    fn price(&self) -> Option<Price> {
        // $1 per million input tokens, $2 per million output, $0.1 cached.
        Some(Price {
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
            cached_input_per_mtok: Some(0.1),
        })
    }
}

/// Relays `frames` (the first one first) through `shape`, priced or not,
/// and returns what the client got, joined, and the figures at the end.
async fn relay_shaped(frames: Vec<&'static str>, shape: Shape, priced: bool) -> (String, Ended) {
    let ended: Ended = Arc::default();
    let on_end: Box<dyn OnStreamEnd> = if priced {
        Box::new(Priced(ended.clone()))
    } else {
        Box::new(Record(ended.clone()))
    };
    let mut frames = frames.into_iter();
    let first = Bytes::from_static(frames.next().unwrap().as_bytes());
    let mut relay = Relay::with_shape(
        first,
        upstream(frames.map(Ok).collect()),
        true,
        Duration::from_secs(5),
        Arc::new(Scrubber::default()),
        shape,
        on_end,
    );
    let mut out = Vec::new();
    while let Some(frame) = relay.frame().await {
        out.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    (String::from_utf8(out).unwrap(), ended)
}

const OPENAI_STREAM: [&str; 5] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"compl",
    "etion_tokens\":100,\"prompt_tokens_details\":{\"cached_tokens\":400}}}",
    "\n\ndata: [DO",
    "NE]\n\n",
];

#[tokio::test]
async fn the_openai_usage_chunk_gets_its_cost_even_split_across_frames() {
    let (out, ended) = relay_shaped(OPENAI_STREAM.to_vec(), Shape::openai(), true).await;
    // 600 × 1 + 400 × 0.1 + 100 × 2 = 840 millionths of a dollar.
    let want = OPENAI_STREAM.concat().replace(
        "{\"cached_tokens\":400}}",
        "{\"cached_tokens\":400},\"cost\":0.00084}",
    );
    assert_eq!(out, want);
    let (end, usage, bytes) = ended.lock().unwrap().clone().unwrap();
    assert_eq!(end, StreamEnd::Complete);
    assert_eq!(usage.unwrap().cached_tokens, 400);
    assert_eq!(bytes, out.len() as u64, "the cost's bytes are counted");

    // No price: byte for byte what the upstream sent.
    let (out, _) = relay_shaped(OPENAI_STREAM.to_vec(), Shape::openai(), false).await;
    assert_eq!(out, OPENAI_STREAM.concat());
}

#[tokio::test]
async fn the_anthropic_message_delta_gets_the_cost_of_the_whole_message() {
    let frames = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":50,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_del",
        "ta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    let shape = Shape {
        translator: None,
        error_event: openai_stream_error,
    };
    let (out, _) = relay_shaped(frames.clone(), shape, true).await;
    // Input from message_start, output from message_delta:
    // 50 × 1 + 1000 × 0.1 + 30 × 2 = 210 millionths.
    let want = frames.concat().replace(
        "{\"output_tokens\":30}}",
        "{\"output_tokens\":30,\"cost\":0.00021}}",
    );
    assert_eq!(out, want);
}

#[tokio::test]
async fn translated_streams_carry_the_cost_in_the_clients_shape() {
    // An OpenAI upstream, an Anthropic client: `message_delta` is written
    // when the stream ends, from the usage chunk the relay has read.
    let shape = Shape {
        translator: Some(Box::new(crate::translate::messages_to_chat::Stream::new())),
        error_event: openai_stream_error,
    };
    let (out, _) = relay_shaped(
        vec![
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n",
        ],
        shape,
        true,
    )
    .await;
    let delta = out
        .lines()
        .find(|l| l.contains("\"message_delta\""))
        .unwrap_or_else(|| panic!("{out}"));
    // 20 × 1 + 7 × 2 = 34 millionths.
    assert!(delta.contains(",\"cost\":0.000034}"), "{delta}");
    assert_eq!(out.matches("\"cost\"").count(), 1, "{out}");

    // An Anthropic upstream, an OpenAI client asking for usage.
    let shape = Shape {
        translator: Some(Box::new(crate::translate::chat_to_messages::Stream::new(
            true, 42,
        ))),
        error_event: openai_stream_error,
    };
    let (out, _) = relay_shaped(
        vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ],
        shape,
        true,
    )
    .await;
    let chunk = out
        .lines()
        .find(|l| l.contains("\"usage\":{"))
        .unwrap_or_else(|| panic!("{out}"));
    // 10 × 1 + 4 × 0.1 + 30 × 2 = 70.4 millionths.
    assert!(chunk.contains(",\"cost\":0.0000704}"), "{chunk}");
    assert!(out.trim_end().ends_with("data: [DONE]"), "{out}");
}

/// Relays `text` cut at `cuts` (positions, any order), priced.
fn relay_cut(text: &str, cuts: &[usize]) -> String {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    cuts.extend([0, text.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    let frames: Vec<&'static str> = cuts
        .windows(2)
        .map(|w| &*String::leak(text[w[0]..w[1]].to_owned()))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(relay_shaped(frames, Shape::openai(), true))
        .0
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// However the upstream's frames cut the stream, the client gets it
    /// byte for byte but for the cost in the usage chunk.
    #[test]
    fn only_the_usage_chunk_changes_however_frames_are_cut(
        cuts in proptest::collection::vec(0usize..1000, 0..8),
        chunks in 0usize..4,
    ) {
        let mut text = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n".repeat(chunks);
        text.push_str(&OPENAI_STREAM.concat());
        let want = text.replace(
            "{\"cached_tokens\":400}}",
            "{\"cached_tokens\":400},\"cost\":0.00084}",
        );
        proptest::prop_assert_eq!(relay_cut(&text, &cuts), want);
    }
}
