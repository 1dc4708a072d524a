//! Serving requests on a TCP listener: HTTP/1.1 and HTTP/2 (h2c) on one
//! port, `TCP_NODELAY`, and a graceful drain on shutdown so that requests
//! and streams in flight finish before the process exits. The data plane
//! runs thread-per-core ([`Workers`]), as nginx and pingora do: measured on
//! this workload, tokio's work-stealing scheduler spent more CPU per request
//! moving wakeups between threads than the proxy itself. Its HTTP/1.1 is
//! the node's own server (`h1`); h2c, and the admin listener, are hyper's.
//!
//! This file holds the accept loop and the threads; who may hold a
//! connection and for how long is in `limits`, the closing of hyper's
//! connections in `watchdog`, the admin listener's bounded request bodies
//! in `deadline`, and the descriptor budget the connection caps need in
//! `descriptors`.

mod closing;
mod deadline;
mod descriptors;
mod h1;
mod limits;
mod stall;
#[cfg(test)]
mod stall_tests;
mod tracked;
mod watchdog;

pub use deadline::admin_answer;
pub use descriptors::{descriptor_limit, descriptors_needed};
pub use h1::{BodyError, RequestBody};
pub use limits::{Gate, Limits};
pub use tracked::Tracked;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use closing::Why;
use limits::Activity;
use tracked::{StallWatch, tracked};

/// Accepts connections until `shutdown` turns true, then waits up to `drain`
/// for open connections to finish their requests. Every connection is
/// served by hyper (HTTP/1.1 and h2c): the admin listener's way.
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    handler: F,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
    limits: Limits,
    gate: Arc<Gate>,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = hyper_builder(&limits);
    let connect = move |stream: TcpStream, peer, activity: Arc<Activity>, limits| {
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                service_fn(tracked(handler.clone(), activity.clone(), StallWatch::On)),
            )
            .into_owned();
        watchdog::drive(conn, activity, limits, peer)
    };
    accept(listener, connect, shutdown, drain, limits, gate).await;
}

/// [`serve`] for the data plane: HTTP/1.1 connections are served by the
/// node's own server ([`h1`]), h2c ones by hyper's.
pub async fn serve_data<F, Fut, B>(
    listener: TcpListener,
    handler: F,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
    limits: Limits,
    gate: Arc<Gate>,
) where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Shared: a builder of its own in every connection's task would be
    // paid by each of them for its whole life.
    let h2 = Arc::new(hyper_builder(&limits).http2_only());
    // The answers' `date`, kept in this thread's local: the data plane's
    // runtimes are current-thread, so the task runs where they are written.
    let date = tokio::spawn(h1::keep_date_fresh());
    let connect = move |stream, peer, activity, limits| {
        data_connection(stream, peer, activity, limits, handler.clone(), h2.clone())
    };
    accept(listener, connect, shutdown, drain, limits, gate).await;
    date.abort();
}

/// One data-plane connection, HTTP/1.1 or h2c by its first bytes. Every
/// open connection's task holds this future for its whole life: what it
/// keeps across its awaits is paid 10,000 times by 10,000 open streams
/// (its size is tested).
async fn data_connection<F, Fut, B>(
    mut stream: TcpStream,
    peer: SocketAddr,
    activity: Arc<Activity>,
    limits: Arc<Limits>,
    handler: F,
    h2: Arc<auto::Builder<TokioExecutor>>,
) where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match h1::sniff(&mut stream, &activity, &limits).await {
        Ok(h1::Protocol::Http1(buf)) => {
            // The node's own server bounds its writes itself (`h1::write`).
            let service = tracked(handler, activity.clone(), StallWatch::Off);
            if let Err(e) = h1::serve(stream, buf, service, &activity, &limits).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        Ok(h1::Protocol::H2(read)) => {
            serve_h2(&h2, handler, read, stream, activity, limits, peer).await;
        }
        Ok(h1::Protocol::Gone) | Err(_) => {}
    }
}

/// An h2c connection served by hyper, `read` being the bytes already taken
/// off `stream`. Built outside the connection's async block and boxed:
/// inline, hyper's connection (and the values moved into it, whose room an
/// async block keeps) would size every connection's task, HTTP/1.1 ones
/// included.
fn serve_h2<F, Fut, B>(
    h2: &auto::Builder<TokioExecutor>,
    handler: F,
    read: Bytes,
    stream: TcpStream,
    activity: Arc<Activity>,
    limits: Arc<Limits>,
    peer: SocketAddr,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = move |req: Request<Incoming>| handler(req.map(RequestBody::H2));
    let io = TokioIo::new(h1::Rewind::new(read, stream));
    let conn = h2
        .serve_connection(
            io,
            service_fn(tracked(handler, activity.clone(), StallWatch::On)),
        )
        .into_owned();
    Box::pin(watchdog::drive(conn, activity, limits, peer))
}

/// hyper's server, set as the listener's limits say.
fn hyper_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header timer of hyper's: it would arm (and cancel) a timer for
    // every request head on a kept-alive connection, about 1 % of a
    // request's CPU with the timer wheel's upkeep. The watchdog bounds
    // the same thing per connection: a new one by the header timeout, a
    // kept-alive one that stops mid-head by the idle timeout from its
    // last answer (`Limits::close_at`).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .keep_alive_interval(limits.h2_keepalive);
    if let Some(every) = limits.h2_keepalive {
        builder.http2().keep_alive_timeout(every);
    }
    builder
}

/// The accept loop: each connection admitted by `gate` is served by
/// `connect` on a task of its own; once `shutdown` turns true the open
/// ones are told to close and given up to `drain` to finish.
async fn accept<C, Fut>(
    listener: TcpListener,
    connect: C,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    limits: Limits,
    gate: Arc<Gate>,
) where
    C: Fn(TcpStream, SocketAddr, Arc<Activity>, Arc<Limits>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limits = Arc::new(limits);
    // Every connection task holds a sender; the drain waits for them all.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut conns = Conns::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let Some(admitted) = gate.admit() else {
            gate.refuse(stream, peer);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new(Instant::now());
        gate.track(&activity);
        conns.push(&activity);
        let conn = connect(stream, peer, activity, limits.clone());
        tokio::spawn(holding(conn, (admitted, open.clone())));
    }
    drop(listener);
    conns.stop_all();
    drop(open);
    if tokio::time::timeout(drain, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_s = drain.as_secs(),
            "connections still open after the drain period; closing them"
        );
    }
}

/// `conn`, then `guards` let go. A combinator rather than an async block:
/// a block awaiting a future moved into it keeps room for it twice (the
/// value captured and the one awaited), and this is every connection's
/// task, for its whole life.
fn holding<G: Send + 'static>(
    conn: impl Future<Output = ()> + Send + 'static,
    guards: G,
) -> impl Future<Output = ()> + Send + 'static {
    conn.map(move |()| drop(guards))
}

/// One worker's connections, each told to close when the node stops: by
/// its own signal, so that a connection's task polls no shared channel
/// each time it wakes.
#[derive(Default)]
struct Conns {
    open: Vec<Weak<Activity>>,
    /// The length at which closed connections are next swept out.
    sweep_at: usize,
}

impl Conns {
    fn push(&mut self, activity: &Arc<Activity>) {
        if self.open.len() >= self.sweep_at {
            self.open.retain(|w| w.strong_count() > 0);
            self.sweep_at = (2 * self.open.len()).max(64);
        }
        self.open.push(Arc::downgrade(activity));
    }

    fn stop_all(&self) {
        for activity in self.open.iter().filter_map(Weak::upgrade) {
            activity.closing.close(Why::Stopping);
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Binds `count` listeners on the same address with `SO_REUSEPORT`, so the
/// kernel spreads connections across data-plane threads. With port 0 the
/// first bind picks the port and the others join it.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    // SO_REUSEPORT would also let this node share a port another process
    // (an old node still running) listens on, each taking part of the
    // connections: a bind without it fails then, naming the port in use.
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let mut listeners = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        socket.bind(&at.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        at = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The data plane's threads: one current-thread runtime per listener, each
/// serving its own connections end to end, so a request, its upstream
/// connection and its stream never move between threads.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts a thread per listener running `serve` with `handler`, all
    /// counted against one `gate`.
    pub fn spawn<F, Fut, B>(
        listeners: Vec<std::net::TcpListener>,
        handler: F,
        shutdown: watch::Receiver<bool>,
        drain: Duration,
        limits: Limits,
        gate: Arc<Gate>,
    ) -> std::io::Result<Self>
    where
        F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut threads = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (handler, shutdown) = (handler.clone(), shutdown.clone());
            let (limits, gate) = (limits.clone(), gate.clone());
            let thread = std::thread::Builder::new()
                .name(format!("meridian-worker-{index}"))
                .spawn(move || {
                    crate::upstream::set_worker(index);
                    runtime.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                serve_data(listener, handler, shutdown, drain, limits, gate).await
                            }
                            Err(e) => {
                                tracing::error!(worker = index, error = %e, "worker cannot listen")
                            }
                        }
                    });
                })?;
            threads.push(thread);
        }
        Ok(Self { threads })
    }

    /// Waits for every worker to finish draining.
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || {
            for thread in self.threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_open_connection_is_told_to_stop_and_closed_ones_are_swept() {
        let mut conns = Conns::default();
        let live: Vec<_> = (0..3).map(|_| Activity::new(Instant::now())).collect();
        for activity in &live {
            conns.push(activity);
        }
        for _ in 0..1000 {
            conns.push(&Activity::new(Instant::now()));
            assert!(conns.open.len() <= 65, "{}", conns.open.len());
        }
        assert!(live.iter().all(|a| a.closing.why().is_none()));
        conns.stop_all();
        assert!(live.iter().all(|a| a.closing.why() == Some(Why::Stopping)));
    }

    #[tokio::test]
    async fn a_connection_s_task_holds_its_future_once() {
        let conn = async {
            let kept = [7u8; 2048];
            tokio::task::yield_now().await;
            assert_eq!(kept[2047], 7);
        };
        let alone = std::mem::size_of_val(&conn);
        let (guard, guarded) = mpsc::channel::<()>(1);
        let held = holding(conn, guard);
        assert!(
            std::mem::size_of_val(&held) <= alone + 16,
            "{} bytes for a future of {alone}",
            std::mem::size_of_val(&held)
        );
        held.await;
        assert!(guarded.is_closed(), "the guard outlived the connection");
    }

    #[tokio::test]
    async fn an_answer_is_held_behind_one_pointer_whatever_the_handler_keeps() {
        // A handler whose future keeps 4 KB across an await, as the
        // proxy's does: an open h2 stream must not pay for it once its
        // head has gone out.
        let handler = |_req: ()| async {
            let kept = [7u8; 4096];
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::copy_from_slice(&kept[..1]),
            )))
        };
        let alone = std::mem::size_of_val(&handler(()));
        let service = tracked(handler, Activity::new(Instant::now()), StallWatch::Off);
        let answer = service(());
        assert!(
            std::mem::size_of_val(&answer) <= 16,
            "{} bytes",
            std::mem::size_of_val(&answer)
        );
        // And the box holds the handler's future once.
        assert!(
            std::mem::size_of_val(&*answer) <= alone + 64,
            "{} bytes boxed for a future of {alone}",
            std::mem::size_of_val(&*answer)
        );
        let response = answer.await.unwrap();
        assert_eq!(response.status(), 200);
    }
}
