//! The unbuffered TLS stream against rustls's own server over real
//! sockets: bodies larger than a record in both directions, read through
//! small buffers; TLS 1.2; the server's key update; how the connection
//! ends; nothing buffered while it waits; and hostile servers (no TLS at
//! all, a handshake message announced past rustls's limit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream as ServerStream;

use super::tls_stream::TlsStream;
use harness::certs::UpstreamCa;

use super::tls_tests::{ca, server_config};
use super::{Alpn, tls_trusting};

/// What the server does with each accepted connection.
type Serve = fn(ServerStream<TcpStream>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// A TLS server speaking `versions` that runs `serve` on one connection,
/// and a client connected to it, its handshake done.
async fn pair(
    versions: &[&'static rustls::SupportedProtocolVersion],
    serve: Serve,
) -> (TlsStream, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path(), "stream");
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&ca, versions)));
    // Small socket buffers, so a writer meets the kernel's push-back
    // wherever the test runs.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve(acceptor.accept(tcp).await.unwrap()).await;
    });
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    let client = connect(&ca, socket.connect(addr).await.unwrap())
        .await
        .unwrap();
    (client, server, dir)
}

async fn connect(ca: &UpstreamCa, tcp: TcpStream) -> std::io::Result<TlsStream> {
    let config = tls_trusting(Some(ca.pem()), Alpn::Http1).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = TlsStream::new(tcp, config, name)?;
    tokio::time::timeout(
        Duration::from_secs(10),
        poll_fn(|cx| stream.poll_handshake(cx)),
    )
    .await
    .expect("the handshake ended")?;
    Ok(stream)
}

/// 200 KiB whose every byte says where it is.
fn pattern() -> Vec<u8> {
    (0..200 * 1024u32).map(|i| (i % 251) as u8).collect()
}

/// Reads everything through a 1,000-byte buffer until `want` bytes.
async fn read_small(client: &mut TlsStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    while got.len() < want {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "ended after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Writes all of `bytes` and flushes.
async fn send(to: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) {
    to.write_all(bytes).await.unwrap();
    to.flush().await.unwrap();
}

/// Polls one read with nothing to wake it: whether it would wait.
async fn would_wait(client: &mut TlsStream) -> bool {
    let mut probe = [0u8; 1];
    poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut probe);
        Poll::Ready(Pin::new(&mut *client).poll_read(cx, &mut buf).is_pending())
    })
    .await
}

/// Echoes 200 KiB back, then keeps the connection until the client ends.
fn echo(mut tls: ServerStream<TcpStream>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut got = vec![0u8; 200 * 1024];
        tls.read_exact(&mut got).await.unwrap();
        send(&mut tls, &got).await;
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
    })
}

#[tokio::test]
async fn large_bodies_cross_both_ways_and_a_waiting_connection_holds_no_buffer() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let (mut client, server, _dir) = pair(versions, echo).await;
        send(&mut client, &pattern()).await;
        assert_eq!(read_small(&mut client, pattern().len()).await, pattern());
        // Whatever follows (TLS 1.3 session tickets) is taken in, and the
        // connection then waits with no buffer of its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(would_wait(&mut client).await);
        assert_eq!(client.buffered(), 0);
        client.shutdown().await.unwrap();
        server.await.unwrap();
    }
}

#[tokio::test]
async fn a_writer_ahead_of_the_socket_is_pushed_back_with_little_held() {
    const BODY: u32 = 16 << 20;
    let (mut client, server, _dir) = pair(&[&rustls::version::TLS13], |mut tls| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut got = vec![0u8; BODY as usize];
            tls.read_exact(&mut got).await.unwrap();
            assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        })
    })
    .await;
    let body: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
    let mut at = 0;
    let pushed_back = poll_fn(|cx| {
        loop {
            match Pin::new(&mut client).poll_write(cx, &body[at..]) {
                Poll::Ready(Ok(n)) => at += n,
                Poll::Pending => return Poll::Ready(true),
                Poll::Ready(Err(e)) => panic!("{e}"),
            }
            if at == body.len() {
                return Poll::Ready(false);
            }
        }
    })
    .await;
    assert!(pushed_back, "16 MiB taken while the server read nothing");
    assert!(client.buffered() <= 256 * 1024, "{}", client.buffered());
    send(&mut client, &body[at..]).await;
    server.await.unwrap();
}

#[tokio::test]
async fn a_key_update_from_the_server_is_followed_both_ways() {
    let (mut client, server, _dir) = pair(&[&rustls::version::TLS13], |mut tls| {
        Box::pin(async move {
            for round in 0..3u8 {
                tls.get_mut().1.refresh_traffic_keys().unwrap();
                send(&mut tls, &[round; 40_000]).await;
                let mut back = [0u8; 3];
                tls.read_exact(&mut back).await.unwrap();
                assert_eq!(back, [round; 3]);
            }
        })
    })
    .await;
    for round in 0..3u8 {
        assert_eq!(read_small(&mut client, 40_000).await, vec![round; 40_000]);
        send(&mut client, &[round; 3]).await;
    }
    server.await.unwrap();
}

#[tokio::test]
async fn close_notify_ends_the_stream_and_a_bare_close_is_an_error() {
    let (mut client, server, _dir) = pair(&[&rustls::version::TLS13], |mut tls| {
        Box::pin(async move {
            tls.write_all(b"last words").await.unwrap();
            tls.shutdown().await.unwrap();
        })
    })
    .await;
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"last words");
    server.await.unwrap();

    // A close without close_notify could be a truncation: it is no end.
    let (mut client, server, _dir) = pair(&[&rustls::version::TLS13], |tls| {
        Box::pin(async move {
            let (mut tcp, mut conn) = tls.into_inner();
            conn.writer().write_all(b"cut").unwrap();
            while conn.wants_write() {
                let mut out = Vec::new();
                conn.write_tls(&mut out).unwrap();
                tcp.write_all(&out).await.unwrap();
            }
            drop(tcp);
        })
    })
    .await;
    server.await.unwrap();
    let mut all = Vec::new();
    let err = client.read_to_end(&mut all).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(all, b"cut");
}

/// The handshake's error against a server that is not TLS: `serve` gets
/// its raw socket.
async fn refused<F>(serve: impl FnOnce(TcpStream) -> F + Send + 'static) -> std::io::Error
where
    F: Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(dir.path(), "stream");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve(tcp).await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    connect(&ca, tcp).await.err().expect("refused")
}

#[tokio::test]
async fn a_server_that_speaks_no_tls_fails_the_handshake() {
    let err = refused(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[tokio::test]
async fn a_handshake_message_over_the_limit_is_refused_by_its_header() {
    let err = refused(|mut tcp| async move {
        // A ServerHello announced at 16 MiB, then records of its body for
        // as long as the client takes them.
        let mut first = vec![0x16, 0x03, 0x03, 0x40, 0x00, 0x02, 0xff, 0xff, 0xff];
        first.resize(5 + 0x4000, 0);
        let mut record = vec![0x16, 0x03, 0x03, 0x40, 0x00];
        record.resize(5 + 0x4000, 0);
        if tcp.write_all(&first).await.is_err() {
            return;
        }
        for _ in 0..1024 {
            if tcp.write_all(&record).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    // By the message's announced size, not after buffering its body: what
    // bounds the receive buffer.
    assert!(
        err.to_string().contains("HandshakePayloadTooLarge"),
        "{err}"
    );
}
