//! Translation between the API a client speaks and the API a target
//! speaks, so one route can mix native Anthropic and OpenAI-compatible
//! targets and both SDKs can call either.
//!
//! Everything here is pure: bytes in, bytes out, no sockets or clocks (a
//! timestamp an answer needs is passed in). A request that cannot be
//! translated faithfully is a [`TranslateError`] naming the field, which the
//! client gets as a 400: a field is never dropped silently.
//!
//! # Layout
//!
//! - `mod.rs`: the shared pieces: the error, SSE event parsing and writing,
//!   and [`StreamTranslator`], the interface a relayed stream is rewritten
//!   through.
//! - [`messages_to_chat`]: a client of the Anthropic Messages API, a target
//!   of OpenAI chat completions (request, answer, stream).
//! - [`chat_to_messages`]: a client of OpenAI chat completions, a native
//!   Anthropic target (request, answer, stream).

pub mod chat_to_messages;
pub mod messages_to_chat;

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// A request (or an upstream answer) that cannot be translated faithfully.
/// `field` is the JSON path of the culprit (`messages[2].content[0].type`),
/// so a 400 tells the client exactly what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TranslateError {
    /// Where: a JSON path into the body, `""` for the body as a whole.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl TranslateError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Rewrites a streamed answer from the target's event shape into the
/// client's, event by event, as it arrives: nothing is held back beyond the
/// event being translated, so the client's time to first token is the
/// upstream's.
pub trait StreamTranslator: Send + 'static {
    /// Translates `events`: one or more whole SSE events as the upstream
    /// sent them (already scrubbed of keys), appending the client's events
    /// to `out`. An upstream event with no counterpart appends nothing.
    fn events(&mut self, events: &[u8], out: &mut BytesMut);

    /// The upstream ended the stream cleanly: appends what the client is
    /// still owed (closing events the upstream's shape did not need).
    fn finish(&mut self, out: &mut BytesMut);

    /// The client's event for a stream that broke midway, in its shape.
    fn error_event(&self, message: &str) -> Bytes;
}

/// One SSE event: its `event:` name, if any, and its `data:` lines joined
/// by newlines (borrowed when there is a single line, the usual case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field.
    pub event: Option<&'a str>,
    /// The data, without the `data:` prefix and its optional space.
    pub data: Cow<'a, [u8]>,
}

/// The events in `buf` (whole events, as the relay hands them over), in
/// order. Comments (`:` lines), `id:` and `retry:` fields are skipped;
/// events without data (a bare `event:` line) are kept with empty data.
/// LF, CRLF and CR line endings are all accepted.
pub fn parse_events(buf: &[u8]) -> Vec<SseEvent<'_>> {
    let mut events = Vec::new();
    let mut event: Option<&str> = None;
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut seen = false;
    for line in lines(buf) {
        if line.is_empty() {
            if seen {
                events.push(SseEvent {
                    event: event.take(),
                    data: data.take().unwrap_or(Cow::Borrowed(&[])),
                });
            }
            seen = false;
            continue;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(0) => continue,
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => {
                event = std::str::from_utf8(value).ok();
                seen = true;
            }
            b"data" => {
                data = Some(match data.take() {
                    None => Cow::Borrowed(value),
                    Some(before) => {
                        let mut joined = before.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        Cow::Owned(joined)
                    }
                });
                seen = true;
            }
            _ => {}
        }
    }
    if seen {
        events.push(SseEvent {
            event,
            data: data.unwrap_or(Cow::Borrowed(&[])),
        });
    }
    events
}

/// Lines of `buf` without their endings (LF, CRLF or CR).
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
                Some(line)
            }
        }
    })
}

/// Appends one SSE event: `event: NAME` when named, then `data: DATA`
/// (which must hold no newline: JSON from serde never does) and the blank
/// line that ends it.
pub fn write_event(out: &mut BytesMut, event: Option<&str>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn events_are_parsed_whatever_the_line_endings() {
        let buf = b"event: message_start\ndata: {\"a\":1}\n\n: ping\n\ndata: [DONE]\r\n\r\nevent: x\rdata: a\rdata: b\r\r";
        let events = parse_events(buf);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start"),
                    data: Cow::Borrowed(&b"{\"a\":1}"[..])
                },
                SseEvent {
                    event: None,
                    data: Cow::Borrowed(&b"[DONE]"[..])
                },
                SseEvent {
                    event: Some("x"),
                    data: Cow::Owned(b"a\nb".to_vec())
                },
            ]
        );
    }

    #[test]
    fn written_events_parse_back() {
        let mut out = BytesMut::new();
        write_event(&mut out, Some("ping"), b"{\"type\":\"ping\"}");
        write_event(&mut out, None, b"[DONE]");
        let events = parse_events(&out);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, Some("ping"));
        assert_eq!(&*events[1].data, b"[DONE]");
    }

    #[test]
    fn hostile_bytes_never_panic() {
        for buf in [
            &b""[..],
            b"\n\n\n",
            b"data",
            b"data:",
            b"event:\xff\xfe\n\n",
            b"\r\r\r\n",
            b":::\n",
        ] {
            let _ = parse_events(buf);
        }
    }
}
