//! The data plane's HTTP/1.1 server, in place of hyper's: one loop per
//! connection that reads a head, calls the proxy, and writes its answer,
//! on the worker that accepted the connection. Measured on this workload
//! (issue #13), hyper's server with its dispatcher, its per-connection
//! buffers and its `date` upkeep was about a sixth of a request's CPU.
//! h2c (prior knowledge) connections still go to hyper: they are told
//! apart by their preface.
//!
//! What it keeps of hyper's behaviour: keep-alive and pipelining in order,
//! `100 Continue` when the body is first needed, bodies chunked or by
//! length, a client that hangs up drops its request (and the upstream
//! call with it), answers chunked or by length, and a graceful close on
//! shutdown. A connection whose request framing is refused, or whose body
//! was not read to its end, is closed after its answer.

mod body;
mod date;
mod head;
#[cfg(test)]
mod memory_tests;
mod rewind;
#[cfg(test)]
mod tests;
mod write;
#[cfg(test)]
mod write_tests;

pub use body::{BodyError, RequestBody};

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response, Version};
use http_body::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::limits::{Activity, Limits};
use body::{Feed, FeedState};
use head::{AnswerFraming, HeadError};
use write::{write_body, write_within};

pub(super) use date::keep_fresh as keep_date_fresh;
pub(super) use rewind::Rewind;

/// The h2 connection preface's first bytes: a connection that starts with
/// them is h2c, anything else HTTP/1.x.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Bytes read from the socket at a time, once a connection needs more
/// than its first buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Room for an answer's head (and whatever of its body comes with it)
/// before it is encoded.
const ANSWER_HEAD: usize = 2048;

/// A connection's first read buffer.
const FIRST_READ: usize = 4096;

/// How long, and how much, a connection closed with an unread body is
/// still read so that the client sees its answer rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// What a connection turned out to speak.
pub(super) enum Protocol {
    /// HTTP/1.x: served here.
    Http1(BytesMut),
    /// h2c: handed to hyper with the bytes already read.
    H2(Bytes),
    /// Closed (or told to close) before it said anything.
    Gone,
}

/// Reads the connection's first bytes to tell h2c from HTTP/1.x. The
/// header timeout, the idle timeout and shutdown bound the wait as they
/// bound a head's.
pub(super) async fn sniff(
    io: &mut TcpStream,
    activity: &Activity,
    limits: &Limits,
) -> std::io::Result<Protocol> {
    // Nothing is allocated until the client sends: a connection that
    // never does holds no buffer. Small at first, then: an open stream
    // holds its connection's buffers for its whole life, and a request
    // head is a few hundred bytes.
    let mut buf = BytesMut::new();
    let mut closing = pin!(activity.closing.wait());
    let deadline = limits
        .close_at(activity.born, activity.state())
        .unwrap_or_else(|| activity.born + limits.idle_timeout);
    let mut timer = pin!(tokio::time::sleep_until(deadline));
    loop {
        let seen = buf.len().min(H2_PREFACE.len());
        if buf[..seen] != H2_PREFACE[..seen] {
            return Ok(Protocol::Http1(buf));
        }
        if seen == H2_PREFACE.len() {
            return Ok(Protocol::H2(buf.freeze()));
        }
        tokio::select! {
            biased;
            ready = io.readable() => ready?,
            _ = closing.as_mut() => return Ok(Protocol::Gone),
            () = timer.as_mut() => return Ok(Protocol::Gone),
        }
        if read_ready(io, &mut buf)? == Some(0) {
            return Ok(Protocol::Gone);
        }
    }
}

/// One read into `buf` once `io` said it is readable, room made first
/// (the buffer is allocated only now: a wait for readiness holds none).
/// `None` when the readiness was stale and nothing could be read.
pub(super) fn read_ready(io: &TcpStream, buf: &mut BytesMut) -> std::io::Result<Option<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(FIRST_READ);
    }
    match io.try_read_buf(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a connection ended other than by a close of either side.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the answer's body failed: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("the answer's body was not the length its head said")]
    Length,
}

/// Serves HTTP/1.1 requests on `io` until either side closes it, starting
/// with the bytes already in `buf`. `service` answers each request; the
/// connection's own watchdog (its header and idle timeouts, and being told
/// to close) runs here between requests.
pub(super) async fn serve<S, Fut, B>(
    mut io: TcpStream,
    mut buf: BytesMut,
    service: S,
    activity: &Activity,
    limits: &Limits,
) -> Result<(), ConnError>
where
    S: Fn(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Result<Response<B>, std::convert::Infallible>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut closing = pin!(activity.closing.wait());
    let first = limits
        .close_at(activity.born, activity.state())
        .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
    // One timer for the connection's life, reset only when it fires: the
    // deadline it guards only ever moves later, so firing early and
    // checking again is right, and a request costs the timer wheel nothing.
    let mut timer = pin!(tokio::time::sleep_until(first));
    let mut out = BytesMut::new();
    loop {
        let head = loop {
            match head::parse(&mut buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(refused) => return refuse(io, refused, &mut out, &mut buf, limits).await,
            }
            if buf.capacity() - buf.len() < 1024 {
                // A buffer let go of while a stream waited starts small again.
                buf.reserve(if buf.is_empty() {
                    FIRST_READ
                } else {
                    READ_CHUNK.max(buf.len())
                });
            }
            tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => if read? == 0 {
                    return Ok(());
                },
                // Between requests a close, for whatever reason, is at once.
                _ = closing.as_mut() => return Ok(()),
                () = timer.as_mut() => {
                    let now = Instant::now();
                    match limits.close_at(activity.born, activity.state()) {
                        Some(at) if at <= now => return Ok(()),
                        Some(at) => timer.as_mut().reset(at),
                        None => timer.as_mut().reset(now + limits.idle_timeout),
                    }
                }
            }
        };
        let head::Head {
            request,
            framing,
            mut keep_alive,
            expect_continue,
        } = head;
        let (method, version) = (request.method().clone(), request.version());
        let (body, mut feed) = match framing {
            head::BodyFraming::Length(n) if n <= buf.len() as u64 => {
                let whole = buf
                    .split_to(usize::try_from(n).unwrap_or(usize::MAX))
                    .freeze();
                (RequestBody::whole(whole), None)
            }
            framing => {
                let (feed, body) = Feed::new(framing, expect_continue);
                (body, Some(feed))
            }
        };
        let mut told = false;
        // The answer's future lives in this block only: the proxy's is a
        // box of over 3 KB, and a streamed answer's body can run for
        // minutes after its head is ready.
        let response = {
            let mut answer = pin!(service(request.map(|()| body)));
            loop {
                let feeding = feed.as_ref().is_some_and(|f| f.state == FeedState::Reading);
                let watching = feeding || buf.len() < head::MAX_HEAD_BYTES;
                tokio::select! {
                    biased;
                    response = answer.as_mut() => break response,
                    // The body's next piece; once the body is read, a read is
                    // the client hanging up (the request is dropped, and its
                    // upstream call with it), or its next request, kept for
                    // later.
                    open = read_more(&mut feed, &mut io, &mut buf), if watching => if !open? {
                        return Ok(());
                    },
                    // The node is stopping: this request is answered, then the
                    // connection closes.
                    _ = closing.as_mut(), if !told => {
                        told = true;
                        keep_alive = false;
                    }
                }
            }
        };
        let Ok(response) = response;
        let unread = feed.as_ref().is_some_and(|f| !f.read_whole());
        keep_alive &= !unread;
        drop(feed);
        if activity.closing.why().is_some() {
            keep_alive = false;
        }
        let (parts, mut body) = response.into_parts();
        let framing = AnswerFraming::of(parts.status, &method, version, body.size_hint().exact());
        if framing == AnswerFraming::UntilClose {
            keep_alive = false;
        }
        out.reserve(ANSWER_HEAD);
        head::encode(
            parts.status,
            &parts.headers,
            framing,
            keep_alive,
            version == Version::HTTP_10,
            &date::now(),
            &mut out,
        );
        drop(parts);
        write_body(
            &mut io,
            &mut buf,
            &mut out,
            &mut body,
            framing,
            limits.idle_timeout,
        )
        .await?;
        drop(body);
        if !keep_alive {
            close(io, unread, &mut buf).await;
            return Ok(());
        }
    }
}

/// One step of the body's feed while it is being read, else a read of
/// what follows it; false when the client closed the connection.
async fn read_more(
    feed: &mut Option<Feed>,
    io: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    match feed {
        Some(feed) if feed.state == FeedState::Reading => {
            feed.step(io, buf).await;
            Ok(true)
        }
        _ => Ok(io.read_buf(buf).await? != 0),
    }
}

/// Answers a refused head (400 or 431, with the API's JSON error) and
/// closes the connection.
async fn refuse(
    io: TcpStream,
    refused: HeadError,
    out: &mut BytesMut,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<(), ConnError> {
    let status = refused.status();
    let body = crate::error::error_json(
        &refused.to_string(),
        "invalid_request_error",
        None,
        Some(if status == http::StatusCode::BAD_REQUEST {
            "bad_request"
        } else {
            "request_too_large"
        }),
    );
    let mut headers = http::HeaderMap::with_capacity(1);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    head::encode(
        status,
        &headers,
        AnswerFraming::Length(body.len() as u64),
        false,
        false,
        &date::now(),
        out,
    );
    out.put_slice(&body);
    let mut io = io;
    write_within(&mut io, out, limits.idle_timeout).await?;
    close(io, true, buf).await;
    Ok(())
}

/// Closes the connection's sending side and, when the client may still be
/// sending (`unread`: a body not read to its end, a refused head), reads
/// what it sends for a while: closed with unread bytes in its buffer, the
/// socket would send a reset, and the client could lose the answer just
/// written. What it reads goes through the connection's own buffer: a
/// buffer inline here would be paid by every connection's task, lingering
/// or not.
async fn close(mut io: TcpStream, unread: bool, buf: &mut BytesMut) {
    if io.shutdown().await.is_err() || !unread {
        return;
    }
    let drain = async {
        let mut read = 0usize;
        while read < LINGER_BYTES {
            buf.clear();
            buf.reserve(FIRST_READ);
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
