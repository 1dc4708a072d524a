//! Serving a hyper service on a TCP listener: HTTP/1.1 and HTTP/2 (h2c) on
//! one port, `TCP_NODELAY`, and a graceful drain on shutdown so that requests
//! and streams in flight finish before the process exits. The data plane runs
//! thread-per-core ([`Workers`]), as nginx and pingora do: measured on this
//! workload, tokio's work-stealing scheduler spent more CPU per request moving
//! wakeups between threads than the proxy itself.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Accepts connections until `shutdown` turns true, then waits up to `drain`
/// for open connections to finish their requests.
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(handler))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_s = drain.as_secs(),
            "connections still open after the drain period; closing them"
        );
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
    /// Starts a thread per listener running `serve` with `handler`.
    pub fn spawn<F, Fut, B>(
        listeners: Vec<std::net::TcpListener>,
        handler: F,
        shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) -> std::io::Result<Self>
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut threads = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (handler, shutdown) = (handler.clone(), shutdown.clone());
            let thread = std::thread::Builder::new()
                .name(format!("meridian-worker-{index}"))
                .spawn(move || {
                    crate::upstream::set_worker(index);
                    runtime.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => serve(listener, handler, shutdown, drain).await,
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
