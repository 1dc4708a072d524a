//! Relaying a streamed answer to the client as it arrives.
//!
//! Frames are forwarded as soon as they hold whole SSE events, so a client
//! never receives half an event; the rare frame that ends mid-event is held
//! until the rest arrives (`events` finds where an event ends). Frames that
//! arrive together leave together: the relay takes every frame the
//! upstream's body has ready and hands them on as one, so a burst read from
//! the upstream in one go is written to the client in one go too, rather
//! than one write (and one TCP segment) per chunk; nothing is held once the
//! upstream has nothing more ready. If the upstream breaks or
//! goes quiet for longer than the idle timeout, the client gets an explicit
//! SSE error event instead of a clean end that would look like a complete
//! answer. When the stream ends, however it ends, the attempt's figures go
//! to the health recorder and the request's log line is written.
//!
//! A stream from a target of another API passes through a
//! [`StreamTranslator`] on its way out ([`Shape`]): the relay still cuts on
//! the upstream's event boundaries, reads the usage from the upstream's
//! events, and hands each batch of whole events to the translator at once,
//! so a translated stream is held back no more than a relayed one.
//!
//! When the target has a price, the cost of the usage read so far is
//! written into the client's usage event on its way out (`cost`), after any
//! translation; every other event passes untouched.
//!
//! Upstreams are untrusted, so what is held is bounded: an event still
//! incomplete past [`Relay::held_max`] bytes (by default
//! `proxy.max_response_bytes`' default, 64 MiB) ends the stream with the
//! error event, and each frame's boundary search looks only at what it
//! added, so an upstream that never ends its event costs neither unbounded
//! memory nor time quadratic in what it sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub use crate::error::openai_stream_error;
use crate::routing::Price;
use crate::scrub::Scrubber;
use crate::translate::StreamTranslator;
use crate::usage::{self, Usage};

mod batch;
mod cost;
mod drain;
mod events;

use batch::{BATCH_MAX, Batch};
use drain::Drain;

pub use events::{ends_with_boundary, last_boundary};

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// The upstream finished the stream.
    Complete,
    /// The upstream broke it; the client got an error event.
    UpstreamFailed(String),
    /// The client went away first.
    ClientGone,
}

/// Called once when a relayed stream ends, with what it carried.
pub trait OnStreamEnd: Send + 'static {
    /// Records the end: health sample, log line, counters.
    fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64);

    /// The prices of the target streaming, when it has any: the relay then
    /// writes the cost into the client's usage event. `None` (the default):
    /// the usage goes out as it came.
    fn price(&self) -> Option<Price> {
        None
    }

    /// The input tokens to charge when the stream's usage is not reported
    /// (its client left before the end, or the upstream sent none): the
    /// stream is then charged an estimate (`usage::unreported`). `None`
    /// (the default): only what was reported.
    fn prompt_estimate(&self) -> Option<u64> {
        None
    }
}

/// The shape of what the client receives: the upstream's events as they
/// are, or translated; and the client's own error event.
pub struct Shape {
    /// Rewrites the upstream's events into the client's API, if they differ.
    pub translator: Option<Box<dyn StreamTranslator>>,
    /// The event that ends the client's stream on an upstream failure.
    pub error_event: fn(&str) -> Bytes,
}

impl Shape {
    /// An OpenAI client, an OpenAI upstream: events pass as they are.
    pub fn openai() -> Self {
        Self {
            translator: None,
            error_event: openai_stream_error,
        }
    }
}

/// A streamed answer being relayed; `B` is the upstream's body
/// (`hyper::body::Incoming` in the proxy).
pub struct Relay<B> {
    /// The upstream's body; taken only when a drain reads it on.
    inner: Option<B>,
    ready: Option<Bytes>,
    pending: BytesMut,
    batch: Batch,
    sse: bool,
    idle_timeout: Duration,
    /// Fires at the earliest moment the stream may have been quiet for
    /// `idle_timeout`; it is moved on only when it fires and data came since
    /// (`last_data`), not on every chunk, which made the timer wheel a large
    /// share of a stream's cost.
    idle: Pin<Box<Sleep>>,
    last_data: Instant,
    /// When the stream must have ended (`proxy.max_stream_ms`), if ever.
    ends_by: Option<Instant>,
    usage: Option<Usage>,
    /// The most bytes held waiting for an event's end.
    held_max: usize,
    /// The target's prices, when known: the usage event gets its cost.
    price: Option<Price>,
    bytes: u64,
    /// Data events relayed, counted only for [`OnStreamEnd::prompt_estimate`].
    events: u64,
    prompt_estimate: Option<u64>,
    done: bool,
    /// Takes the node's provider keys out of every event before it leaves.
    scrub: Arc<Scrubber>,
    shape: Shape,
    on_end: Option<Box<dyn OnStreamEnd>>,
    /// Reads the upstream on for its usage if the client hangs up first.
    drain: Option<Drain<B>>,
}

impl<B> Relay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Relays `inner`, whose first data frame `first` was already read.
    /// `sse` says whether to forward on event boundaries; `scrub` is
    /// applied to each piece forwarded (whole events for SSE, so a key
    /// split across the upstream's frames is still whole when scrubbed).
    pub fn new(
        first: Bytes,
        inner: B,
        sse: bool,
        idle_timeout: Duration,
        scrub: Arc<Scrubber>,
        on_end: Box<dyn OnStreamEnd>,
    ) -> Self {
        Self::with_shape(
            first,
            inner,
            sse,
            idle_timeout,
            scrub,
            Shape::openai(),
            on_end,
        )
    }

    /// The same, with what the client receives shaped by `shape`. A
    /// translated stream is cut on event boundaries whatever `sse` says:
    /// a translator reads whole events.
    pub fn with_shape(
        first: Bytes,
        inner: B,
        sse: bool,
        idle_timeout: Duration,
        scrub: Arc<Scrubber>,
        shape: Shape,
        on_end: Box<dyn OnStreamEnd>,
    ) -> Self {
        let sse = sse || shape.translator.is_some();
        let price = on_end.price();
        let prompt_estimate = on_end.prompt_estimate();
        let mut relay = Self {
            inner: Some(inner),
            ready: None,
            pending: BytesMut::new(),
            batch: Batch::default(),
            sse,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            last_data: Instant::now(),
            ends_by: None,
            usage: None,
            held_max: HELD_MAX,
            price,
            bytes: 0,
            events: 0,
            prompt_estimate,
            done: false,
            scrub,
            shape,
            on_end: Some(on_end),
            drain: None,
        };
        relay.ready = relay.take_events(first);
        relay
    }

    /// The most bytes of one unfinished event (or, for a stream that is not
    /// SSE, of one line) to hold; past it an SSE stream ends with the error
    /// event. The proxy passes `proxy.max_response_bytes`: an event may be
    /// as large as a whole answer may.
    pub fn held_max(mut self, bytes: usize) -> Self {
        self.held_max = bytes;
        self
    }

    /// Ends the stream with the error event at `at` if the upstream has not
    /// ended it by then, however steadily it sends: an upstream that
    /// trickles for ever would hold the request and its slots for ever.
    pub fn ends_by(mut self, at: Instant) -> Self {
        self.ends_by = Some(at);
        if at < self.idle.deadline() {
            self.idle.as_mut().reset(at);
        }
        self
    }

    /// Splits what has arrived into whole events to send now and a partial
    /// event to hold. The common case (a frame of whole events, nothing held)
    /// forwards the frame without copying.
    ///
    /// A stream that is not SSE is forwarded as it comes, unless there are
    /// keys to scrub: then on line boundaries (a key holds no newline), so a
    /// key split across two frames is whole when scrubbed; a line longer
    /// than [`LINE_MAX`] is forwarded once that long.
    fn take_events(&mut self, data: Bytes) -> Option<Bytes> {
        let out = if self.sse {
            if self.pending.is_empty() && ends_with_boundary(&data) {
                data
            } else {
                events::whole_events(&mut self.pending, &data)?.freeze()
            }
        } else if self.scrub.is_empty() || (self.pending.is_empty() && data.ends_with(b"\n")) {
            data
        } else {
            self.pending.extend_from_slice(&data);
            let cut = match memchr::memrchr(b'\n', &self.pending) {
                Some(i) => i + 1,
                // A key that straddles the cut starts in the tail kept.
                None if self.pending.len() >= LINE_MAX => self.pending.len() - LINE_TAIL,
                None => return None,
            };
            self.pending.split_to(cut).freeze()
        };
        if out.is_empty() {
            return None;
        }
        let out = self.scrub.bytes(out);
        if self.sse {
            add_usage(&mut self.usage, &out);
            if self.prompt_estimate.is_some() {
                self.events += usage::unreported::data_events(&out);
            }
        }
        let out = match &mut self.shape.translator {
            None => out,
            Some(translator) => {
                let mut translated = BytesMut::new();
                translator.events(&out, &mut translated);
                if translated.is_empty() {
                    return None;
                }
                translated.freeze()
            }
        };
        let out = self.priced(out);
        self.bytes += out.len() as u64;
        Some(out)
    }

    /// `out` (the client's whole events) with the cost of the usage so far
    /// in its usage event, when the target has a price and there is one.
    fn priced(&self, out: Bytes) -> Bytes {
        let cost = match (&self.price, &self.usage) {
            (Some(price), Some(usage)) if self.sse => usage.cost(price),
            _ => None,
        };
        cost.and_then(|cost| cost::with_cost(&out, cost))
            .unwrap_or(out)
    }

    /// Ready once no data has come for `idle_timeout`, or the stream's
    /// time is up ([`Relay::ends_by`]).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.idle.as_mut().poll(cx));
            let quiet_until = self.last_data + self.idle_timeout;
            let wake = self.ends_by.map_or(quiet_until, |end| end.min(quiet_until));
            if wake <= Instant::now() {
                return Poll::Ready(());
            }
            self.idle.as_mut().reset(wake);
        }
    }

    /// The failure that ends a stream whose time is up, if it is.
    fn out_of_time(&self, now: Instant) -> Option<String> {
        let end = self.ends_by?;
        (end <= now).then(|| "it ran past its time limit (proxy.max_stream_ms)".to_owned())
    }

    fn end(&mut self, end: StreamEnd) {
        self.done = true;
        if let Some(on_end) = self.on_end.take() {
            // A stream ended with no usage at all is charged the estimate
            // (a broken one is not: the client got an error, not an answer).
            let usage = match (&end, self.usage, self.prompt_estimate) {
                (StreamEnd::Complete, None, Some(prompt)) => {
                    Some(usage::unreported::estimate(None, prompt, self.events))
                }
                _ => self.usage,
            };
            on_end.finish(end, usage, self.bytes);
        }
    }

    /// Ends the stream on an upstream failure; returns the error event.
    fn fail(&mut self, reason: String) -> Bytes {
        // A partial event was never sent; the error event starts clean.
        self.pending.clear();
        let reason = self.scrub.message(&reason);
        let message = format!("The upstream stream was interrupted: {reason}");
        let event = (self.shape.error_event)(&message);
        self.end(StreamEnd::UpstreamFailed(reason));
        event
    }

    /// Sends what is batched, then `next` (if any) on the following poll.
    fn flush(&mut self, next: Option<Bytes>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let now = match self.batch.take() {
            Some(batch) => {
                self.ready = next;
                Some(batch)
            }
            None => next,
        };
        Poll::Ready(now.map(|data| Ok(Frame::data(data))))
    }
}

/// The longest line of a stream that is not SSE held back to be scrubbed whole.
const LINE_MAX: usize = 1 << 20;

/// What a line cut at [`LINE_MAX`] keeps back, so that a key (in any of
/// the scrubber's encodings, up to this long) cut there is scrubbed whole
/// with what follows.
const LINE_TAIL: usize = 4096;

/// Adds the usage reported in `events` (whole SSE events) to what was
/// read before: counts in a stream only grow, and each event may carry only
/// some of them.
fn add_usage(usage: &mut Option<Usage>, events: &[u8]) {
    if let Some(u) = usage::from_sse(events) {
        *usage = Some(usage.map_or(u, |before| before.merge(u)));
    }
}

/// The default of [`Relay::held_max`]: `proxy.max_response_bytes`' default.
const HELD_MAX: usize = 64 << 20;

impl<B> Body for Relay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(data) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing for the client
                    };
                    this.last_data = Instant::now();
                    if let Some(out) = this.take_events(data) {
                        this.batch.push(out);
                    }
                    if let Some(reason) = this.out_of_time(this.last_data) {
                        let event = this.fail(reason);
                        return this.flush(Some(event));
                    }
                    if this.sse && this.pending.len() > this.held_max {
                        let held = this.held_max;
                        let event = this.fail(format!("an event ran past {held} bytes unfinished"));
                        return this.flush(Some(event));
                    }
                    if this.batch.len() >= BATCH_MAX {
                        return this.flush(None);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let event = this.fail(e.to_string());
                    return this.flush(Some(event));
                }
                Poll::Ready(None) => {
                    let mut rest = this.scrub.bytes(std::mem::take(&mut this.pending).freeze());
                    if this.sse {
                        add_usage(&mut this.usage, &rest);
                    }
                    if let Some(translator) = &mut this.shape.translator {
                        // A trailing event without its blank line is still
                        // an event; then whatever closes the client's shape.
                        let mut out = BytesMut::new();
                        if !rest.is_empty() {
                            let mut whole = BytesMut::from(&rest[..]);
                            whole.extend_from_slice(b"\n\n");
                            translator.events(&whole, &mut out);
                        }
                        translator.finish(&mut out);
                        rest = out.freeze();
                    }
                    let rest = this.priced(rest);
                    // Counted before the end is reported, so the log line
                    // includes a trailing partial event.
                    this.bytes += rest.len() as u64;
                    this.end(StreamEnd::Complete);
                    if !rest.is_empty() {
                        this.batch.push(rest);
                    }
                    return this.flush(None);
                }
                // Nothing more is ready: what was gathered goes now. (Held
                // for another scheduler turn instead, as it once was, each
                // batch cost two wake-ups of the task and its chunks a turn
                // of latency; the owned connection's body reads the socket
                // itself, so a turn brings nothing that was not ready.)
                Poll::Pending if this.batch.len() > 0 => return this.flush(None),
                Poll::Pending => {
                    ready!(this.poll_idle(cx));
                    let reason = this.out_of_time(Instant::now()).unwrap_or_else(|| {
                        format!("no data for {} ms", this.idle_timeout.as_millis())
                    });
                    let event = this.fail(reason);
                    return this.flush(Some(event));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod deadline_tests;
#[cfg(test)]
mod drain_tests;
#[cfg(test)]
mod held_tests;
#[cfg(test)]
mod tests;
