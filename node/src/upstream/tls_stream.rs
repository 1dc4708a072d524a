//! TLS to an upstream over rustls's unbuffered API, so that a connection
//! waiting for its next event holds no buffer.
//!
//! rustls's buffered connection (what tokio-rustls drives) keeps a 4 KiB
//! record buffer, zero-filled and so resident, for the connection's whole
//! life, whatever it is doing. A node holding 10,000 streams open to one
//! provider holds 10,000 such connections, nearly all of them waiting for
//! the provider's next chunk: 40 MB of buffers with nothing in them. Here
//! the connection owns its buffers: what arrived and is not yet a whole
//! record, what is encrypted and not yet written, and the part of a record
//! the reader had no room for; each is released once it is empty, so a
//! waiting connection holds rustls's state and the ciphers' keys alone.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much a read asks of the socket: a record is at most 16 KiB and
/// most answers' heads and SSE events are far smaller.
const READ_SIZE: usize = 4 * 1024;

/// How much plaintext one write takes; the caller writes the rest next.
/// Four full records: what is encrypted and not yet written is bounded.
const MAX_WRITE: usize = 4 * 16 * 1024;

/// One TLS client connection over TCP.
pub struct TlsStream {
    tcp: TcpStream,
    tls: UnbufferedClientConnection,
    /// Received and not yet processed: the start of a record, most often
    /// nothing.
    incoming: Vec<u8>,
    /// Encrypted and not yet written, from `sent` on.
    outgoing: Vec<u8>,
    sent: usize,
    /// Decrypted and not yet read, from `taken` on: the rest of a record
    /// that did not fit the reader's buffer.
    plaintext: Vec<u8>,
    taken: usize,
    /// The peer sent `close_notify`: after what was decrypted, reads end.
    peer_closed: bool,
    /// Ours is queued.
    close_sent: bool,
}

/// Where processing what arrived stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// The handshake waits for the peer's next message.
    Blocked,
    /// Established, and everything that arrived is processed.
    Open,
    /// The reader's buffer is full and more records wait.
    Full,
    /// The peer closed the connection cleanly.
    Closed,
}

/// What to do once the connection may send application data.
enum Send<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

impl TlsStream {
    /// A client connection to `name` over `tcp`; [`Self::poll_handshake`]
    /// runs the handshake.
    pub fn new(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let tls = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        Ok(TlsStream {
            tcp,
            tls,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            plaintext: Vec::new(),
            taken: 0,
            peer_closed: false,
            close_sent: false,
        })
    }

    /// Drives the handshake until application data may be sent.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let step = self.process(None, Send::Nothing)?;
            ready!(self.poll_send(cx))?;
            match step {
                Step::Open | Step::Full => return Poll::Ready(Ok(())),
                Step::Closed => return Poll::Ready(Err(eof("during the TLS handshake"))),
                Step::Blocked => {
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(eof("during the TLS handshake")));
                    }
                }
            }
        }
    }

    /// Bytes this connection holds in buffers of its own: none while it
    /// waits with nothing half-read or half-written.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plaintext.capacity()
    }

    /// Lets rustls process what has arrived: handshake messages are
    /// answered (into `outgoing`), application data goes to `dst` while it
    /// has room and the rest of its record to `plaintext`, and once the
    /// connection is established `send` is encrypted into `outgoing`.
    fn process(&mut self, mut dst: Option<&mut ReadBuf<'_>>, send: Send<'_>) -> io::Result<Step> {
        let mut send = Some(send);
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.tls.process_tls_records(&mut self.incoming);
            let step = match state.map_err(tls_error)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while dst.as_ref().is_none_or(|d| d.remaining() > 0) {
                        let Some(record) = traffic.next_record() else {
                            break;
                        };
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        let payload = record.payload;
                        let fits = dst.as_ref().map_or(0, |d| d.remaining().min(payload.len()));
                        if let Some(d) = dst.as_mut() {
                            d.put_slice(&payload[..fits]);
                        }
                        self.plaintext.extend_from_slice(&payload[fits..]);
                    }
                    // More records than room: they wait in rustls.
                    traffic.peek_len().map(|_| Step::Full)
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing, 1024, |out| encode.encode(out))?;
                    None
                }
                // What was encoded is in `outgoing`, which is written
                // before this connection waits for anything.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Step::Blocked),
                ConnectionState::WriteTraffic(mut write) => {
                    match send.take().unwrap_or(Send::Nothing) {
                        Send::Nothing => {}
                        Send::Data(data) => {
                            let guess = data.len() + 64 * (data.len() / (16 * 1024) + 1);
                            append(&mut self.outgoing, guess, |out| write.encrypt(data, out))?;
                        }
                        Send::CloseNotify => {
                            append(&mut self.outgoing, 64, |out| write.queue_close_notify(out))?;
                        }
                    }
                    Some(Step::Open)
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed = true;
                    Some(Step::Closed)
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS state for a client",
                    ));
                }
            };
            self.incoming.drain(..discard);
            if let Some(step) = step {
                return Ok(step);
            }
        }
    }

    /// Reads what the socket has into `incoming`: the number of bytes, 0 at
    /// its end. While nothing has arrived, `incoming` is released. What it
    /// holds is bounded by rustls, which takes every whole record as it
    /// comes and refuses a handshake message over 64 KiB by its header.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            if self.tcp.poll_read_ready(cx)?.is_pending() {
                if self.incoming.is_empty() {
                    self.incoming = Vec::new();
                }
                return Poll::Pending;
            }
            self.incoming.reserve(READ_SIZE);
            match self.tcp.try_read_buf(&mut self.incoming) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes all of `outgoing`, then releases it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts `data` into `outgoing`: accepted once encrypted, written
    /// out by [`Self::poll_send_some`] or a flush. What waits unwritten is
    /// bounded: past [`MAX_WRITE`] it is written first.
    fn poll_encrypt(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.outgoing.len() - self.sent >= MAX_WRITE {
            ready!(self.poll_send(cx))?;
        }
        // What the socket took is dropped, so a long upload holds at most
        // what waits.
        if self.sent > 0 {
            self.outgoing.drain(..self.sent);
            self.sent = 0;
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        if self.process(None, Send::Data(data))? == Step::Blocked {
            return Poll::Ready(Err(io::Error::other("TLS handshake not complete")));
        }
        Poll::Ready(Ok(data.len()))
    }

    /// Writes what the socket takes now of what was encrypted, so a writer
    /// that accepted `written` bytes need not wait for a flush: `Pending`
    /// is fine, the bytes are ours and the waker is set.
    fn poll_send_some(&mut self, cx: &mut Context<'_>, written: usize) -> Poll<io::Result<usize>> {
        match self.poll_send(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(written)),
        }
    }
}

/// What rustls says when the slice it was given is too small.
trait TooSmall: std::fmt::Display {
    /// The size it needs, when that is what went wrong.
    fn required(&self) -> Option<usize>;
}

impl TooSmall for EncodeError {
    fn required(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(e) => Some(e.required_size),
            _ => None,
        }
    }
}

impl TooSmall for EncryptError {
    fn required(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(e) => Some(e.required_size),
            _ => None,
        }
    }
}

/// Appends to `out` what `f` writes into the slice it is given: `guess`
/// bytes first, then as many as rustls asks for.
fn append<E: TooSmall>(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(e) => {
                out.truncate(start);
                match e.required() {
                    Some(need) if need > room => room = need,
                    _ => return Err(io::Error::other(e.to_string())),
                }
            }
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn eof(when: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the upstream closed the connection {when}"),
    )
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.taken < this.plaintext.len() {
            let rest = &this.plaintext[this.taken..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.taken += n;
            if this.taken == this.plaintext.len() {
                this.plaintext = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        loop {
            this.process(Some(buf), Send::Nothing)?;
            // A key update's answer, say: sent now if the socket takes it,
            // else by the next write.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            if buf.filled().len() > before || this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if ready!(this.poll_receive(cx))? == 0 {
                return Poll::Ready(Err(eof("without a TLS close_notify")));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(this.poll_encrypt(cx, buf))?;
        this.poll_send_some(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Each slice its own record, all in one write to the socket.
        let this = self.get_mut();
        let mut taken = 0;
        for slice in bufs.iter().filter(|s| !s.is_empty()) {
            if taken > 0 && taken + slice.len() > MAX_WRITE {
                break;
            }
            match this.poll_encrypt(cx, slice) {
                Poll::Ready(Ok(n)) => {
                    taken += n;
                    if n < slice.len() {
                        break;
                    }
                }
                Poll::Ready(Err(e)) if taken == 0 => return Poll::Ready(Err(e)),
                Poll::Pending if taken == 0 => return Poll::Pending,
                _ => break,
            }
        }
        this.poll_send_some(cx, taken)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            this.process(None, Send::CloseNotify)?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
