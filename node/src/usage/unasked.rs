//! The usage of an OpenAI stream whose client did not ask for it.
//!
//! An OpenAI chat (or completions) stream carries its usage only when the
//! request says `stream_options.include_usage`. Without it the node would
//! learn nothing of what the stream used, and a key's credits and token
//! limits would be charged nothing for it: any client could stream for
//! free. So the node always asks ([`ask`]), and when the client had not,
//! takes the usage chunk back out of what the client receives
//! ([`StripUsage`]) after reading it, so the client sees the stream it
//! asked for. (The other chunks then carry `"usage":null`, as OpenAI
//! documents for such a stream; SDKs read that as no usage.)

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::error::openai_stream_error;
use crate::request_body::{members, splice};
use crate::translate::{StreamTranslator, parse_events};

/// The request member that asks for the usage.
const STREAM_OPTIONS: &str = "stream_options";

/// A streaming request's body rewritten to ask for its usage.
#[derive(Debug, PartialEq)]
pub struct Asked {
    /// The body, with `stream_options.include_usage` set to `true`.
    pub body: Bytes,
    /// Whether the client had asked for the usage itself; when not, the
    /// usage chunk is the node's, and is taken out of the client's stream.
    pub client_asked: bool,
}

/// `body` (a JSON object, as the probe checked) asking for its stream's
/// usage: `None` when it already does, or when its `stream_options` is
/// neither an object nor `null` (the upstream refuses that body as it
/// stands, and the client should hear the upstream's words). A
/// `stream_options` written twice is set in both places, and the client is
/// taken to have asked as the last one says (as serde_json reads it).
pub fn ask(body: &[u8]) -> Option<Asked> {
    let found = members::find(body, &[STREAM_OPTIONS])?;
    if found.is_empty() {
        let open = body.iter().position(|&b| b == b'{')?;
        let empty = body[open + 1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|&b| b == b'}');
        let member: &[u8] = if empty {
            br#""stream_options":{"include_usage":true}"#
        } else {
            br#""stream_options":{"include_usage":true},"#
        };
        return Some(Asked {
            body: splice(body, open + 1..open + 1, member),
            client_asked: false,
        });
    }
    let mut edits: Vec<(Range<usize>, Bytes)> = Vec::with_capacity(found.len());
    let mut client_asked = false;
    for member in &found {
        let mut options: Map<String, Value> =
            match serde_json::from_str::<Option<Value>>(member.raw.get()).ok()? {
                None => Map::new(),
                Some(Value::Object(options)) => options,
                Some(_) => return None,
            };
        client_asked = options.get("include_usage") == Some(&Value::Bool(true));
        options.insert("include_usage".to_owned(), Value::Bool(true));
        edits.push((
            member.span.clone(),
            Bytes::from(serde_json::to_vec(&options).ok()?),
        ));
    }
    if client_asked && found.len() == 1 {
        return None;
    }
    Some(Asked {
        body: members::splice_all(body, edits),
        client_asked,
    })
}

/// Takes the usage chunk (`"choices": []` with a `usage` object) out of an
/// OpenAI stream whose client did not ask for it; every other event passes
/// byte for byte.
#[derive(Debug, Default)]
pub struct StripUsage;

/// What of a chunk tells the usage chunk apart.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<IgnoredAny>,
}

impl StripUsage {
    /// Whether one raw event is the usage chunk.
    fn is_usage_chunk(event: &[u8]) -> bool {
        // Cheap first: only an empty list can be the usage chunk's choices.
        if memchr::memmem::find(event, b"[]").is_none() {
            return false;
        }
        parse_events(event).iter().any(|e| {
            serde_json::from_slice::<Chunk>(&e.data)
                .is_ok_and(|c| c.usage.is_some() && c.choices.is_some_and(|c| c.is_empty()))
        })
    }
}

impl StreamTranslator for StripUsage {
    fn events(&mut self, events: &[u8], out: &mut BytesMut) {
        if memchr::memmem::find(events, b"[]").is_none() {
            out.extend_from_slice(events);
            return;
        }
        for event in raw_events(events) {
            if !Self::is_usage_chunk(event) {
                out.extend_from_slice(event);
            }
        }
    }

    fn finish(&mut self, _out: &mut BytesMut) {}

    fn error_event(&self, message: &str) -> Bytes {
        openai_stream_error(message)
    }
}

/// Each event in `buf` as written, the blank line that ends it included
/// (a trailing piece without one is the last item). Lines end in LF, CRLF
/// or CR, as the relay's cut accepts them.
fn raw_events(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut at = 0;
        let mut line_start = 0;
        let end = loop {
            let Some(i) = memchr::memchr2(b'\n', b'\r', &rest[at..]) else {
                break rest.len();
            };
            let i = at + i;
            let next = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                i + 2
            } else {
                i + 1
            };
            if i == line_start {
                // An empty line: the event ends after it.
                break next;
            }
            at = next;
            line_start = next;
        };
        let (event, after) = rest.split_at(end);
        rest = after;
        Some(event)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn asked(body: &str) -> Option<(Value, bool)> {
        ask(body.as_bytes()).map(|a| (serde_json::from_slice(&a.body).unwrap(), a.client_asked))
    }

    #[test]
    fn a_stream_that_did_not_ask_is_made_to() {
        let (body, client) = asked(r#"{"model":"m","stream":true}"#).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["model"], "m");
        assert!(!client);
        for options in ["null", "{}", r#"{"include_usage":false}"#] {
            let text = format!(r#"{{"model":"m","stream_options":{options},"stream":true}}"#);
            let (body, client) = asked(&text).unwrap();
            assert_eq!(body["stream_options"]["include_usage"], true, "{options}");
            assert!(!client, "{options}");
        }
        // Other options are kept.
        let (body, _) = asked(r#"{"model":"m","stream_options":{"x":1}}"#).unwrap();
        assert_eq!(
            body["stream_options"],
            serde_json::json!({"x":1,"include_usage":true})
        );
        // Whitespace before the object, and an object with no member.
        let (body, _) = asked(" \n{ }").unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_stream_that_asked_is_left_alone() {
        assert_eq!(
            asked(r#"{"model":"m","stream_options":{"include_usage":true}}"#),
            None
        );
        // Not an object: the upstream's refusal is the client's to read.
        for options in ["1", r#""yes""#, "[]", "true"] {
            let text = format!(r#"{{"model":"m","stream_options":{options}}}"#);
            assert_eq!(asked(&text), None, "{options}");
        }
        // Not JSON at all: nothing to rewrite.
        assert_eq!(ask(b"[1]"), None);
    }

    /// A client cannot keep the usage from the node by writing the member
    /// twice: both are set, and the last says what the client asked.
    #[test]
    fn stream_options_written_twice_are_both_set() {
        let text =
            r#"{"model":"m","stream_options":{"include_usage":false},"stream_options":null}"#;
        let a = ask(text.as_bytes()).unwrap();
        let s = std::str::from_utf8(&a.body).unwrap();
        assert_eq!(s.matches(r#""include_usage":true"#).count(), 2, "{s}");
        assert!(!a.client_asked);
        let text = r#"{"model":"m","stream_options":{},"stream_options":{"include_usage":true}}"#;
        let a = ask(text.as_bytes()).unwrap();
        assert!(a.client_asked);
        let s = std::str::from_utf8(&a.body).unwrap();
        assert_eq!(s.matches(r#""include_usage":true"#).count(), 2, "{s}");
    }

    fn strip(frames: &[&str]) -> String {
        let mut t = StripUsage;
        let mut out = BytesMut::new();
        for f in frames {
            t.events(f.as_bytes(), &mut out);
        }
        t.finish(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn only_the_usage_chunk_is_taken_out() {
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n";
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n";
        let done = "data: [DONE]\n\n";
        assert_eq!(
            strip(&[&format!("{chunk}{chunk}{usage}{done}")]),
            format!("{chunk}{chunk}{done}")
        );
        // CRLF and CR line ends, a comment, a named event.
        let crlf = usage.replace('\n', "\r\n");
        let cr = usage.replace('\n', "\r");
        let other = ": keep\n\nevent: x\ndata: {\"choices\":[]}\n\n";
        assert_eq!(
            strip(&[&format!("{crlf}{other}{cr}{done}")]),
            format!("{other}{done}")
        );
        // An empty list elsewhere is not the usage chunk.
        let tools = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[]}}],\"usage\":null}\n\n";
        assert_eq!(strip(&[tools, done]), format!("{tools}{done}"));
    }

    #[test]
    fn raw_events_keep_every_byte() {
        let buf = b"data: 1\n\ndata: 2\r\n\r\n: c\rdata: 3\r\rdata: tail";
        let events: Vec<&[u8]> = raw_events(buf).collect();
        assert_eq!(
            events,
            vec![
                &b"data: 1\n\n"[..],
                &b"data: 2\r\n\r\n"[..],
                &b": c\rdata: 3\r\r"[..],
                &b"data: tail"[..],
            ]
        );
        assert_eq!(events.concat(), buf);
    }
}
