//! Relaying a streamed answer to the client as it arrives.
//!
//! Frames are forwarded as soon as they hold whole SSE events, so a client
//! never receives half an event; the rare frame that ends mid-event is held
//! until the rest arrives. If the upstream breaks or goes quiet for longer
//! than the idle timeout, the client gets an explicit SSE error event instead
//! of a clean end that would look like a complete answer. When the stream
//! ends, however it ends, the attempt's figures go to the health recorder and
//! the request's log line is written.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::error_json;
use crate::usage::{self, Usage};

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
}

/// A streamed answer being relayed; `B` is the upstream's body
/// (`hyper::body::Incoming` in the proxy).
pub struct Relay<B> {
    inner: B,
    ready: Option<Bytes>,
    pending: BytesMut,
    sse: bool,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    usage: Option<Usage>,
    bytes: u64,
    done: bool,
    on_end: Option<Box<dyn OnStreamEnd>>,
}

impl<B> Relay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Relays `inner`, whose first data frame `first` was already read.
    /// `sse` says whether to forward on event boundaries.
    pub fn new(
        first: Bytes,
        inner: B,
        sse: bool,
        idle_timeout: Duration,
        on_end: Box<dyn OnStreamEnd>,
    ) -> Self {
        let mut relay = Self {
            inner,
            ready: None,
            pending: BytesMut::new(),
            sse,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            usage: None,
            bytes: 0,
            done: false,
            on_end: Some(on_end),
        };
        relay.ready = relay.take_events(first);
        relay
    }

    /// Splits what has arrived into whole events to send now and a partial
    /// event to hold. The common case (a frame of whole events, nothing held)
    /// forwards the frame without copying.
    fn take_events(&mut self, data: Bytes) -> Option<Bytes> {
        let out = if !self.sse || (self.pending.is_empty() && ends_with_boundary(&data)) {
            data
        } else {
            self.pending.extend_from_slice(&data);
            let cut = last_boundary(&self.pending)?;
            self.pending.split_to(cut).freeze()
        };
        if out.is_empty() {
            return None;
        }
        if self.sse
            && let Some(u) = usage::from_sse(&out)
        {
            self.usage = Some(u);
        }
        self.bytes += out.len() as u64;
        Some(out)
    }

    fn end(&mut self, end: StreamEnd) {
        self.done = true;
        if let Some(on_end) = self.on_end.take() {
            on_end.finish(end, self.usage, self.bytes);
        }
    }

    fn fail(&mut self, reason: String) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // A partial event was never sent; the error event starts clean.
        self.pending.clear();
        let message = format!("The upstream stream was interrupted: {reason}");
        let mut event = BytesMut::from(&b"data: "[..]);
        event.extend_from_slice(&error_json(
            &message,
            "server_error",
            None,
            Some("stream_interrupted"),
        ));
        event.extend_from_slice(b"\n\n");
        self.end(StreamEnd::UpstreamFailed(reason));
        Poll::Ready(Some(Ok(Frame::data(event.freeze()))))
    }
}

fn ends_with_boundary(data: &[u8]) -> bool {
    data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n") || data.ends_with(b"\r\r")
}

/// The end of the last complete event in `data`.
fn last_boundary(data: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::rfind(data, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::rfind(data, b"\r\n\r\n").map(|i| i + 4);
    lf.max(crlf)
}

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
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing for the client
                    };
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    if let Some(out) = this.take_events(data) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => return this.fail(e.to_string()),
                Poll::Ready(None) => {
                    let rest = std::mem::take(&mut this.pending).freeze();
                    this.end(StreamEnd::Complete);
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    this.bytes += rest.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let quiet = this.idle_timeout;
                    return this.fail(format!("no data for {} ms", quiet.as_millis()));
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

impl<B> Drop for Relay<B> {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end.finish(StreamEnd::ClientGone, self.usage, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::sync::{Arc, Mutex};

    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};

    type Ended = Arc<Mutex<Option<(StreamEnd, Option<Usage>, u64)>>>;

    struct Record(Ended);
    impl OnStreamEnd for Record {
        fn finish(self: Box<Self>, end: StreamEnd, usage: Option<Usage>, bytes: u64) {
            *self.0.lock().unwrap() = Some((end, usage, bytes));
        }
    }

    fn upstream(
        frames: Vec<Result<&'static str, &'static str>>,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, String>> + Unpin> {
        StreamBody::new(stream::iter(frames.into_iter().map(|f| {
            f.map(|s| Frame::data(Bytes::from_static(s.as_bytes())))
                .map_err(str::to_owned)
        })))
    }

    async fn relay_all(
        first: &'static str,
        rest: Vec<Result<&'static str, &'static str>>,
    ) -> (Vec<Bytes>, Ended) {
        let ended: Ended = Arc::default();
        let mut relay = Relay::new(
            Bytes::from_static(first.as_bytes()),
            upstream(rest),
            true,
            Duration::from_secs(5),
            Box::new(Record(ended.clone())),
        );
        let mut out = Vec::new();
        while let Some(frame) = relay.frame().await {
            out.push(frame.unwrap().into_data().unwrap());
        }
        (out, ended)
    }

    #[tokio::test]
    async fn whole_events_pass_frame_by_frame() {
        let (out, ended) = relay_all(
            "data: {\"a\":1}\n\n",
            vec![Ok("data: {\"a\":2}\n\n"), Ok("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n"), Ok("data: [DONE]\n\n")],
        )
        .await;
        assert_eq!(out.len(), 4);
        let (end, usage, bytes) = ended.lock().unwrap().clone().unwrap();
        assert_eq!(end, StreamEnd::Complete);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        assert_eq!(bytes, out.iter().map(|b| b.len() as u64).sum::<u64>());
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
            vec![
                Bytes::from("data: {\"a\":1}\n\n"),
                Bytes::from("data: {\"b\":2}\n\n")
            ]
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

    #[tokio::test(start_paused = true)]
    async fn a_quiet_upstream_times_out_with_an_error_event() {
        let ended: Ended = Arc::default();
        let never = StreamBody::new(stream::pending::<Result<Frame<Bytes>, String>>());
        let mut relay = Relay::new(
            Bytes::from_static(b"data: 1\n\n"),
            never,
            true,
            Duration::from_secs(2),
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

    #[tokio::test]
    async fn dropping_mid_stream_reports_the_client_gone() {
        let ended: Ended = Arc::default();
        let relay = Relay::new(
            Bytes::from_static(b"data: 1\n\n"),
            upstream(vec![Ok("data: 2\n\n")]),
            true,
            Duration::from_secs(2),
            Box::new(Record(ended.clone())),
        );
        drop(relay);
        assert_eq!(
            ended.lock().unwrap().clone().unwrap().0,
            StreamEnd::ClientGone
        );
    }

    #[test]
    fn boundaries() {
        assert!(ends_with_boundary(b"data: x\n\n"));
        assert!(ends_with_boundary(b"data: x\r\n\r\n"));
        assert!(!ends_with_boundary(b"data: x\n"));
        assert_eq!(last_boundary(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_boundary(b"data: a\r\n\r\ndata: b\r\n\r\n"), Some(22));
        assert_eq!(last_boundary(b"data: a"), None);
    }
}
