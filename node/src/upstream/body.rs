//! An upstream answer's body, whichever path it came by: hyper's for the
//! pooled client, or [`OwnedBody`], read straight off a worker-owned socket.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::AsyncReadExt;

use super::conn::Conn;
use super::h1::{Chunked, Decoded, Framing, H1Error};
use super::owned::Owned;

/// The body of an upstream's answer.
pub enum UpstreamBody {
    /// From the pooled client (HTTP/2).
    Pooled(Incoming),
    /// From a connection the worker owns (HTTP/1.1, plain or TLS).
    Owned(OwnedBody),
}

/// Why reading an upstream's body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// On the pooled client's connection.
    #[error(transparent)]
    Pooled(#[from] hyper::Error),
    /// On an owned connection.
    #[error(transparent)]
    Owned(#[from] H1Error),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Pooled(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            Self::Owned(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pooled(b) => b.is_end_stream(),
            Self::Owned(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Pooled(b) => b.size_hint(),
            Self::Owned(b) => b.size_hint(),
        }
    }
}

/// How much a read asks for when the body's length is not known: an SSE
/// event or several. A read that fills it is followed by a larger one.
const STREAM_READ: usize = 4 * 1024;

/// The most one read of a body of known length asks for.
const MAX_READ: usize = 64 * 1024;

/// Where the body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of a body of known length are left.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    /// Read to its end, or failed: nothing more comes.
    Done,
}

/// An answer's body read off the worker-owned socket it arrives on, in
/// whichever task polls it (the request's, then the client connection's
/// for a stream). Read to its end, it gives the socket back to its
/// worker's idle list; dropped or failed before that, it closes it.
pub struct OwnedBody {
    io: Option<Conn>,
    /// Bytes read and not yet decoded. Emptied buffers are let go, so a
    /// stream waiting for its next event holds no buffer.
    buf: BytesMut,
    state: State,
    reusable: bool,
    home: Arc<Owned>,
    slot: usize,
}

impl OwnedBody {
    pub(super) fn new(
        io: Conn,
        buf: BytesMut,
        framing: Framing,
        reusable: bool,
        home: Arc<Owned>,
        slot: usize,
    ) -> Self {
        let mut body = OwnedBody {
            io: Some(io),
            buf,
            state: match framing {
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::Chunked(Chunked::default()),
                Framing::UntilClose => State::UntilClose,
            },
            reusable,
            home,
            slot,
        };
        if body.state == State::Length(0) {
            body.end();
        }
        body
    }

    /// The next body bytes already read, if any; ends the body when the
    /// bytes read say it ended.
    fn decode(&mut self) -> Result<Option<Bytes>, H1Error> {
        let data = match self.state {
            State::Done => return Ok(None),
            State::Length(left) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let left = left - n as u64;
                self.state = State::Length(left);
                let data = self.buf.split_to(n).freeze();
                if left == 0 {
                    self.end();
                }
                data
            }
            State::Chunked(mut chunked) => {
                let decoded = chunked.decode(&mut self.buf);
                self.state = State::Chunked(chunked);
                match decoded? {
                    Decoded::Data(data) => data,
                    Decoded::NeedMore => return Ok(None),
                    Decoded::End => {
                        self.end();
                        return Ok(None);
                    }
                }
            }
            State::UntilClose => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.buf.split().freeze()
            }
        };
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        Ok(Some(data))
    }

    /// The body ended: its socket goes back to the worker's list when the
    /// answer left it fit for another request and nothing followed it.
    fn end(&mut self) {
        self.state = State::Done;
        if let Some(io) = self.io.take()
            && self.reusable
            && self.buf.is_empty()
        {
            self.home.checkin(self.slot, io);
        }
        self.buf = BytesMut::new();
    }

    /// The body failed: its socket is closed.
    fn fail(&mut self, error: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.state = State::Done;
        self.io = None;
        self.buf = BytesMut::new();
        Poll::Ready(Some(Err(error)))
    }

    /// How much the next read asks for.
    fn read_size(&self) -> usize {
        match self.state {
            State::Length(left) => usize::try_from(left).unwrap_or(MAX_READ).min(MAX_READ),
            // Inside a large chunk: the rest of it, its CRLF and the next
            // size line in one read.
            State::Chunked(Chunked::Data(left)) => usize::try_from(left)
                .unwrap_or(MAX_READ)
                .saturating_add(32)
                .clamp(STREAM_READ, MAX_READ),
            _ => STREAM_READ.max(self.buf.len()),
        }
    }
}

impl Body for OwnedBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            match this.decode() {
                Err(e) => return this.fail(e),
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if this.state == State::Done => return Poll::Ready(None),
                Ok(None) => {}
            }
            let size = this.read_size();
            let Some(io) = &mut this.io else {
                return Poll::Ready(None);
            };
            // Readiness first, so a stream waiting for its next event holds
            // no buffer; then one read, which (unlike `try_read_buf`) takes
            // a short read as the socket drained, sparing a read that
            // would only say "would block".
            if let Err(e) = ready!(io.poll_read_ready(cx)) {
                return this.fail(e.into());
            }
            this.buf.reserve(size);
            let read = pin!(io.read_buf(&mut this.buf)).poll(cx);
            match read {
                Poll::Ready(Ok(0)) if this.state == State::UntilClose => {
                    // The close is the end: nothing to give back.
                    this.reusable = false;
                    this.end();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(H1Error::ClosedMidBody),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(e.into()),
                Poll::Pending => {
                    if this.buf.is_empty() {
                        this.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(left) => SizeHint::with_exact(left),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
