//! Reading a stream's usage after its client hung up.
//!
//! An upstream reports a stream's usage in its last events (OpenAI's usage
//! chunk, Anthropic's `message_delta`, the Responses API's
//! `response.completed`). A client that reads the whole answer and hangs up
//! before those would be charged nothing: no credits, no `tpm`, no cost.
//! So when the client goes away first, the upstream is read on, for a short
//! grace, only for its usage. Nothing read is sent anywhere; whole events
//! are parsed for usage and dropped. The stream is then finished with what
//! was reported, or, when the upstream reported nothing within the grace,
//! with the estimate of `usage::unreported` where the stream's owner asks
//! for one. A client that really stops early costs at most the grace's
//! worth of further generation, and the request's slots are held until the
//! upstream's stream is let go.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use super::{OnStreamEnd, Relay, StreamEnd, add_usage, events};
use crate::usage::{self, Usage};

impl<B> Relay<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    /// If the client hangs up before the upstream ends, reads the upstream
    /// on for up to `grace`, only for the usage its last events report, so
    /// a client cannot take a whole answer and leave before it is charged
    /// (this module).
    pub fn drain_on_hangup(mut self, grace: Duration) -> Self {
        self.drain = Some(Drain {
            grace,
            spawn: spawn::<B>,
        });
        self
    }
}

impl<B> Drop for Relay<B> {
    fn drop(&mut self) {
        let Some(on_end) = self.on_end.take() else {
            return;
        };
        // Usage is read from SSE events only: another stream has none.
        match (self.drain.take(), self.inner.take()) {
            (Some(drain), Some(inner)) if self.sse => (drain.spawn)(Drained {
                inner,
                pending: std::mem::take(&mut self.pending),
                usage: self.usage,
                bytes: self.bytes,
                events: self.events,
                prompt_estimate: self.prompt_estimate,
                held_max: self.held_max,
                grace: drain.grace,
                on_end: Some(on_end),
            }),
            _ => {
                let usage = estimated(self.usage, self.prompt_estimate, self.events);
                on_end.finish(StreamEnd::ClientGone, usage, self.bytes);
            }
        }
    }
}

/// How a relay hands its upstream to a drain when its client hangs up:
/// the grace, and the spawn of the drain's task, instantiated where the
/// body is known to be `Send + 'static` ([`super::Relay::drain_on_hangup`]).
pub(super) struct Drain<B> {
    pub(super) grace: Duration,
    pub(super) spawn: fn(Drained<B>),
}

/// A stream whose client hung up, read on for its usage.
pub(super) struct Drained<B> {
    pub(super) inner: B,
    /// The start of an event that had not ended when the client went.
    pub(super) pending: BytesMut,
    pub(super) usage: Option<Usage>,
    /// What the client was sent.
    pub(super) bytes: u64,
    /// The data events the client was sent.
    pub(super) events: u64,
    /// The input tokens to charge if no usage comes ([`OnStreamEnd::prompt_estimate`]).
    pub(super) prompt_estimate: Option<u64>,
    /// The most bytes of one unfinished event to hold.
    pub(super) held_max: usize,
    pub(super) grace: Duration,
    /// Taken when the stream is finished; a drain dropped unfinished (its
    /// runtime shutting down) finishes it then, so it is never lost.
    pub(super) on_end: Option<Box<dyn OnStreamEnd>>,
}

/// Reads `drained` on a task of the current runtime; without one (a relay
/// dropped outside the runtime, in a test) finishes it at once, as
/// dropping it does.
pub(super) fn spawn<B>(drained: Drained<B>)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(drained.run());
        }
        Err(_) => drop(drained),
    }
}

impl<B> Drained<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// Reads until the upstream ends, breaks, holds too much, or the
    /// grace is over; then finishes the stream with the usage read.
    async fn run(mut self) {
        let grace = self.grace;
        let ended = tokio::time::timeout(grace, self.read())
            .await
            .unwrap_or(false);
        self.finish(ended);
    }

    /// Whether the upstream ended its stream (rather than broke it or held
    /// too much).
    async fn read(&mut self) -> bool {
        while let Some(frame) = self.inner.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if let Some(whole) = events::whole_events(&mut self.pending, &data) {
                add_usage(&mut self.usage, &whole);
            }
            if self.pending.len() > self.held_max {
                return false;
            }
        }
        // A last event without its blank line is still an event.
        add_usage(&mut self.usage, &self.pending);
        true
    }
}

impl<B> Drained<B> {
    /// Finishes the stream with the usage read, as reported when the
    /// upstream `ended` it with a report, else estimated.
    fn finish(&mut self, ended: bool) {
        let Some(on_end) = self.on_end.take() else {
            return;
        };
        let usage = match (ended, self.usage) {
            (true, Some(reported)) => Some(reported),
            _ => estimated(self.usage, self.prompt_estimate, self.events),
        };
        on_end.finish(StreamEnd::ClientGone, usage, self.bytes);
    }
}

impl<B> Drop for Drained<B> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// The usage of a stream its client left before the upstream ended it:
/// `reported`, or the estimate where the end's owner asked for one.
fn estimated(reported: Option<Usage>, prompt: Option<u64>, events: u64) -> Option<Usage> {
    match prompt {
        Some(prompt) => Some(usage::unreported::estimate(reported, prompt, events)),
        None => reported,
    }
}
