//! Tagging the response ids in a streamed Responses answer.
//!
//! The lifecycle events (`response.created`, `response.queued`,
//! `response.in_progress`, `response.completed`, `response.failed`,
//! `response.incomplete`) each carry the whole response object, whose `id`
//! (and `previous_response_id`) the client must see tagged. Every other
//! event (text deltas, output items, errors) passes byte for byte: a cheap
//! search for `"response"` decides, and only an event that holds it is
//! parsed, to the response object's two ids, whose spans are spliced.

use std::sync::{Arc, LazyLock};

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;

use crate::error::openai_stream_error;
use crate::translate::{StreamTranslator, parse_events, write_event};

use super::{Owner, PREVIOUS, Seal, tag_ids};
use crate::request_body::members;

/// The search that lets an event without a response object pass untouched,
/// built once: building it costs more than searching an event.
static RESPONSE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"response\""));

/// Rewrites a Responses stream from one upstream so the ids in it are
/// tagged with that upstream, event by event, holding nothing back but an
/// event that has not ended yet.
#[derive(Debug)]
pub struct TagStream {
    /// The upstream whose answer this is.
    upstream: String,
    /// The cluster's seal, when ids are bound to keys.
    seal: Option<Arc<Seal>>,
    /// The key the ids are handed to.
    key: Arc<str>,
    /// The start of an event that has not ended yet (the relay hands over
    /// whole events, so this stays empty unless that ever changes).
    pending: BytesMut,
}

impl TagStream {
    /// A stream answered by `upstream`, its ids handed to `key` (bound to
    /// it with `seal`, when the cluster has one).
    pub fn new(upstream: &str, seal: Option<Arc<Seal>>, key: Arc<str>) -> Self {
        Self {
            upstream: upstream.to_owned(),
            seal,
            key,
            pending: BytesMut::new(),
        }
    }

    /// Whose ids this stream hands out.
    fn owner(&self) -> Owner<'_> {
        Owner::new(self.seal.as_deref(), &self.key)
    }

    /// Appends the events in `buf`, tagged, to `out`; returns how many bytes
    /// of `buf` make up whole events.
    fn whole_events(&self, buf: &[u8], out: &mut BytesMut) -> usize {
        let mut start = 0;
        for end in event_ends(buf) {
            self.event(&buf[start..end], out);
            start = end;
        }
        start
    }

    /// Appends one raw event (with its ending blank line), its response ids
    /// tagged if it carries a response object, else as it is.
    fn event(&self, raw: &[u8], out: &mut BytesMut) {
        match self.tagged(raw) {
            Some((name, data)) => write_lines(out, name, &data),
            None => out.extend_from_slice(raw),
        }
    }

    /// The event's name and data with its response ids tagged, or `None`
    /// when it carries no response object with an id.
    fn tagged<'a>(&self, raw: &'a [u8]) -> Option<(Option<&'a str>, Bytes)> {
        RESPONSE_KEY.find(raw)?;
        let events = parse_events(raw);
        let [event] = events.as_slice() else {
            return None;
        };
        let data: &[u8] = &event.data;
        let mut edits = Vec::new();
        for response in members::find(data, &["response"])? {
            if !response.raw.get().starts_with('{') {
                continue;
            }
            let object = response.raw.get().as_bytes();
            let ids = members::find(object, &["id", PREVIOUS])?;
            let offset = response.span.start;
            edits.extend(
                tag_ids(ids.iter(), &self.upstream, self.owner())
                    .into_iter()
                    .map(|(span, bytes)| (span.start + offset..span.end + offset, bytes)),
            );
        }
        if edits.is_empty() {
            return None;
        }
        Some((event.event, members::splice_all(data, edits)))
    }
}

impl StreamTranslator for TagStream {
    fn events(&mut self, events: &[u8], out: &mut BytesMut) {
        if self.pending.is_empty() {
            let used = self.whole_events(events, out);
            self.pending.extend_from_slice(&events[used..]);
        } else {
            self.pending.extend_from_slice(events);
            let pending = std::mem::take(&mut self.pending);
            let used = self.whole_events(&pending, out);
            self.pending.extend_from_slice(&pending[used..]);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        // An unended last event: pass what came, as the relay would have.
        let rest = std::mem::take(&mut self.pending);
        out.extend_from_slice(&rest);
    }

    fn error_event(&self, message: &str) -> Bytes {
        openai_stream_error(message)
    }
}

/// The offsets just past each event's ending blank line in `buf`, in order:
/// the SSE line rules (LF, CRLF or CR endings), so an event is cut where
/// [`parse_events`] would end it. Bytes after the last one are an event that
/// has not ended. Lazy: a batch of events costs no allocation.
fn event_ends(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut line_start = 0;
    std::iter::from_fn(move || {
        while let Some(i) = memchr::memchr2(b'\n', b'\r', &buf[line_start..]) {
            let at = line_start + i;
            let next = if buf[at] == b'\r' && buf.get(at + 1) == Some(&b'\n') {
                at + 2
            } else {
                at + 1
            };
            let blank = at == line_start;
            line_start = next;
            if blank {
                return Some(next);
            }
        }
        None
    })
}

/// Appends an event whose data may span lines (the upstream's own line
/// breaks between JSON tokens, kept as they were).
fn write_lines(out: &mut BytesMut, name: Option<&str>, data: &[u8]) {
    if memchr::memchr(b'\n', data).is_none() {
        write_event(out, name, data);
        return;
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
