//! Streams of named SSE events (`event: <type>` then `data: <json>`), as the
//! Anthropic Messages and OpenAI Responses APIs send them. Their events are
//! framed up front (a stream is a few small buffers) and sent with the same
//! faults as a chat stream: `chunk_delay` between content events, the cut
//! after `cut_after_chunks` of them.

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rand::rngs::SmallRng;
use serde::Serialize;

use super::behavior::Latency;
use super::body::{Body, MockError};

/// Frames one named event: `event: <name>\ndata: <json>\n\n`.
pub fn named<T: Serialize>(name: &str, payload: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    // Serialising these plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, payload);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// A whole stream: the events before the content, the content events (one
/// per chunk), and the events after it.
#[derive(Debug, Default)]
pub struct Events {
    /// Every event, in order.
    pub frames: Vec<Bytes>,
    /// Index of the first content event.
    pub first_chunk: usize,
    /// Number of content events.
    pub chunks: usize,
}

impl Events {
    /// Appends an event before, among or after the content events.
    pub fn push(&mut self, frame: Bytes) {
        self.frames.push(frame);
    }

    /// Appends a content event (the content events are contiguous).
    pub fn push_chunk(&mut self, frame: Bytes) {
        if self.chunks == 0 {
            self.first_chunk = self.frames.len();
        }
        self.frames.push(frame);
        self.chunks += 1;
    }
}

/// An [`Events`] stream being sent.
struct Sending {
    frames: std::vec::IntoIter<Bytes>,
    /// Index of the next frame.
    next: usize,
    first_chunk: usize,
    end_chunks: usize,
    chunk_delay: Latency,
    rng: SmallRng,
    /// Content events to send before aborting.
    cut: Option<usize>,
    done: bool,
}

/// The body sending `events`, `chunk_delay` between content events, aborted
/// after `cut` content events when asked.
pub fn body(events: Events, chunk_delay: &Latency, rng: SmallRng, cut: Option<u32>) -> Body {
    let sending = Sending {
        first_chunk: events.first_chunk,
        end_chunks: events.first_chunk + events.chunks,
        frames: events.frames.into_iter(),
        next: 0,
        chunk_delay: chunk_delay.clone(),
        rng,
        cut: cut.map(|c| c as usize),
        done: false,
    };
    let frames = stream::unfold(sending, |mut s| async move {
        let item = s.next().await?;
        Some((item.map(Frame::data), s))
    });
    StreamBody::new(frames).boxed_unsync()
}

impl Sending {
    async fn next(&mut self) -> Option<Result<Bytes, MockError>> {
        if self.done {
            return None;
        }
        let i = self.next;
        // As a chat stream: cut after `after` content events, and before the
        // closing events whatever `after` says.
        let cut_now = self.cut.is_some_and(|after| {
            i >= self.end_chunks || (i >= self.first_chunk && i - self.first_chunk >= after)
        });
        if cut_now {
            self.done = true;
            if i > self.first_chunk {
                self.pause().await;
            }
            return Some(Err(super::data::abort().await));
        }
        if i > self.first_chunk && i < self.end_chunks {
            self.pause().await;
        }
        let Some(frame) = self.frames.next() else {
            self.done = true;
            return None;
        };
        self.next += 1;
        Some(Ok(frame))
    }

    async fn pause(&mut self) {
        let delay = self.chunk_delay.sample(&mut self.rng);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}
