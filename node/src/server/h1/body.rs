//! A request's body as the data plane hands it to the proxy: whole when it
//! came with its head (nearly every API call: a few KB at most, in the
//! same read), fed from the connection as it arrives when it did not, or
//! read by hyper on an h2 stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::head::BodyFraming;
use crate::upstream::h1::{Chunked, Decoded};

/// Why a request's body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client closed its connection before the body's end.
    #[error("the connection closed before the body's end")]
    Closed,
    /// Reading the connection failed.
    #[error("reading the connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// A chunked body broke its format.
    #[error("the chunked body is invalid: {0}")]
    Chunk(&'static str),
    /// An h2 stream's body failed.
    #[error(transparent)]
    H2(#[from] hyper::Error),
}

/// One piece of a fed body: bytes, or the end (`None`).
type Fed = Result<Option<Bytes>, BodyError>;

/// The body of a request on the data plane.
#[derive(Debug)]
pub enum RequestBody {
    /// The whole body, read with the head; `None` once taken.
    Whole(Option<Bytes>),
    /// A body still arriving on an HTTP/1.1 connection, which feeds it.
    Fed {
        /// The pieces the connection reads.
        rx: mpsc::Receiver<Fed>,
        /// The end (or a failure) was seen: nothing more is read.
        ended: bool,
    },
    /// An h2 stream's body.
    H2(Incoming),
}

impl RequestBody {
    /// A body that arrived whole (or an empty one).
    pub fn whole(bytes: Bytes) -> Self {
        RequestBody::Whole(if bytes.is_empty() { None } else { Some(bytes) })
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Fed { rx, ended } => {
                if *ended {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(Some(bytes)))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                    Poll::Ready(Some(Ok(None))) => {
                        *ended = true;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        *ended = true;
                        Poll::Ready(Some(Err(e)))
                    }
                    // The connection went away without saying the body
                    // ended: a truncated body is never taken for a whole one.
                    Poll::Ready(None) => {
                        *ended = true;
                        Poll::Ready(Some(Err(BodyError::Closed)))
                    }
                }
            }
            RequestBody::H2(incoming) => Pin::new(incoming)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(BodyError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Whole(bytes) => bytes.is_none(),
            RequestBody::Fed { ended, .. } => *ended,
            RequestBody::H2(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Fed { .. } => SizeHint::default(),
            RequestBody::H2(incoming) => incoming.size_hint(),
        }
    }
}

/// `100 Continue`, for a client that waits for it before its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The connection's side of a [`RequestBody::Fed`]: reads the body off the
/// connection while the request is being answered, one piece at a time
/// and only once the previous one was taken (the channel holds one), so a
/// client cannot make the node buffer more of a body than the proxy reads.
pub(super) struct Feed {
    framing: Framing,
    tx: mpsc::Sender<Fed>,
    /// What is left to write of a `100 Continue` owed to the client.
    owed_continue: &'static [u8],
    /// The body was read to its end (the connection may carry another
    /// request), or feeding stopped (it may not).
    pub(super) state: FeedState,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked(Chunked),
}

/// Where feeding a body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FeedState {
    /// Still reading.
    Reading,
    /// The body was read to its end.
    Done,
    /// Feeding stopped before the body's end: what is left on the
    /// connection is not a request head.
    Abandoned,
}

impl Feed {
    /// A feed of a body framed as `framing`, and the body it feeds.
    pub(super) fn new(framing: BodyFraming, expect_continue: bool) -> (Self, RequestBody) {
        let (tx, rx) = mpsc::channel(1);
        let framing = match framing {
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked(Chunked::default()),
        };
        let feed = Feed {
            framing,
            tx,
            owed_continue: if expect_continue { CONTINUE } else { &[] },
            state: FeedState::Reading,
        };
        (feed, RequestBody::Fed { rx, ended: false })
    }

    /// Feeds the next piece of the body: from `buf` when it holds one,
    /// else after reading the connection. Cancel-safe: dropped at any
    /// await, nothing is lost or sent twice.
    pub(super) async fn step(&mut self, io: &mut TcpStream, buf: &mut BytesMut) {
        let Ok(permit) = self.tx.reserve().await else {
            // The proxy dropped the body: it answered without it.
            self.state = FeedState::Abandoned;
            return;
        };
        loop {
            let piece = match &mut self.framing {
                Framing::Length(0) => Some(Ok(None)),
                Framing::Length(left) if !buf.is_empty() => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    Some(Ok(Some(buf.split_to(n).freeze())))
                }
                Framing::Length(_) => None,
                Framing::Chunked(chunked) => match chunked.decode(buf) {
                    Ok(Decoded::Data(data)) => Some(Ok(Some(data))),
                    Ok(Decoded::End) => Some(Ok(None)),
                    Ok(Decoded::NeedMore) => None,
                    Err(e) => Some(Err(BodyError::Chunk(chunk_error(&e)))),
                },
            };
            if let Some(piece) = piece {
                self.state = match &piece {
                    Ok(Some(_)) => FeedState::Reading,
                    Ok(None) => FeedState::Done,
                    Err(_) => FeedState::Abandoned,
                };
                permit.send(piece);
                return;
            }
            while !self.owed_continue.is_empty() {
                match io.write(self.owed_continue).await {
                    Ok(n) if n > 0 => self.owed_continue = &self.owed_continue[n..],
                    Ok(_) => return fail(&mut self.state, permit, BodyError::Closed),
                    Err(e) => return fail(&mut self.state, permit, e.into()),
                }
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            match io.read_buf(buf).await {
                Ok(0) => return fail(&mut self.state, permit, BodyError::Closed),
                Ok(_) => {}
                Err(e) => return fail(&mut self.state, permit, e.into()),
            }
        }
    }

    /// Whether the body was read off the connection to its end (its end
    /// may not have been handed over yet).
    pub(super) fn read_whole(&self) -> bool {
        self.state == FeedState::Done
            || matches!(
                self.framing,
                Framing::Length(0) | Framing::Chunked(Chunked::Done)
            )
    }
}

/// Ends a feed with `error`, which the proxy reads as the body's failure.
fn fail(state: &mut FeedState, permit: mpsc::Permit<'_, Fed>, error: BodyError) {
    *state = FeedState::Abandoned;
    permit.send(Err(error));
}

/// The chunked decoder's reason, said of a request rather than an answer.
fn chunk_error(e: &crate::upstream::h1::H1Error) -> &'static str {
    match e {
        crate::upstream::h1::H1Error::BadChunk(why) => why,
        _ => "malformed",
    }
}
