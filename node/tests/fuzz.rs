//! Property tests over hostile input for what the data plane reads from
//! clients and upstreams without a person in between: the request probe and
//! the model rewrite (client bodies), the SSE relay's event splitting and the
//! usage parser (upstream streams and bodies).
//!
//! Properties: never a panic; a probe either refuses a body with a 400 or
//! finds the model the body really holds, and rewriting that model yields
//! valid JSON that keeps every other field; the relay forwards exactly the
//! bytes it got, cut only at event boundaries. 256 cases a test by default;
//! `PROPTEST_CASES=200000 cargo test --release -p meridian --test fuzz`
//! runs them long. Failing seeds are saved in
//! `node/tests/fuzz.proptest-regressions` and replayed first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use meridian::error::ProxyError;
use meridian::relay::{self, OnStreamEnd, Relay, StreamEnd};
use meridian::request_body::{json_string, probe, splice};
use meridian::usage::{self, Usage};
use proptest::prelude::*;
use serde_json::{Map, Value};

// ------------------------------------------------------- JSON generation

/// Any JSON value, nested a few levels, with keys and strings that include
/// `model`, quotes, backslashes, control characters and non-ASCII.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        json_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((json_key(), inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 .:/_-]{0,12}",
        ".{0,8}",
        Just("model".to_owned()),
        Just("\"model\":\"x\"".to_owned()),
        Just("\\\"\u{0}\u{1f}\u{7f}\u{2028}é😀".to_owned()),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("model".to_owned()),
        Just("stream".to_owned()),
        Just("messages".to_owned()),
        json_text(),
    ]
}

/// How a generated document is written out: where whitespace goes and
/// which characters of strings are written as `\u` escapes.
#[derive(Debug, Clone)]
struct Style {
    spaces: Vec<u8>,
    escapes: Vec<bool>,
}

fn style() -> impl Strategy<Value = Style> {
    (
        proptest::collection::vec(0u8..4, 1..16),
        proptest::collection::vec(any::<bool>(), 1..16),
    )
        .prop_map(|(spaces, escapes)| Style { spaces, escapes })
}

/// Writes JSON by hand, so that the bytes the probe sees vary the way real
/// clients' do: any whitespace between tokens, `\u` escapes for any
/// character (surrogate pairs beyond the BMP), keys in the given order.
struct Writer<'a> {
    out: String,
    style: &'a Style,
    n: usize,
}

impl Writer<'_> {
    fn space(&mut self) {
        let pick = self.style.spaces[self.n % self.style.spaces.len()];
        self.n += 1;
        self.out
            .push_str(["", " ", "\n\t", "\r\n  "][usize::from(pick)]);
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let escape = self.style.escapes[self.n % self.style.escapes.len()];
            self.n += 1;
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                c if (c as u32) < 0x20 || escape => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        write!(self.out, "\\u{unit:04x}").unwrap();
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.space();
                    self.value(item);
                    self.space();
                }
                self.out.push(']');
            }
            Value::Object(map) => self.object(map.iter()),
            other => self.out.push_str(&other.to_string()),
        }
    }

    fn object<'v>(&mut self, pairs: impl Iterator<Item = (&'v String, &'v Value)>) {
        self.out.push('{');
        for (i, (key, value)) in pairs.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.space();
            self.string(key);
            self.space();
            self.out.push(':');
            self.space();
            self.value(value);
            self.space();
        }
        self.out.push('}');
    }
}

/// A request body: an object whose top level holds `model` (a string, at
/// any position), maybe `stream` (a boolean), and other fields of any kind,
/// nested objects among them holding keys named `model` too.
#[derive(Debug, Clone)]
struct Request {
    model: String,
    stream: Option<bool>,
    others: Vec<(String, Value)>,
    model_at: usize,
    style: Style,
}

fn request() -> impl Strategy<Value = Request> {
    (
        json_text().prop_filter("a model is not empty", |m| !m.is_empty()),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec((json_key(), json_value()), 0..6),
        any::<usize>(),
        style(),
    )
        .prop_map(|(model, stream, others, model_at, style)| {
            let mut seen = std::collections::HashSet::new();
            let others = others
                .into_iter()
                .filter(|(k, _)| k != "model" && k != "stream" && seen.insert(k.clone()))
                .collect();
            Request {
                model,
                stream,
                others,
                model_at,
                style,
            }
        })
}

impl Request {
    fn pairs(&self) -> Vec<(String, Value)> {
        let mut pairs = self.others.clone();
        if let Some(stream) = self.stream {
            pairs.push(("stream".into(), Value::Bool(stream)));
        }
        let at = self.model_at % (pairs.len() + 1);
        pairs.insert(at, ("model".into(), Value::String(self.model.clone())));
        pairs
    }

    fn body(&self) -> Vec<u8> {
        let pairs = self.pairs();
        let mut w = Writer {
            out: String::new(),
            style: &self.style,
            n: 0,
        };
        w.space();
        w.object(pairs.iter().map(|(k, v)| (k, v)));
        w.space();
        w.out.into_bytes()
    }
}

// ---------------------------------------------------------- request probe

/// What must hold of any probe: a refusal is a 400 with a message, and a
/// model found is the one the body holds, at the span it reports.
fn check_probe(body: &[u8]) -> Result<(), TestCaseError> {
    match probe(body) {
        Ok(p) => {
            prop_assert!(!p.model.is_empty());
            let raw = body.get(p.model_span.clone());
            prop_assert!(raw.is_some(), "span {:?} outside the body", p.model_span);
            let at_span: String = serde_json::from_slice(raw.unwrap()).unwrap();
            prop_assert_eq!(&at_span, &*p.model);
            // Valid JSON (grammar and UTF-8; a lone surrogate escape such
            // as `"\udc00"` is grammatical, and only a full parse refuses it).
            let raw = serde_json::from_slice::<&serde_json::value::RawValue>(body);
            prop_assert!(raw.is_ok(), "accepted invalid JSON: {raw:?}");
            if let Ok(whole) = serde_json::from_slice::<Value>(body) {
                prop_assert!(whole.is_object(), "not an object: {whole}");
                prop_assert_eq!(&whole["model"], &Value::String(p.model.to_string()));
                prop_assert_eq!(
                    whole
                        .get("stream")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    p.stream
                );
            }
        }
        Err(ProxyError::BadRequest { message, .. }) => prop_assert!(!message.is_empty()),
        Err(other) => prop_assert!(false, "not a 400: {other:?}"),
    }
    Ok(())
}

proptest! {
    /// Arbitrary bytes: a 400 or the body's real model.
    #[test]
    fn probe_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..128)) {
        check_probe(&body)?;
    }

    /// A valid request, damaged by one byte or cut short.
    #[test]
    fn probe_damaged_requests(request in request(), at: usize, byte: u8, cut: bool) {
        let mut body = request.body();
        let i = at % body.len();
        if cut {
            body.truncate(i);
        } else {
            body[i] = byte;
        }
        check_probe(&body)?;
    }

    /// Generated requests: the probe finds the model wherever it sits and
    /// however it is escaped, and rewriting it to any replacement gives
    /// valid JSON with the replacement as model and every other field as it
    /// was.
    #[test]
    fn probe_and_splice_keep_every_other_field(request in request(), replacement in json_text()) {
        let body = request.body();
        let p = probe(&body).unwrap();
        prop_assert_eq!(&*p.model, request.model.as_str());
        prop_assert_eq!(p.stream, request.stream.unwrap_or(false));

        let out = splice(&body, p.model_span.clone(), &json_string(&replacement));
        let rewritten: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        let original: Map<String, Value> = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(&rewritten["model"], &Value::String(replacement.clone()));
        prop_assert_eq!(rewritten.len(), original.len());
        for (key, value) in &original {
            if key != "model" {
                prop_assert_eq!(Some(value), rewritten.get(key), "field {}", key);
            }
        }
        // The rewritten body probes again, to the replacement (when one
        // is allowed: an empty model is refused).
        if !replacement.is_empty() {
            prop_assert_eq!(&*probe(&out).unwrap().model, replacement.as_str());
        }
    }
}

// ------------------------------------------------------------ SSE relay

/// Where SSE events end in `data`, per the SSE specification: just after a
/// line terminator (CRLF, LF or CR) that ends an empty line. `data` is
/// taken to begin at the start of a line. A CR at the very end counts as a
/// terminator when `trailing_cr` is set (a parser dispatches on it; an LF
/// may still follow, making it a CRLF).
fn event_ends(data: &[u8], trailing_cr: bool) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut line_start = 0;
    let mut i = 0;
    while i < data.len() {
        let end = match data[i] {
            b'\r' if i + 1 == data.len() && !trailing_cr => break,
            b'\r' if data.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' | b'\n' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            ends.push(end);
        }
        line_start = end;
        i = end;
    }
    ends
}

/// Bytes that look like an event stream: field lines, terminators of all
/// three kinds, colons, and the odd arbitrary byte.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: {\"a\":1}".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// An event stream with one kind of line ending throughout, as a real
/// upstream writes it.
fn uniform_stream() -> impl Strategy<Value = Vec<u8>> {
    let terminator = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    let event = proptest::collection::vec("(data|event|id): [a-z {}\":,]{0,12}", 1..3);
    (terminator, proptest::collection::vec(event, 0..6)).prop_map(|(t, events)| {
        events
            .iter()
            .map(|lines| lines.iter().map(|l| format!("{l}{t}")).collect::<String>() + t)
            .collect::<String>()
            .into_bytes()
    })
}

/// Splits `data` at the given (sorted, deduplicated) offsets.
fn split_at(data: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        pieces.push(Bytes::copy_from_slice(&data[from..cut]));
        from = cut;
    }
    pieces
}

type Ended = Arc<Mutex<Option<(StreamEnd, Option<Usage>, u64)>>>;

struct Record(Ended);

impl OnStreamEnd for Record {
    fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64) {
        *self.0.lock().unwrap() = Some((end, usage, bytes));
    }
}

/// Relays `frames` (the first as the already-read first frame) to the end
/// and returns what the client got, piece by piece, and how it ended.
fn relay_all(frames: Vec<Bytes>) -> (Vec<Bytes>, (StreamEnd, Option<Usage>, u64)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let ended: Ended = Arc::default();
        let mut frames = frames.into_iter();
        let first = frames.next().unwrap_or_default();
        let rest = StreamBody::new(stream::iter(
            frames.map(|f| Ok::<_, String>(Frame::data(f))),
        ));
        let mut relay = Relay::new(
            first,
            rest,
            true,
            Duration::from_secs(30),
            // No keys: the property is that every byte arrives unchanged.
            Arc::new(meridian::scrub::Scrubber::new([])),
            Box::new(Record(ended.clone())),
        );
        let mut out = Vec::new();
        while let Some(frame) = relay.frame().await {
            out.push(frame.unwrap().into_data().unwrap());
        }
        drop(relay);
        let end = ended.lock().unwrap().clone().unwrap();
        (out, end)
    })
}

proptest! {
    /// The split point the relay uses is always a real event boundary, and
    /// a piece that ends on a boundary is recognised as one.
    #[test]
    fn relay_boundaries_are_real(data in sse_bytes()) {
        let ends = event_ends(&data, true);
        if let Some(cut) = relay::last_boundary(&data) {
            prop_assert!(ends.contains(&cut), "cut at {cut}, events end at {ends:?}");
        }
        if relay::ends_with_boundary(&data) {
            prop_assert!(ends.contains(&data.len()), "events end at {ends:?}");
            prop_assert_eq!(relay::last_boundary(&data), Some(data.len()));
        }
    }

    /// On a stream with one kind of line ending, cut anywhere, the relay's
    /// split point is the last event end: no whole event is held back.
    #[test]
    fn relay_holds_back_no_whole_event(data in uniform_stream(), cut: usize) {
        let data = &data[..cut % (data.len() + 1)];
        let last = event_ends(data, false).last().copied();
        let found = relay::last_boundary(data);
        prop_assert!(found >= last, "last event ends at {last:?}, relay cuts at {found:?}");
    }

    /// Whatever arrives, in whatever frames: the client gets exactly those
    /// bytes, every piece but the last ends on an event boundary, and the
    /// byte count reported at the end is what was sent.
    #[test]
    fn relay_forwards_exactly_what_arrives(data in sse_bytes(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let (out, (end, _usage, bytes)) = relay_all(split_at(&data, &cuts));
        let sent: Vec<u8> = out.concat();
        prop_assert_eq!(&sent, &data);
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(bytes, data.len() as u64);
        let mut at = 0;
        for piece in out.iter().take(out.len().saturating_sub(1)) {
            prop_assert!(!piece.is_empty(), "an empty piece was sent");
            at += piece.len();
            let ends = event_ends(&data[..at], true);
            prop_assert!(ends.contains(&at), "a piece ends at {at}, events end at {ends:?}");
        }
    }
}

// ------------------------------------------------------------- usage parser

proptest! {
    /// Arbitrary bytes as an answer body or as streamed events.
    #[test]
    fn usage_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = usage::from_json(&bytes);
        let _ = usage::from_sse(&bytes);
    }

    /// A stream whose last usage line says so is read as such, whatever
    /// event noise surrounds it; the usage line's JSON may hold anything
    /// else too.
    #[test]
    fn usage_is_found_in_any_stream(noise in sse_bytes(), prompt: u64, completion: u64, extra in json_value()) {
        let line = serde_json::json!({
            "choices": [],
            "extra": extra,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        });
        let mut events = noise.clone();
        events.extend_from_slice(b"\n\ndata: ");
        events.extend_from_slice(line.to_string().as_bytes());
        events.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        prop_assert_eq!(
            usage::from_sse(&events),
            Some(Usage { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: 0 })
        );
        prop_assert_eq!(
            usage::from_json(line.to_string().as_bytes()),
            Some(Usage { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: 0 })
        );
    }
}

// ------------------------------------------- what the properties found

/// serde_json skips ignored fields' strings without checking their UTF-8,
/// so the probe accepted (and the router forwarded) a body that is not JSON.
#[test]
fn found_invalid_utf8_in_an_ignored_field_is_refused() {
    let body = b"{\"model\":\"m\",\"messages\":\"\xff\"}";
    match probe(body) {
        Err(ProxyError::BadRequest { message, .. }) => {
            assert!(message.contains("UTF-8"), "{message}")
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// A stream delimited by CRs only: `ends_with_boundary` took `\r\r` for an
/// event end but `last_boundary` did not, so once a frame ended mid-event
/// every later event was held until the stream ended.
#[test]
fn found_cr_delimited_events_are_split() {
    assert_eq!(relay::last_boundary(b"data: a\r\rdata: b"), Some(9));
    assert_eq!(relay::last_boundary(b"data: a\r\r\ndata: b"), Some(10));
    let (out, _) = relay_all(vec![
        Bytes::from_static(b"data: a\r\rdata: "),
        Bytes::from_static(b"b\r\r"),
    ]);
    assert_eq!(out[0], Bytes::from_static(b"data: a\r\r"));
}

/// A stream ending in a partial event reported its bytes without that
/// partial event, though the client got it.
#[test]
fn found_a_trailing_partial_event_is_counted() {
    let (out, (_, _, bytes)) = relay_all(vec![Bytes::from_static(b"data: x")]);
    assert_eq!(out.concat(), b"data: x");
    assert_eq!(bytes, 7);
}
