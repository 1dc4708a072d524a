//! The TCP fault proxy in front of a provider: passes bytes through, or
//! blackholes (accepts and never answers, the failure that only a timeout
//! catches), or resets every connection. A mode change applies to the
//! connections already open too, since Meridian keeps its upstream
//! connections alive.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpMode {
    /// Relay both ways.
    Pass,
    /// Accept and read, never answer; open connections stop relaying.
    Blackhole,
    /// Reset every connection, open or new.
    Reset,
}

/// A running proxy; stops accepting when dropped.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<TcpMode>,
    task: JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpProxy {
    /// Starts a proxy to `target` on an ephemeral loopback port.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(TcpMode::Pass);
        let task = tokio::spawn(accept_loop(listener, target, mode.clone()));
        Ok(Self { addr, mode, task })
    }

    /// Changes the mode of new and open connections.
    pub fn set_mode(&self, mode: TcpMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> TcpMode {
        *self.mode.borrow()
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Sender<TcpMode>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let rx = mode.subscribe();
        tokio::spawn(connection(client, target, rx));
    }
}

/// Drops a stream with a TCP reset rather than a clean close.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(mut client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<TcpMode>) {
    let current = *mode.borrow_and_update();
    match current {
        TcpMode::Reset => return reset(client),
        TcpMode::Blackhole => return blackhole(client, mode).await,
        TcpMode::Pass => {}
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return reset(client);
    };
    let _ = upstream.set_nodelay(true);
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        tokio::select! {
            read = client.read(&mut up_buf), if client_open => match read {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    if upstream.write_all(&up_buf[..n]).await.is_err() {
                        return reset(client);
                    }
                }
            },
            read = upstream.read(&mut down_buf), if upstream_open => match read {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&down_buf[..n]).await.is_err() {
                        return reset(upstream);
                    }
                }
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *mode.borrow_and_update();
                match now {
                    TcpMode::Pass => {}
                    TcpMode::Reset => {
                        reset(upstream);
                        return reset(client);
                    }
                    TcpMode::Blackhole => {
                        drop(upstream);
                        return blackhole(client, mode).await;
                    }
                }
            }
        }
    }
}

/// Reads and discards until the client leaves or the proxy resets.
async fn blackhole(mut client: TcpStream, mut mode: watch::Receiver<TcpMode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow_and_update() == TcpMode::Reset {
                    return reset(client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn passes_blackholes_and_resets() {
        let proxy = TcpProxy::start(echo_server().await).await.unwrap();
        assert_eq!(echo(proxy.addr).await.unwrap(), b"ping");
        proxy.set_mode(TcpMode::Blackhole);
        let err = echo(proxy.addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        proxy.set_mode(TcpMode::Reset);
        assert!(echo(proxy.addr).await.is_err());
        proxy.set_mode(TcpMode::Pass);
        assert_eq!(echo(proxy.addr).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn open_connection_goes_quiet_in_blackhole() {
        let proxy = TcpProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(b"one!").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        proxy.set_mode(TcpMode::Blackhole);
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(b"two!").await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut buf)).await;
        assert!(quiet.is_err(), "answered through a blackhole");
    }
}
