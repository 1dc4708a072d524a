//! `meridian-floor`: the least an HTTP/1.1 keep-alive proxy built on
//! Meridian's runtime can do for a request, as a yardstick for issue #13
//! ("faster than nginx per core"). It is not a product and routes nothing:
//! one tokio current-thread runtime (as each of Meridian's workers is),
//! one upstream connection per client connection, each request read whole
//! (`httparse`, `content-length` framing), written to the upstream as it
//! came, and the answer read whole and written back, one `write` a side.
//!
//! Side by side with nginx and Meridian (`benches/scripts/dev-bench.sh`
//! with `FLOOR=<this binary>`), its CPU per request says how much of the
//! gap to nginx is the runtime's I/O model (epoll turns, readiness, one
//! task per connection) and how much is Meridian's own work: Meridian
//! cannot cost less than this without leaving the model.
//!
//! ```text
//! meridian-floor --listen 127.0.0.1:19007 --upstream 127.0.0.1:19001
//! ```

use std::io;
use std::net::SocketAddr;

use anyhow::Result;
use bytes::{Buf, BytesMut};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The least a keep-alive HTTP/1.1 proxy on tokio does per request.
#[derive(Debug, Parser)]
#[command(name = "meridian-floor", version, about)]
struct Args {
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// The one upstream every request goes to.
    #[arg(long)]
    upstream: SocketAddr,
}

/// Headers a message may carry: more is refused, as a proxy would.
const MAX_HEADERS: usize = 64;
/// A head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// A body larger than this is refused: the buffer would grow with it.
const MAX_BODY: usize = 16 * 1024 * 1024;

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = args.upstream;
        tokio::spawn(async move {
            match relay(client, upstream).await {
                Ok(()) => {}
                // How a load generator ends its run: not worth a line each.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) => {}
                Err(e) => eprintln!("meridian-floor: connection ended: {e}"),
            }
        });
    }
}

/// Which kind of message a buffer holds.
#[derive(Debug, Clone, Copy)]
enum Side {
    Request,
    Response,
}

/// Serves one client connection: each request to the upstream over this
/// connection's own upstream connection, opened on the first request.
async fn relay(mut client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut up: Option<TcpStream> = None;
    let mut request = BytesMut::with_capacity(8192);
    let mut answer = BytesMut::with_capacity(8192);
    loop {
        let Some(len) = read_message(&mut client, &mut request, Side::Request).await? else {
            return Ok(());
        };
        let to = match &mut up {
            Some(to) => to,
            None => {
                let to = TcpStream::connect(upstream).await?;
                to.set_nodelay(true)?;
                up.insert(to)
            }
        };
        to.write_all(&request[..len]).await?;
        request.advance(len);
        let Some(len) = read_message(to, &mut answer, Side::Response).await? else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        client.write_all(&answer[..len]).await?;
        answer.advance(len);
    }
}

/// Reads until `buf` starts with one whole message and returns its length;
/// `None` when the peer closed between messages.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    side: Side,
) -> io::Result<Option<usize>> {
    loop {
        if let Some(len) = message_len(buf, side)? {
            return Ok(Some(len));
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// The length of the message `buf` starts with (head and
/// `content-length` body), once all of it is there.
fn message_len(buf: &[u8], side: Side) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = match side {
        Side::Request => httparse::Request::new(&mut headers).parse(buf),
        Side::Response => httparse::Response::new(&mut headers).parse(buf),
    };
    let head = match parsed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
        httparse::Status::Complete(head) => head,
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        httparse::Status::Partial => return Ok(None),
    };
    let mut body = 0;
    for header in headers.iter().take_while(|h| !h.name.is_empty()) {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunked bodies are not measured here",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&len| len <= MAX_BODY)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        }
    }
    let len = head.saturating_add(body);
    Ok((buf.len() >= len).then_some(len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_message_is_whole_only_once_its_body_is_there() {
        let req = b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(message_len(req, Side::Request).unwrap(), None);
        let whole = b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET";
        assert_eq!(
            message_len(whole, Side::Request).unwrap(),
            Some(whole.len() - 3)
        );
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(
            message_len(answer, Side::Response).unwrap(),
            Some(answer.len())
        );
    }

    #[test]
    fn framing_it_does_not_handle_is_refused_not_guessed() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(message_len(chunked, Side::Response).is_err());
        let bad = b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert!(message_len(bad, Side::Request).is_err());
        let overflow = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(message_len(overflow, Side::Request).is_err());
        let too_big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(message_len(too_big.as_bytes(), Side::Request).is_err());
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(message_len(&huge, Side::Request).is_err());
    }

    /// Two requests on one kept-alive client connection, over real
    /// sockets: each reaches the upstream whole over one upstream
    /// connection, and each answer comes back whole.
    #[tokio::test]
    async fn requests_on_a_kept_alive_connection_are_relayed_in_turn() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let mut bodies = Vec::new();
            for answer in ["one", "two"] {
                let len = read_message(&mut conn, &mut buf, Side::Request)
                    .await
                    .unwrap()
                    .unwrap();
                bodies.push(String::from_utf8(buf.split_to(len).to_vec()).unwrap());
                let out = format!("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n{answer}");
                conn.write_all(out.as_bytes()).await.unwrap();
            }
            bodies
        });
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        tokio::spawn(async move {
            let (client, _) = proxy.accept().await.unwrap();
            relay(client, upstream_addr).await
        });

        let mut client = TcpStream::connect(proxy_addr).await.unwrap();
        let mut buf = BytesMut::new();
        let mut answers = Vec::new();
        for body in ["{\"a\":1}", "{\"b\":22}"] {
            let request = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            client.write_all(request.as_bytes()).await.unwrap();
            let len = read_message(&mut client, &mut buf, Side::Response)
                .await
                .unwrap()
                .unwrap();
            answers.push(String::from_utf8(buf.split_to(len).to_vec()).unwrap());
        }
        assert!(answers[0].ends_with("\r\n\r\none"), "{answers:?}");
        assert!(answers[1].ends_with("\r\n\r\ntwo"), "{answers:?}");
        let bodies = served.await.unwrap();
        assert!(bodies[0].ends_with("\r\n\r\n{\"a\":1}"), "{bodies:?}");
        assert!(bodies[1].ends_with("\r\n\r\n{\"b\":22}"), "{bodies:?}");
    }
}
