//! A mock on a thread of its own, for tests that want a provider without a
//! process. It runs its own tokio runtime, so a test that blocks its own
//! thread (or uses a single-threaded runtime) never stalls the provider.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::{MockConfig, MockServer};

/// A mock started by [`spawn`]; dropping it stops the mock and joins its
/// thread.
pub struct MockHandle {
    api: SocketAddr,
    control: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// The data-plane address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The control-plane address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// Whether the data plane speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The OpenAI base URL (`http://ADDR/v1`, or `https://` with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/v1", self.api)
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a mock on a new thread with a `threads`-worker runtime and
/// returns once both listeners are bound.
pub fn spawn(config: MockConfig, threads: usize) -> io::Result<MockHandle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("meridian-mock")
        .enable_all()
        .build()?;
    let (bound_tx, bound_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("meridian-mock".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let server = match MockServer::start(config).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let addrs = (server.api_addr(), server.control_addr(), server.tls());
                if bound_tx.send(Ok(addrs)).is_err() {
                    server.stop().await;
                    return;
                }
                let _ = stop_rx.await;
                server.stop().await;
            });
        })?;
    let (api, control, tls) = bound_rx
        .recv()
        .map_err(|_| io::Error::other("the mock thread ended before binding"))??;
    Ok(MockHandle {
        api,
        control,
        tls,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
