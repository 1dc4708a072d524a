//! Writing an answer's body on an HTTP/1.1 connection: what the body has
//! ready is gathered, framed, and written in one call, and nothing is held
//! while a stream waits for its next event. A client that stops reading is
//! closed once a write has waited `stall` with nothing taken: otherwise it
//! would hold its request, the upstream call behind it and an in-flight
//! slot for as long as it liked.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body;
use tokio::net::TcpStream;

use super::head::{self, AnswerFraming};
use super::{ConnError, read_ready};

/// Body bytes gathered before they are written, when the body has more
/// ready at once.
const WRITE_AT: usize = 64 * 1024;

/// Writes `out` (the answer's head) and the answer's body, framed as
/// `framing`: what the body has ready is gathered and written in one call,
/// and nothing is held once the body has nothing more ready, so a stream's
/// events go out as they come. While the body waits, the connection is
/// watched: a client that hangs up ends the answer (and the upstream call
/// behind it), and so does one that takes nothing written for `stall`.
pub(super) async fn write_body<B>(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    body: &mut B,
    framing: AnswerFraming,
    stall: Duration,
) -> Result<(), ConnError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut gather = Gather {
        framing,
        written: 0,
        ended: framing == AnswerFraming::Empty,
    };
    loop {
        if !gather.ended {
            let watching = out.is_empty() && buf.len() < head::MAX_HEAD_BYTES;
            tokio::select! {
                biased;
                gathered = poll_fn(|cx| {
                    let polled = gather.poll(Pin::new(&mut *body), cx, out);
                    if polled.is_pending() {
                        // A stream waiting for its next event holds no
                        // buffer: of 10,000 open streams, each one's 6 KiB.
                        release(out);
                        release(buf);
                    }
                    polled
                }) => gathered?,
                // Readiness first, so that the wait holds no buffer.
                ready = io.readable(), if watching => {
                    ready?;
                    if read_ready(io, buf)? == Some(0) {
                        return Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted).into());
                    }
                }
            }
        }
        if !out.is_empty() {
            write_within(io, out, stall).await?;
        }
        if gather.ended {
            out.clear();
            return Ok(());
        }
    }
}

/// Writes all of `out`, or fails once the client has taken none of it
/// for `stall`. Most writes go at once; only one that must wait for the
/// client arms a timer, so the common answer costs the timer wheel nothing.
pub(super) async fn write_within(
    io: &mut TcpStream,
    out: &mut BytesMut,
    stall: Duration,
) -> io::Result<()> {
    while !out.is_empty() {
        match io.try_write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall, io.writable())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the client read nothing for {} ms", stall.as_millis()),
                        )
                    })??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Lets go of an empty buffer's memory.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Gathers an answer's ready frames into the write buffer.
struct Gather {
    framing: AnswerFraming,
    /// Body bytes gathered so far.
    written: u64,
    ended: bool,
}

impl Gather {
    /// Ready once something was gathered or the body ended; pending only
    /// while the body has nothing ready and nothing waits to be written.
    fn poll<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
    ) -> Poll<Result<(), ConnError>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        while out.len() < WRITE_AT {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers: HTTP/1.1 answers here carry none.
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.written += data.len() as u64;
                    match self.framing {
                        AnswerFraming::Chunked => {
                            let mut size = [0u8; 16];
                            let digits = hex(data.len(), &mut size);
                            out.put_slice(digits);
                            out.put_slice(b"\r\n");
                            out.put_slice(&data);
                            out.put_slice(b"\r\n");
                        }
                        AnswerFraming::Length(n) if self.written > n => {
                            return Poll::Ready(Err(ConnError::Length));
                        }
                        _ => out.put_slice(&data),
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(ConnError::Body(e.into()))),
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(match self.framing {
                        AnswerFraming::Chunked => {
                            out.put_slice(b"0\r\n\r\n");
                            Ok(())
                        }
                        AnswerFraming::Length(n) if self.written != n => Err(ConnError::Length),
                        _ => Ok(()),
                    });
                }
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// `n` in lowercase hex, without leading zeros.
pub(super) fn hex(mut n: usize, out: &mut [u8; 16]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &out[at..];
        }
    }
}
