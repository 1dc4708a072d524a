//! Tests of [`TagStream`]: lifecycle events tagged, everything else byte
//! for byte, however the stream is cut.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// A Responses stream as OpenAI sends it (shortened), one event of each
/// kind that carries a response object and some that do not.
const STREAM: &str = concat!(
    "event: response.created\n",
    "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"previous_response_id\":\"resp_0\",\"output\":[]}}\n\n",
    "event: response.queued\n",
    "data: {\"type\":\"response.queued\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"queued\"}}\n\n",
    "event: response.in_progress\n",
    "data: {\"type\":\"response.in_progress\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"previous_response_id\":null}}\n\n",
    "event: response.output_item.added\n",
    "data: {\"type\":\"response.output_item.added\",\"sequence_number\":3,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"the \\\"response\\\" is\"}\n\n",
    ": keep-alive\n\n",
    "event: response.completed\n",
    "data: {\"type\":\"response.completed\",\"sequence_number\":5,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"previous_response_id\":\"resp_0\",\"output\":[{\"id\":\"msg_1\"}]}}\n\n",
    "event: response.failed\n",
    "data: {\"type\":\"response.failed\",\"sequence_number\":6,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"failed\"}}\n\n",
    "event: response.incomplete\n",
    "data: {\"type\":\"response.incomplete\",\"sequence_number\":7,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"incomplete\"}}\n\n",
    "event: error\n",
    "data: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"no \\\"response\\\"\",\"param\":null,\"sequence_number\":8}\n\n",
);

/// The lifecycle events, which carry the response object.
const LIFECYCLE: [&str; 6] = [
    "response.created",
    "response.queued",
    "response.in_progress",
    "response.completed",
    "response.failed",
    "response.incomplete",
];

/// `input` through a fresh [`TagStream`] for upstream `eu`, cut into the
/// given pieces.
fn run(pieces: &[&[u8]]) -> Vec<u8> {
    let mut stream = TagStream::new("eu", None, Arc::from(""));
    let mut out = BytesMut::new();
    for piece in pieces {
        stream.events(piece, &mut out);
    }
    stream.finish(&mut out);
    out.to_vec()
}

/// The raw events of `buf`, each with its ending blank line.
fn raw_events(buf: &[u8]) -> Vec<&[u8]> {
    let mut start = 0;
    event_ends(buf)
        .map(|end| {
            let raw = &buf[start..end];
            start = end;
            raw
        })
        .collect()
}

#[test]
fn lifecycle_events_are_tagged_and_others_pass_byte_for_byte() {
    let out = run(&[STREAM.as_bytes()]);
    let ins = raw_events(STREAM.as_bytes());
    let outs = raw_events(&out);
    assert_eq!(ins.len(), outs.len());
    let mut tagged = 0;
    for (input, output) in ins.iter().zip(&outs) {
        let events = parse_events(input);
        let lifecycle = events
            .first()
            .and_then(|e| e.event)
            .is_some_and(|name| LIFECYCLE.contains(&name));
        if !lifecycle {
            assert_eq!(input, output, "{}", String::from_utf8_lossy(input));
            continue;
        }
        tagged += 1;
        let before: Value = serde_json::from_slice(&events[0].data).unwrap();
        let after_events = parse_events(output);
        assert_eq!(after_events[0].event, events[0].event);
        let mut after: Value = serde_json::from_slice(&after_events[0].data).unwrap();
        assert_eq!(after["response"]["id"], "eu~resp_1");
        match before["response"]["previous_response_id"].as_str() {
            Some(previous) => {
                assert_eq!(
                    after["response"]["previous_response_id"],
                    format!("eu~{previous}")
                );
            }
            None => assert_eq!(
                after["response"]["previous_response_id"],
                before["response"]["previous_response_id"]
            ),
        }
        // Nothing else changed.
        after["response"]["id"] = before["response"]["id"].clone();
        if let Some(previous) = before["response"].get("previous_response_id") {
            after["response"]["previous_response_id"] = previous.clone();
        }
        assert_eq!(after, before);
    }
    assert_eq!(tagged, LIFECYCLE.len());
}

#[test]
fn a_stream_split_oddly_is_tagged_all_the_same() {
    let whole = run(&[STREAM.as_bytes()]);
    let bytes = STREAM.as_bytes();
    // One byte at a time, and cuts inside `"response"` and inside the id.
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&singles), whole);
    let at = STREAM.find("\"respo").unwrap() + 4;
    let id = STREAM.find("resp_1").unwrap() + 3;
    assert_eq!(run(&[&bytes[..at], &bytes[at..id], &bytes[id..]]), whole);
    // Events one per call, as the relay usually hands them over.
    assert_eq!(run(&raw_events(bytes)), whole);
}

#[test]
fn crlf_and_cr_streams_are_tagged() {
    for ending in ["\r\n", "\r"] {
        let input = STREAM.replace('\n', ending);
        let out = run(&[input.as_bytes()]);
        let events = parse_events(&out);
        let created: Value = serde_json::from_slice(&events[0].data).unwrap();
        assert_eq!(created["response"]["id"], "eu~resp_1", "{ending:?}");
        let completed = events
            .iter()
            .find(|e| e.event == Some("response.completed"))
            .unwrap();
        let completed: Value = serde_json::from_slice(&completed.data).unwrap();
        assert_eq!(completed["response"]["id"], "eu~resp_1");
    }
}

#[test]
fn unnamed_and_multi_line_events_are_tagged() {
    let input = "data: {\"type\":\"response.created\",\ndata: \"response\":{\"id\":\"r\"}}\n\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\"}}\n\n";
    let out = run(&[input.as_bytes()]);
    let events = parse_events(&out);
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event.event, None);
        let v: Value = serde_json::from_slice(&event.data).unwrap();
        assert_eq!(v["response"]["id"], "eu~r");
    }
}

#[test]
fn an_unended_last_event_is_passed_on_at_the_end() {
    let out = run(&[b"data: {\"a\":1}\n\ndata: {\"response\":{\"id\":\"r\"}}"]);
    assert_eq!(
        out,
        b"data: {\"a\":1}\n\ndata: {\"response\":{\"id\":\"r\"}}"
    );
}

#[test]
fn events_that_only_mention_a_response_pass_unchanged() {
    for input in [
        "data: {\"response\":\"text\"}\n\n",
        "data: {\"response\":{\"status\":\"x\"}}\n\n",
        "data: {\"x\":{\"response\":{\"id\":\"nested\"}}}\n\n",
        "data: \"response\"\n\n",
        "data: [DONE]\n\n",
        "data: {\"response\":{\"id\":\n\n",
    ] {
        assert_eq!(run(&[input.as_bytes()]), input.as_bytes(), "{input}");
    }
}

#[test]
fn the_error_event_is_openai_shaped() {
    let event = TagStream::new("eu", None, Arc::from(""))
        .error_event("The upstream stream was interrupted");
    let events = parse_events(&event);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, None);
    let v: Value = serde_json::from_slice(&events[0].data).unwrap();
    assert_eq!(v["error"]["message"], "The upstream stream was interrupted");
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["code"], "stream_interrupted");
}

proptest! {
    #[test]
    fn any_cut_gives_the_same_stream(cuts in proptest::collection::vec(0..STREAM.len(), 0..8)) {
        let bytes = STREAM.as_bytes();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts {
            pieces.push(&bytes[at..cut]);
            at = cut;
        }
        pieces.push(&bytes[at..]);
        prop_assert_eq!(run(&pieces), run(&[bytes]));
    }

    #[test]
    fn arbitrary_bytes_never_panic(pieces in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..64), 0..6)) {
        let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let _ = run(&pieces);
    }
}
