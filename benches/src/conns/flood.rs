//! The loads: rounds of concurrent streams, and floods of connections that
//! stall, each measured by the normal requests sent while it lasts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::node::Started;

/// A normal request's budget before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections opened at once by the idle flood.
const CONNECT_BATCH: usize = 256;
/// Extra time given to stalled requests to be answered after the flood.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// How a flood runs.
pub struct Settings {
    /// Normal requests sent while it lasts.
    pub probes: usize,
    /// How long it lasts.
    pub duration: Duration,
    /// The node's body and header timeout.
    pub timeout: Duration,
}

/// Streams of a round that completed and that did not.
pub struct Outcome {
    /// Answered 200 with a whole stream.
    pub ok: usize,
    /// Anything else.
    pub failed: usize,
}

const STREAM_BODY: &str =
    r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Say hi"}]}"#;
const PLAIN_BODY: &str = r#"{"model":"m","messages":[{"role":"user","content":"Say hi"}]}"#;

/// How a round's streams reach the node.
#[derive(Debug, Clone, Copy)]
pub enum Clients {
    /// Spread over this many h2c connections.
    H2c(usize),
    /// One HTTP/1.1 connection each, as most SDKs (httpx, undici) open
    /// them.
    Http1,
}

/// `streams` streamed chat completions at once, each read to its end.
pub async fn round(node: &Started, streams: usize, clients: Clients) -> Result<Outcome> {
    let mut tasks = JoinSet::new();
    let api = node.api;
    match clients {
        Clients::H2c(connections) => {
            let connections = connections.clamp(1, streams.max(1));
            let mut senders = Vec::with_capacity(connections);
            for _ in 0..connections {
                let tcp = TcpStream::connect(api).await?;
                let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                    .await?;
                tokio::spawn(conn);
                senders.push(sender);
            }
            for i in 0..streams {
                let mut sender = senders[i % connections].clone();
                tasks.spawn(
                    async move { read_stream(sender.send_request(stream_request(api)?)).await },
                );
            }
        }
        Clients::Http1 => {
            for _ in 0..streams {
                tasks.spawn(async move {
                    let tcp = TcpStream::connect(api).await.ok()?;
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                            .await
                            .ok()?;
                    tokio::spawn(conn);
                    read_stream(sender.send_request(stream_request(api)?)).await
                });
            }
        }
    }
    let mut outcome = Outcome { ok: 0, failed: 0 };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(())) => outcome.ok += 1,
            _ => outcome.failed += 1,
        }
    }
    Ok(outcome)
}

/// One streamed chat completion's request.
fn stream_request(api: std::net::SocketAddr) -> Option<Request<Full<Bytes>>> {
    Request::post(format!("http://{api}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(STREAM_BODY.as_bytes())))
        .ok()
}

/// Whether a streamed answer was a success read to its `[DONE]`.
async fn read_stream(
    answer: impl std::future::Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
) -> Option<()> {
    let response = answer.await.ok()?;
    let ok = response.status().is_success();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    (ok && body.windows(6).any(|w| w == b"[DONE]")).then_some(())
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// What the probes got, by status (`error` for no answer).
#[derive(Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn ok(&self) -> usize {
        self.0.get("200").copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }

    fn line(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!(
            "{} of {} ok ({})",
            self.ok(),
            self.total(),
            parts.join(", ")
        )
    }
}

/// Sends `count` requests spread over `duration` (each in its own task, so
/// a slow answer does not hold up the next), to the data plane or, with
/// `healthz`, to the admin listener.
async fn probe(node: &Started, count: usize, duration: Duration, healthz: bool) -> Tally {
    let start = Instant::now();
    let every = duration.div_f64(count.max(1) as f64);
    let mut tasks = JoinSet::new();
    for i in 0..count {
        tokio::time::sleep_until(start + every.mul_f64(i as f64)).await;
        let (method, url, body) = if healthz {
            (Method::GET, format!("http://{}/healthz", node.admin), "")
        } else {
            (
                Method::POST,
                format!("http://{}/v1/chat/completions", node.api),
                PLAIN_BODY,
            )
        };
        tasks.spawn(async move {
            let req = Request::builder()
                .method(method)
                .uri(url)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .ok()?;
            let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
                let response = client().request(req).await.ok()?;
                let status = response.status();
                response.into_body().collect().await.ok()?;
                Some(status)
            })
            .await
            .ok()??;
            Some(answer.as_u16().to_string())
        });
    }
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let key = done.ok().flatten().unwrap_or_else(|| "error".to_owned());
        *tally.0.entry(key).or_default() += 1;
    }
    tally
}

/// When and how each stalled request was answered.
#[derive(Default)]
struct Answers {
    /// Seconds from the flood's start, by status.
    by_status: BTreeMap<String, Vec<f64>>,
    /// Never answered by the end.
    unanswered: usize,
}

impl Answers {
    fn add(&mut self, answer: Option<(String, f64)>) {
        match answer {
            Some((status, at)) => self.by_status.entry(status).or_default().push(at),
            None => self.unanswered += 1,
        }
    }

    fn line(&self, waited: Duration) -> String {
        let mut text = String::new();
        for (status, times) in &self.by_status {
            let mut times = times.clone();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let _ = write!(
                text,
                "{status}: {} (at {:.1}–{:.1} s, median {median:.1} s); ",
                times.len(),
                times[0],
                times[times.len() - 1]
            );
        }
        let _ = write!(
            text,
            "not answered within {:.0} s: {}",
            waited.as_secs_f64(),
            self.unanswered
        );
        text
    }
}

/// HTTP/1.1 requests whose body never finishes, while normal requests are
/// sent.
pub async fn slow_bodies(node: &Started, count: usize, settings: Settings) -> Result<String> {
    let start = Instant::now();
    let deadline = start + settings.duration + settings.timeout + ANSWER_GRACE;
    let mut stalled = JoinSet::new();
    for _ in 0..count {
        let mut conn = TcpStream::connect(node.api).await?;
        conn.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              content-length: 100000\r\n\r\n{\"model\": \"m\", \"messages\": [",
        )
        .await?;
        stalled.spawn(async move {
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout_at(deadline, conn.read(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {
                    let status = String::from_utf8_lossy(&buf[..n])
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("?")
                        .to_owned();
                    Some((status, start.elapsed().as_secs_f64()))
                }
                Ok(_) => Some(("closed".to_owned(), start.elapsed().as_secs_f64())),
                Err(_) => None,
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = probe(node, settings.probes, settings.duration, false).await;
    let mut answers = Answers::default();
    while let Some(done) = stalled.join_next().await {
        answers.add(done.ok().flatten());
    }
    Ok(format!(
        "## slow-bodies: {count} HTTP/1.1 bodies that never finish\n\n\
         - normal requests during {:.0} s: {}\n- the stalled requests: {}\n- node alive after: {}\n",
        settings.duration.as_secs_f64(),
        probes.line(),
        answers.line(deadline - start),
        node.alive()
    ))
}

/// Streams of one h2c connection whose body never finishes, while normal
/// requests are sent.
pub async fn h2_streams(node: &Started, count: usize, settings: Settings) -> Result<String> {
    let start = Instant::now();
    let deadline = start + settings.duration + settings.timeout + ANSWER_GRACE;
    let tcp = TcpStream::connect(node.api).await?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await?;
    tokio::spawn(conn);
    let mut stalled = JoinSet::new();
    for _ in 0..count {
        let mut sender = sender.clone();
        let first: Result<Frame<Bytes>, std::io::Error> =
            Ok(Frame::data(Bytes::from_static(b"{\"model\": \"m\"")));
        let body = StreamBody::new(stream::StreamExt::chain(
            stream::iter([first]),
            stream::pending(),
        ));
        let req = Request::post(format!("http://{}/v1/chat/completions", node.api))
            .header("content-type", "application/json")
            .body(body)?;
        stalled.spawn(async move {
            let answer = tokio::time::timeout_at(deadline, sender.send_request(req)).await;
            match answer {
                Ok(Ok(response)) => Some((
                    response.status().as_u16().to_string(),
                    start.elapsed().as_secs_f64(),
                )),
                Ok(Err(_)) => Some(("reset".to_owned(), start.elapsed().as_secs_f64())),
                Err(_) => None,
            }
        });
    }
    drop(sender);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = probe(node, settings.probes, settings.duration, false).await;
    let mut answers = Answers::default();
    while let Some(done) = stalled.join_next().await {
        answers.add(done.ok().flatten());
    }
    Ok(format!(
        "## h2-streams: {count} stalled streams on one h2c connection\n\n\
         - normal requests during {:.0} s: {}\n- the stalled streams: {}\n- node alive after: {}\n",
        settings.duration.as_secs_f64(),
        probes.line(),
        answers.line(deadline - start),
        node.alive()
    ))
}

/// Connections that never send a byte, while normal requests and admin
/// `/healthz` probes are sent.
pub async fn idle(node: &Started, count: usize, settings: Settings) -> Result<String> {
    let start = Instant::now();
    let deadline = start + settings.duration + ANSWER_GRACE;
    let mut held = JoinSet::new();
    let mut failed = 0usize;
    let mut opened = 0usize;
    while opened + failed < count && start.elapsed() < settings.duration / 2 {
        let batch = CONNECT_BATCH.min(count - opened - failed);
        let mut connects = JoinSet::new();
        for _ in 0..batch {
            let api = node.api;
            connects.spawn(async move {
                tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(api)).await
            });
        }
        while let Some(done) = connects.join_next().await {
            match done {
                Ok(Ok(Ok(mut conn))) => {
                    opened += 1;
                    held.spawn(async move {
                        let mut buf = [0u8; 64];
                        // Some(at) once the node closes it.
                        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
                            Ok(_) => Some(start.elapsed().as_secs_f64()),
                            Err(_) => None,
                        }
                    });
                }
                _ => failed += 1,
            }
        }
    }
    let opened_in = start.elapsed().as_secs_f64();
    let left = settings.duration.saturating_sub(start.elapsed());
    let (data, health) = tokio::join!(
        probe(node, settings.probes, left, false),
        probe(node, settings.probes, left, true)
    );
    let mut closed = Vec::new();
    let mut open = 0usize;
    while let Some(done) = held.join_next().await {
        match done.ok().flatten() {
            Some(at) => closed.push(at),
            None => open += 1,
        }
    }
    closed.sort_by(f64::total_cmp);
    let closed_line = match (closed.first(), closed.last()) {
        (Some(first), Some(last)) => format!(
            "{} (at {first:.1}–{last:.1} s, median {:.1} s)",
            closed.len(),
            closed[closed.len() / 2]
        ),
        _ => "0".to_owned(),
    };
    Ok(format!(
        "## idle: {count} connections that never send a byte\n\n\
         - opened {opened} in {opened_in:.1} s, {failed} failed to connect\n\
         - normal requests during the remaining {:.0} s: {}\n- admin /healthz: {}\n\
         - closed by the node: {closed_line}; still open after {:.0} s: {open}\n- node alive after: {}\n",
        left.as_secs_f64(),
        data.line(),
        health.line(),
        (deadline - start).as_secs_f64(),
        node.alive()
    ))
}
