//! HTTP/1.1 connections to an upstream, plain or over TLS, owned by the
//! data-plane worker and spoken to by the request that uses them.
//!
//! hyper-util's pooled client runs every connection as a task of its own
//! and hands each request to it through a pool shared by all tasks: a lock,
//! a hash lookup, a checkout future and a trip through the scheduler each
//! way; and hyper's client connection allocates, whatever the answer, a
//! dispatch channel and two 8 KiB buffers (about 26 KB per connection,
//! which 10,000 open streams pay 10,000 times). Here a request takes an
//! idle socket from its own worker's list, writes its head and body in one
//! `writev`, and reads the answer's head itself ([`super::h1`]); the
//! answer's body ([`OwnedBody`]) reads the same socket wherever it is
//! polled, and puts the socket back in the list once the body is read to
//! its end. A body dropped before its end closes the socket, as it must:
//! nothing else would read the rest of that answer. Upstreams configured
//! for HTTP/2 keep the pooled client.
//!
//! A worker's list is also swept while it holds anything ([`SWEEP_EVERY`]):
//! a worker that gets no more requests for an upstream would otherwise keep
//! its idle sockets forever, those the upstream closed included (each a
//! descriptor in `CLOSE_WAIT`, and its memory), since only a request
//! taking or giving back a socket looked at the list.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{ErrorKind, IoSlice};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use super::body::OwnedBody;
use super::conn::{Conn, Tls};
use super::h1::{self, H1Error, Head, MAX_HEAD_BYTES, Parsed};
use super::{SendError, worker};

/// How long an unused connection is kept, as the pooled client does: an
/// upstream that closed it meanwhile is noticed when it is taken, but a
/// connection this old is likely closed and not worth the try.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often a worker's list of idle connections is swept while it holds
/// any: one closed by the upstream is closed here within this long, one
/// unused for [`IDLE_TIMEOUT`] within this long after.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The first read of an answer: a chat completion's head and body fit.
const FIRST_READ: usize = 4 * 1024;

struct Idle {
    io: Conn,
    since: Instant,
}

impl Idle {
    /// Fit to carry a request at `now`: young enough, and nothing has
    /// arrived on it (the upstream did not close it or write unasked).
    fn usable(&mut self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_TIMEOUT && self.io.quiet()
    }
}

/// One worker's idle connections to the upstream.
#[derive(Default)]
struct Slot {
    /// The most recently given back last.
    idle: VecDeque<Idle>,
    /// A sweeper task runs for this list (it stops once the list is empty,
    /// and the next connection given back starts another).
    swept: bool,
}

/// The owned connections of one upstream: one list of idle connections per
/// data-plane worker. Each list is only ever taken by its own worker's
/// thread, so its lock is never contended (a task off the data-plane
/// threads shares the first worker's, and the lock keeps that correct).
pub struct Owned {
    connector: HttpConnector,
    /// The authority alone, its port always written: what the connector
    /// dials (as `http://`: TLS is ours to add).
    dial: Uri,
    /// For an `https://` upstream.
    tls: Option<Tls>,
    /// The `host` field every request carries.
    host: HeaderValue,
    idle: Box<[Mutex<Slot>]>,
    max_idle: usize,
}

/// Why one exchange failed, and whether the request surely did not reach
/// the upstream (so it may go on another connection).
struct Failed {
    error: H1Error,
    unsent: bool,
}

impl Owned {
    /// The owned path for `base`, an `http://` URL, or an `https://` one
    /// spoken to under `tls` (which should offer HTTP/1.1 alone by ALPN),
    /// its handshake bounded by `connect_timeout` as the connector bounds
    /// the TCP connect; `None` for any other scheme or a URL with no usable
    /// host.
    pub fn new(
        base: &Uri,
        tls: &Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        connector: HttpConnector,
        workers: usize,
        max_idle: usize,
    ) -> Option<Owned> {
        let authority: &Authority = base.authority()?;
        let (default_port, tls) = match base.scheme() {
            Some(s) if *s == Scheme::HTTP => (80, None),
            Some(s) if *s == Scheme::HTTPS => (
                443,
                Some(Tls::new(tls.clone(), authority, connect_timeout)?),
            ),
            _ => return None,
        };
        let port = authority.port_u16().unwrap_or(default_port);
        let dial = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(format!("{}:{port}", authority.host()))
            .path_and_query("/")
            .build()
            .ok()?;
        // As the pooled client writes it: the port only when it is not the
        // scheme's own.
        let host = if port == default_port {
            authority.host().to_owned()
        } else {
            format!("{}:{port}", authority.host())
        };
        Some(Owned {
            connector,
            dial,
            tls,
            host: HeaderValue::from_str(&host).ok()?,
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
            max_idle,
        })
    }

    fn slot(&self) -> usize {
        worker().min(self.idle.len() - 1)
    }

    /// Sends `request` on an idle connection of this worker, or a new one,
    /// and returns the answer's head with a body that reads the rest. A
    /// reused connection found closed when the request was written costs
    /// nothing: the request goes on another.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<OwnedBody>, SendError> {
        let (parts, mut body) = request.into_parts();
        // A `Full` is one frame at most: taken as it is, where collecting
        // it would queue it first.
        let body = match body.frame().await {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            Some(Err(never)) => match never {},
            None => Bytes::new(),
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(512);
        h1::encode_head(
            &parts.method,
            target,
            &self.host,
            &parts.headers,
            body.len(),
            &mut head,
        );
        let head_request = parts.method == Method::HEAD;
        let slot = self.slot();
        loop {
            let (mut io, reused) = match self.checkout(slot) {
                Some(io) => (io, true),
                None => (self.connect().await?, false),
            };
            match exchange(&mut io, &head, &body, head_request).await {
                Ok((answer, buf)) => {
                    let Head {
                        status,
                        headers,
                        framing,
                        reusable,
                    } = answer;
                    let body = OwnedBody::new(io, buf, framing, reusable, self.clone(), slot);
                    let mut response = Response::new(body);
                    *response.status_mut() = status;
                    *response.headers_mut() = headers;
                    return Ok(response);
                }
                Err(Failed { unsent: true, .. }) if reused => continue,
                Err(Failed { error, .. }) => return Err(SendError::Exchange(error)),
            }
        }
    }

    /// The most recently used idle connection that is still open and young
    /// enough.
    fn checkout(&self, slot: usize) -> Option<Conn> {
        let mut held = self.idle[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some(mut idle) = held.idle.pop_back() {
            if idle.usable(now) {
                return Some(idle.io);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read whole, dropping (closing)
    /// the oldest ones past their time and any beyond `max_idle`; starts
    /// the list's sweeper on the current runtime if none runs.
    pub(super) fn checkin(self: &Arc<Self>, slot: usize, io: Conn) {
        let now = Instant::now();
        let sweep = {
            let mut held = self.idle[slot]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while held
                .idle
                .front()
                .is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_TIMEOUT)
            {
                held.idle.pop_front();
            }
            if held.idle.len() < self.max_idle {
                held.idle.push_back(Idle { io, since: now });
            }
            // Off any runtime (a body read to its end by a plain thread)
            // the list is looked at when next used, as before.
            let runtime = (!held.swept && !held.idle.is_empty())
                .then(tokio::runtime::Handle::try_current)
                .and_then(Result::ok);
            held.swept |= runtime.is_some();
            runtime
        };
        if let Some(runtime) = sweep {
            let home = Arc::downgrade(self);
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    let Some(home) = home.upgrade() else { return };
                    if !home.sweep(slot, Instant::now()) {
                        return;
                    }
                }
            });
        }
    }

    /// Closes the connections of `slot` unused for [`IDLE_TIMEOUT`] at
    /// `now`, and those that are no longer quiet (closed by the upstream,
    /// or sent bytes nobody asked for). Returns whether any is left; if
    /// not, the sweeper stops and the list's memory is freed.
    fn sweep(&self, slot: usize, now: Instant) -> bool {
        let mut held = self.idle[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.idle.retain_mut(|idle| idle.usable(now));
        if held.idle.is_empty() {
            held.idle = VecDeque::new();
            held.swept = false;
        }
        held.swept
    }

    /// A new connection: TCP, then TLS's handshake for `https://`. A
    /// failure of either sent nothing.
    async fn connect(&self) -> Result<Conn, SendError> {
        let io = tower_service::Service::call(&mut self.connector.clone(), self.dial.clone())
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        let tcp = io.into_inner();
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some(tls) => tls
                .handshake(tcp)
                .await
                .map_err(|e| SendError::Connect(Box::new(e))),
        }
    }

    /// Idle connections held by the current worker (for tests).
    #[cfg(test)]
    pub(super) fn idle_here(&self) -> usize {
        self.here(|held| held.idle.len())
    }

    /// Whether the current worker's list has its sweeper (for tests).
    #[cfg(test)]
    pub(super) fn swept_here(&self) -> bool {
        self.here(|held| held.swept)
    }

    #[cfg(test)]
    fn here<R>(&self, read: impl FnOnce(&Slot) -> R) -> R {
        read(
            &self.idle[self.slot()]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// Writes the request and reads the answer's head, in one future polled
/// by the request: nearly every request goes out in one `writev` at its
/// first poll; one the connection cannot take whole is written while the
/// answer is read, so an upstream that answers early (a 413 for a large
/// body) is heard, and its connection is then not reused.
async fn exchange(
    io: &mut Conn,
    head: &[u8],
    body: &Bytes,
    head_request: bool,
) -> Result<(Head, BytesMut), Failed> {
    let mut rest = Buf::chain(head, &body[..]);
    let mut wrote_any = false;
    let mut flushed = false;
    let mut reader = HeadReader::new(head_request);
    let (mut answer, buf) = poll_fn(|cx| {
        if !flushed {
            match poll_write_all(io, &mut rest, &mut wrote_any, cx) {
                Poll::Ready(Ok(())) => flushed = true,
                // Refused before a byte went out: the upstream closed the
                // connection, and the request may go on another.
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(Failed {
                        error: e.into(),
                        unsent: !wrote_any,
                    }));
                }
                Poll::Pending => {}
            }
        }
        reader.poll(io, cx).map_err(|error| Failed {
            error,
            unsent: false,
        })
    })
    .await?;
    // Answered before the request was written whole: what the upstream
    // makes of the rest is unknown.
    answer.reusable &= flushed;
    Ok((answer, buf))
}

/// Writes what is left of `rest`, vectored, then flushes (which is what
/// sends TLS records rustls still holds); `wrote_any` is set once the
/// connection took a byte.
fn poll_write_all(
    io: &mut Conn,
    rest: &mut impl Buf,
    wrote_any: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    while rest.has_remaining() {
        let mut slices = [IoSlice::new(&[]); 2];
        let n = rest.chunks_vectored(&mut slices);
        match ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))? {
            0 => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
            written => {
                rest.advance(written);
                *wrote_any = true;
            }
        }
    }
    Pin::new(io).poll_flush(cx)
}

/// Reads until the answer's final head, skipping interim (1xx) answers.
/// What was read past the head is the start of the body.
struct HeadReader {
    buf: BytesMut,
    interim: usize,
    head_request: bool,
}

impl HeadReader {
    fn new(head_request: bool) -> Self {
        HeadReader {
            buf: BytesMut::new(),
            interim: 0,
            head_request,
        }
    }

    fn poll(
        &mut self,
        io: &mut Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(Head, BytesMut), H1Error>> {
        loop {
            if self.buf.capacity() == 0 {
                // Readiness first: a request waiting for its first byte
                // (a model thinking, for seconds) holds no buffer.
                ready!(io.poll_read_ready(cx))?;
            }
            if self.buf.len() == self.buf.capacity() {
                self.buf.reserve(self.buf.len().max(FIRST_READ));
            }
            if ready!(pin!(io.read_buf(&mut self.buf)).poll(cx))? == 0 {
                return Poll::Ready(Err(H1Error::ClosedBeforeHead));
            }
            loop {
                match h1::parse_head(&mut self.buf, self.head_request)? {
                    Parsed::Partial => break,
                    Parsed::Interim(len) => {
                        self.interim += len;
                        if self.interim > MAX_HEAD_BYTES {
                            return Poll::Ready(Err(H1Error::HeadTooLarge));
                        }
                        self.buf.advance(len);
                    }
                    Parsed::Final(head) => {
                        return Poll::Ready(Ok((head, std::mem::take(&mut self.buf))));
                    }
                }
            }
        }
    }
}
