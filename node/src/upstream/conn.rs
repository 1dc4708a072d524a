//! One connection the worker owns to an upstream: a plain TCP socket, or
//! TLS over one (rustls). The HTTP/1.1 codec above it ([`super::owned`],
//! [`super::body`]) does not care which; what differs is how a connection
//! is opened and how an idle one is checked for a close.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::uri::Authority;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tls_stream::TlsStream;

/// An owned upstream connection.
pub enum Conn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`, boxed: rustls's state is large, and most idle lists
    /// hold plain sockets.
    Tls(Box<TlsStream>),
}

/// What an `https://` upstream's connections need beyond the socket: the
/// TLS settings (HTTP/1.1 alone offered by ALPN), the name its
/// certificate must carry, and how long its handshake may take.
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
}

impl Tls {
    /// TLS to `authority`'s host under `config`, each handshake within
    /// `timeout` (the node's connect timeout: an upstream that accepts and
    /// never answers is a connection that failed, not an attempt that
    /// waits for its first byte); `None` when the host is no DNS name or IP
    /// address a certificate could be checked against.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        authority: &Authority,
        timeout: Duration,
    ) -> Option<Tls> {
        // An IPv6 literal is written in brackets in a URL, not in a name.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Some(Tls {
            config,
            name: ServerName::try_from(host.to_owned()).ok()?,
            timeout,
        })
    }

    /// Runs the handshake on a fresh socket. Nothing of a request has gone
    /// out when it fails, so the request may go elsewhere.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<Conn> {
        let mut stream = Box::new(TlsStream::new(tcp, self.config.clone(), self.name.clone())?);
        let handshake = poll_fn(|cx| stream.poll_handshake(cx));
        tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Conn::Tls(stream))
    }
}

impl Conn {
    /// Whether an idle connection has nothing to say: no close, no reset,
    /// no stray bytes. Costs no system call while the socket has not
    /// become readable since it was last read dry. Over TLS the records
    /// that did arrive are read: a session ticket is taken in and the
    /// connection stays quiet; a `close_notify` or any data is not.
    pub fn quiet(&mut self) -> bool {
        match self {
            Conn::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Conn::Tls(tls) => {
                // Nobody waits on this poll: the request that takes the
                // connection registers its own waker with its first read.
                let mut cx = Context::from_waker(Waker::noop());
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(&mut **tls)
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }

    /// Waits until a read would find something, when that can be known
    /// without reading: for a plain socket, so a stream waiting for its
    /// next event holds no buffer. TLS may hold decrypted bytes already,
    /// so it is always ready (its read says `Pending` itself).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Conn::Plain(tcp) => tcp.poll_read_ready(cx),
            Conn::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(tcp) => tcp.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
