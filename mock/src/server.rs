//! Listeners: the accept loop both planes share (TLS optional), and the data
//! listener that closes and rebinds when `refuse` flips.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::behavior::{Behavior, BehaviorError};
use super::body::{Body, MockError};
use super::{Shared, data};

/// Streams one HTTP/2 connection may carry at once: benchmarks multiplex many.
const MAX_H2_STREAMS: u32 = 4096;

/// How often a rebind of the data address is tried before giving up (another
/// process may hold the port for a moment).
const REBIND_TRIES: u32 = 50;

/// How long a client may take over its TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running accept loop. Dropping it closes the listener and every
/// connection it accepted.
pub(crate) struct Running {
    task: JoinHandle<()>,
    _closed: watch::Sender<()>,
}

impl Running {
    /// Closes the listener and its connections, and waits until the listener
    /// is gone (so a connect right after is refused).
    pub(crate) async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` with `handler`: in the clear
/// (HTTP/2 by prior knowledge), or behind `tls` (whichever the client
/// negotiated by ALPN; the server tells them apart by the HTTP/2 preface
/// either way).
pub(crate) fn serve<H, F>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: H) -> Running
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, MockError>> + Send + 'static,
{
    let (closed_tx, closed) = watch::channel(());
    let task = tokio::spawn(accept_loop(listener, tls, handler, closed));
    Running {
        task,
        _closed: closed_tx,
    }
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    closed: watch::Receiver<()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, MockError>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_H2_STREAMS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = connection(stream, tls, &builder, handler) => {}
                _ = closed.changed() => {}
            }
        });
    }
}

/// Runs one accepted connection to its end, after the TLS handshake if any.
async fn connection<H, F>(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    builder: &auto::Builder<TokioExecutor>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, MockError>> + Send + 'static,
{
    let Some(acceptor) = tls else {
        return serve_io(stream, builder, handler).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_io(stream, builder, handler).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

async fn serve_io<I, H, F>(io: I, builder: &auto::Builder<TokioExecutor>, handler: H)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, MockError>> + Send + 'static,
{
    let result = builder
        .serve_connection(TokioIo::new(io), service_fn(handler))
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Why a behaviour change was not applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateError {
    /// The new behaviour is invalid.
    #[error(transparent)]
    Invalid(#[from] BehaviorError),
    /// `refuse: false` could not rebind the data address.
    #[error("rebinding the data listener: {0}")]
    Bind(#[from] io::Error),
}

/// The data listener and the behaviour it serves, changed together so that
/// when a `refuse` change is acknowledged the listener already follows it.
pub(crate) struct DataPlane {
    /// The bound data address (kept across refusals).
    pub(crate) addr: SocketAddr,
    /// What data requests share.
    pub(crate) shared: Arc<Shared>,
    /// Set when the data plane speaks TLS (kept across refusals).
    tls: Option<TlsAcceptor>,
    running: Mutex<Option<Running>>,
}

impl DataPlane {
    /// Binds the data address (then closes it again if the behaviour refuses).
    pub(crate) async fn bind(
        addr: SocketAddr,
        shared: Arc<Shared>,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<Self> {
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let mut plane = DataPlane {
            addr,
            shared,
            tls,
            running: Mutex::new(None),
        };
        if !plane.shared.behavior().refuse {
            *plane.running.get_mut() = Some(plane.serve(listener));
        }
        Ok(plane)
    }

    /// Whether the data plane speaks TLS.
    pub(crate) fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Replaces the behaviour with `change(current)` and opens or closes the
    /// listener to match its `refuse`. Changes are serialised.
    pub(crate) async fn update<F>(&self, change: F) -> Result<Arc<Behavior>, UpdateError>
    where
        F: FnOnce(&Behavior) -> Result<Behavior, BehaviorError>,
    {
        let mut running = self.running.lock().await;
        let next = Arc::new(change(&self.shared.behavior())?);
        match (next.refuse, running.take()) {
            (true, Some(open)) => open.stop().await,
            (false, None) => *running = Some(self.serve(self.rebind().await?)),
            (_, still) => *running = still,
        }
        self.shared.set_behavior(next.clone());
        Ok(next)
    }

    /// Closes everything (process shutdown).
    pub(crate) async fn stop(&self) {
        if let Some(open) = self.running.lock().await.take() {
            open.stop().await;
        }
    }

    async fn rebind(&self) -> io::Result<TcpListener> {
        let mut tries = 0;
        loop {
            match listen(self.addr) {
                Ok(listener) => return Ok(listener),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < REBIND_TRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn serve(&self, listener: TcpListener) -> Running {
        let shared = self.shared.clone();
        serve(listener, self.tls.clone(), move |request| {
            data::handle(shared.clone(), request)
        })
    }
}

/// Accept backlog of the data listener. A real provider's is large; with
/// the default (128 here) a proxy opening many connections at once saw SYNs
/// dropped and one-second retransmits that no provider would cause.
const BACKLOG: u32 = 4096;

/// Binds `addr` with [`BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
