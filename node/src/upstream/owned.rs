//! HTTP/1.1 connections to a plain `http://` upstream, owned by the
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
//! nothing else would read the rest of that answer. TLS and HTTP/2
//! upstreams keep the pooled client.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{ErrorKind, IoSlice};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::OwnedBody;
use super::h1::{self, H1Error, Head, MAX_HEAD_BYTES, Parsed};
use super::{SendError, worker};

/// How long an unused connection is kept, as the pooled client does: an
/// upstream that closed it meanwhile is noticed when it is taken, but a
/// connection this old is likely closed and not worth the try.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The first read of an answer: a chat completion's head and body fit.
const FIRST_READ: usize = 4 * 1024;

struct Idle {
    io: TcpStream,
    since: Instant,
}

/// The owned connections of one upstream: one list of idle connections per
/// data-plane worker. Each list is only ever taken by its own worker's
/// thread, so its lock is never contended (a task off the data-plane
/// threads shares the first worker's, and the lock keeps that correct).
pub struct Owned {
    connector: HttpConnector,
    /// The scheme and authority alone: what the connector dials.
    dial: Uri,
    /// The `host` field every request carries.
    host: HeaderValue,
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    max_idle: usize,
}

/// Why one exchange failed, and whether the request surely did not reach
/// the upstream (so it may go on another connection).
struct Failed {
    error: H1Error,
    unsent: bool,
}

impl Owned {
    /// The owned path for `base`, when it is a plain `http://` URL with a
    /// host; `None` sends the upstream's requests through the pooled client.
    pub fn new(
        base: &Uri,
        connector: HttpConnector,
        workers: usize,
        max_idle: usize,
    ) -> Option<Owned> {
        if base.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let authority: &Authority = base.authority()?;
        let dial = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .ok()?;
        // As the pooled client writes it: the port only when it is not 80.
        let host = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        Some(Owned {
            connector,
            dial,
            host: HeaderValue::from_str(&host).ok()?,
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
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
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
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
    fn checkout(&self, slot: usize) -> Option<TcpStream> {
        let mut idle = self.idle[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { io, since }) = idle.pop_back() {
            if since.elapsed() < IDLE_TIMEOUT && quiet(&io) {
                return Some(io);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read whole, dropping (closing)
    /// the oldest ones past their time and any beyond `max_idle`.
    pub(super) fn checkin(&self, slot: usize, io: TcpStream) {
        let now = Instant::now();
        let mut idle = self.idle[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle { io, since: now });
        }
    }

    async fn connect(&self) -> Result<TcpStream, SendError> {
        let io = tower_service::Service::call(&mut self.connector.clone(), self.dial.clone())
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        Ok(io.into_inner())
    }

    /// Idle connections held by the current worker (for tests).
    #[cfg(test)]
    pub(super) fn idle_here(&self) -> usize {
        self.idle[self.slot()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Whether an idle connection has nothing to say: no close, no reset, no
/// stray bytes. Costs no system call while the socket has not become
/// readable since it was last read dry.
fn quiet(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Writes the request and reads the answer's head. Nearly every request
/// goes out in one `writev` at once; one the socket cannot take whole is
/// written while the answer is read, so an upstream that answers early (a
/// 413 for a large body) is heard, and its connection is then not reused.
async fn exchange(
    io: &mut TcpStream,
    head: &[u8],
    body: &Bytes,
    head_request: bool,
) -> Result<(Head, BytesMut), Failed> {
    let total = head.len() + body.len();
    let written = match io.try_write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        // Refused at the first write: the upstream closed the connection,
        // and not a byte of this request went out.
        Err(e) => {
            return Err(Failed {
                error: e.into(),
                unsent: true,
            });
        }
    };
    let sent = |error| Failed {
        error,
        unsent: false,
    };
    if written == total {
        return read_head(io, head_request).await.map_err(sent);
    }
    let mut rest = Buf::chain(head, &body[..]);
    rest.advance(written);
    let (mut reader, mut writer) = io.split();
    let mut write = pin!(writer.write_all_buf(&mut rest));
    let mut read = pin!(read_head(&mut reader, head_request));
    let mut wrote = false;
    let (mut answer, buf) = poll_fn(|cx| {
        if !wrote {
            match write.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => wrote = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(sent(e.into()))),
                Poll::Pending => {}
            }
        }
        read.as_mut().poll(cx).map_err(sent)
    })
    .await?;
    // Answered before the request was written whole: what the upstream
    // makes of the rest is unknown.
    answer.reusable &= wrote;
    Ok((answer, buf))
}

/// Reads until the answer's final head, skipping interim (1xx) answers.
/// What was read past the head is the start of the body.
async fn read_head<R: AsyncRead + Unpin>(
    io: &mut R,
    head_request: bool,
) -> Result<(Head, BytesMut), H1Error> {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let mut interim = 0;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().max(FIRST_READ));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(H1Error::ClosedBeforeHead);
        }
        loop {
            match h1::parse_head(&buf, head_request)? {
                Parsed::Partial => break,
                Parsed::Interim(len) => {
                    interim += len;
                    if interim > MAX_HEAD_BYTES {
                        return Err(H1Error::HeadTooLarge);
                    }
                    buf.advance(len);
                }
                Parsed::Final(len, head) => {
                    buf.advance(len);
                    return Ok((head, buf));
                }
            }
        }
    }
}
