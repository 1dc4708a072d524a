//! HTTP/1.1 connections to a plain `http://` upstream, owned by the
//! data-plane worker and driven by the request that uses them.
//!
//! hyper-util's pooled client runs every connection as a task of its own
//! and hands each request to it through a pool shared by all tasks: a lock,
//! a hash lookup, a checkout future and a trip through the scheduler each
//! way. Here a request takes an idle connection from its own worker's list,
//! polls the connection itself while it waits for the answer and reads it,
//! and puts it back once the answer is read whole: an answer is handed
//! over in the same poll that read it. Measured side by side on 16 cores
//! (`docs/perf-profile.md`): 0.91–0.94 of the pooled client's CPU per
//! answer, and a lower open-loop tail. A connection dropped mid-answer (a
//! timeout, a hedge that lost, a client gone) is closed, as it must be:
//! nothing else would read the rest of that answer.
//!
//! A stream's body outlives the attempt, so its connection is handed to a
//! task of its own on the worker once the answer's head is in
//! ([`Lease::detach`]), and comes back to the same list when the stream
//! ends: streams and whole answers share one set of warm connections. TLS
//! and HTTP/2 upstreams keep the pooled client.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{SendError, worker};

/// How long an unused connection is kept, as the pooled client does: an
/// upstream that closed it meanwhile is noticed when it is taken, but a
/// connection this old is likely closed and not worth the try.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One HTTP/1.1 connection: the handle requests are sent on, and the
/// connection future that reads and writes its socket. Boxed wherever it
/// goes: it is large, and the futures that hold it are moved.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
}

/// The connection future and what polling it needs: apart from the
/// sender, so a request can be sent on one while the other is driven.
struct Driver {
    connection: Connection,
    /// The connection future finished: the upstream closed it, or it failed.
    ended: bool,
    /// The waker the connection and the work it drives are polled with.
    turn: Arc<Turn>,
    waker: Waker,
}

/// Wake-ups of a connection and of the work it drives, seen by the task
/// that polls both. A wake-up raised while that task polls them (the
/// connection handing over an answer it just read, a request just queued
/// for the connection to write) makes it poll again there and then,
/// instead of scheduling the whole task, which is a client connection's
/// task with every future above this one; a wake-up from outside (the
/// socket ready, a timer) wakes that task.
#[derive(Default)]
pub(super) struct Turn {
    polling: AtomicBool,
    again: AtomicBool,
    task: AtomicWaker,
}

impl Turn {
    /// The task that polls: woken by wake-ups from outside.
    pub(super) fn register(&self, task: &Waker) {
        self.task.register(task);
    }

    /// A poll begins: wake-ups from here on are its own.
    pub(super) fn start(&self) {
        self.again.store(false, Ordering::Relaxed);
        self.polling.store(true, Ordering::Release);
    }

    /// The poll ended; whether a wake-up was raised during it (poll again).
    pub(super) fn finish(&self) -> bool {
        self.polling.store(false, Ordering::Release);
        self.again.load(Ordering::Acquire)
    }
}

impl Wake for Turn {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::Acquire) {
            self.again.store(true, Ordering::Release);
        } else {
            self.task.wake();
        }
    }
}

/// How many times in a row one poll goes round again for wake-ups of its
/// own, before it yields to the scheduler like any other task.
const MAX_TURNS: usize = 8;

impl Conn {
    /// Waits, driving the connection, until it can take a request: at
    /// once for an idle one, after the rest of an answer for a busy one;
    /// an error once it is closed.
    async fn ready(&mut self) -> hyper::Result<()> {
        self.driver.drive(self.sender.ready()).await
    }

    /// Open and not known closed: worth keeping or taking from the list.
    fn open(&self) -> bool {
        !self.driver.ended && !self.sender.is_closed()
    }
}

impl Driver {
    /// Runs `work` while polling the connection, which does the socket I/O
    /// `work` waits on. `work` goes first and again after the connection:
    /// a request it queues is written in the same turn, and an answer the
    /// connection reads is taken in the same turn.
    async fn drive<F: Future>(&mut self, work: F) -> F::Output {
        let Driver {
            connection,
            ended,
            turn,
            waker,
        } = self;
        let mut work = pin!(work);
        poll_fn(|cx| {
            turn.register(cx.waker());
            let mut own = Context::from_waker(waker);
            for _ in 0..MAX_TURNS {
                turn.start();
                if let Poll::Ready(out) = work.as_mut().poll(&mut own) {
                    turn.finish();
                    return Poll::Ready(out);
                }
                if !*ended && Pin::new(&mut *connection).poll(&mut own).is_ready() {
                    // Closed or failed: any answer or body in flight has
                    // its error already, which `work` reads next.
                    *ended = true;
                }
                let out = work.as_mut().poll(&mut own);
                let again = turn.finish();
                if out.is_ready() {
                    return out;
                }
                if !again {
                    return Poll::Pending;
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The owned connections of one upstream: one list of idle connections per
/// data-plane worker. Each list is only ever taken by its own worker's
/// thread, so its lock is never contended (a task off the data-plane
/// threads shares the first worker's, and the lock keeps that correct).
pub struct Owned {
    connector: HttpConnector,
    builder: http1::Builder,
    /// The scheme and authority alone: what the connector dials.
    dial: Uri,
    /// The `Host` header every request carries.
    host: HeaderValue,
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    max_idle: usize,
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
            builder: http1::Builder::new(),
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
    /// and returns the answer's head with the connection its body arrives
    /// on. A reused connection that turns out closed before the request
    /// was written costs nothing: the request goes on another.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        origin_form(&mut request);
        request.headers_mut().insert(HOST, self.host.clone());
        let slot = self.slot();
        loop {
            let (mut conn, reused) = match self.checkout(slot) {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            if let Err(e) = conn.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Request(e));
            }
            let sent = conn.sender.try_send_request(request);
            match conn.driver.drive(sent).await {
                Ok(response) => {
                    return Ok((
                        response,
                        Lease {
                            owned: self.clone(),
                            slot,
                            conn,
                        },
                    ));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and young
    /// enough.
    fn checkout(&self, slot: usize) -> Option<Box<Conn>> {
        let mut idle = self.idle[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { conn, since }) = idle.pop_back() {
            if conn.open() && since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read whole, dropping (closing)
    /// the oldest ones past their time and any beyond `max_idle`.
    fn checkin(&self, slot: usize, conn: Box<Conn>) {
        if !conn.open() {
            return;
        }
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
            idle.push_back(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let io = tower_service::Service::call(&mut self.connector.clone(), self.dial.clone())
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        let (sender, connection) = self
            .builder
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        let turn = Arc::new(Turn::default());
        Ok(Box::new(Conn {
            sender,
            driver: Driver {
                connection,
                ended: false,
                waker: Waker::from(turn.clone()),
                turn,
            },
        }))
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

/// A connection lent to one answer until its body is read: whoever reads
/// the body drives the connection through [`Lease::drive`], and gives it
/// back with [`Lease::release`] once the body ended. Dropped instead, it
/// closes the connection.
pub struct Lease {
    owned: Arc<Owned>,
    slot: usize,
    conn: Box<Conn>,
}

impl Lease {
    /// Runs `work` (reading the answer's body) while the connection does
    /// the reading.
    pub async fn drive<F: Future>(&mut self, work: F) -> F::Output {
        self.conn.driver.drive(work).await
    }

    /// Gives the connection back for the next request: call only once the
    /// answer's body was read to its end.
    pub fn release(self) {
        self.owned.checkin(self.slot, self.conn);
    }

    /// Hands the connection to a task of its own on this worker, for an
    /// answer whose body outlives its caller (a stream): the task does the
    /// connection's reading while the body is read elsewhere, and gives it
    /// back once the answer has ended and the connection is ready for the
    /// next request. A body dropped before its end leaves the connection
    /// unusable: hyper closes it, and the task ends with it.
    pub fn detach(mut self) {
        tokio::spawn(async move {
            if self.conn.ready().await.is_ok() {
                self.release();
            }
        });
    }
}

/// The request line's target as an origin server expects it: the path and
/// query alone (the authority goes in `Host`).
fn origin_form(request: &mut Request<Full<Bytes>>) {
    let uri = request.uri_mut();
    *uri = match uri.path_and_query() {
        Some(path) => Uri::from(path.clone()),
        None => Uri::from_static("/"),
    };
}
