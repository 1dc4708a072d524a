//! Runs the generator against a tiny in-process HTTP server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// Delay between the chunks of `/stream`.
const CHUNK_GAP: Duration = Duration::from_millis(40);
/// How long `/slow` waits before answering.
const SLOW: Duration = Duration::from_millis(300);

async fn handle(
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let full = |s: &'static str| Full::new(Bytes::from_static(s.as_bytes())).boxed();
    let response = match req.uri().path() {
        "/plain" => Response::builder()
            .header("x-meridian-upstream", "up-a")
            .header("x-meridian-attempts", "2")
            .body(full("{}")),
        "/stream" => {
            let chunks = stream::unfold(0u32, |n| async move {
                if n == 3 {
                    return None;
                }
                if n > 0 {
                    tokio::time::sleep(CHUNK_GAP).await;
                }
                let frame = Frame::data(Bytes::from(format!("data: {n}\n\n")));
                Some((Ok::<_, Infallible>(frame), n + 1))
            });
            Response::builder().body(StreamBody::new(chunks).boxed())
        }
        "/slow" => {
            tokio::time::sleep(SLOW).await;
            Response::builder().body(full("late"))
        }
        _ => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(full("no")),
    };
    Ok(response.unwrap())
}

async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(
                http1::Builder::new().serve_connection(TokioIo::new(tcp), service_fn(handle)),
            );
        }
    });
    addr
}

fn get(addr: SocketAddr, path: &str, kind: RequestKind) -> Mix {
    Mix::single(RequestSpec::new(Method::GET, &format!("http://{addr}{path}"), kind).unwrap())
}

fn open(rate: f64, millis: u64, max_in_flight: usize) -> OpenLoop {
    OpenLoop {
        max_in_flight,
        ..OpenLoop::new(rate, Duration::from_millis(millis))
    }
}

fn keep(timeout: Duration) -> RunOptions {
    RunOptions {
        timeout,
        keep_records: true,
        seed: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_on_schedule_and_records_headers() {
    let addr = serve().await;
    let report = Generator::new(16)
        .open_loop(
            &get(addr, "/plain", RequestKind::Plain),
            &open(200.0, 500, 64),
            &keep(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let s = &report.summary;
    assert_eq!(s.counts.ok, 100, "{s:?}");
    assert_eq!(s.counts.total(), 100);
    assert_eq!(s.offered_rate, Some(200.0));
    assert!(s.wall_secs >= 0.495, "{s:?}");
    assert!(s.achieved_rate > 150.0 && s.achieved_rate <= 202.0, "{s:?}");
    let mut records = report.records.unwrap();
    records.sort_by_key(|r| r.scheduled_us);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.scheduled_us, i as u64 * 5_000);
        assert_eq!(r.upstream.as_deref(), Some("up-a"));
        assert_eq!(r.attempts, Some(2));
        assert!(r.ttfb_us <= r.latency_us);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ttfb_is_the_first_chunk_not_the_last() {
    let addr = serve().await;
    let mix = Mix::new(vec![
        (
            1,
            RequestSpec::new(
                Method::GET,
                &format!("http://{addr}/stream"),
                RequestKind::Stream,
            )
            .unwrap(),
        ),
        (
            0,
            RequestSpec::new(
                Method::GET,
                &format!("http://{addr}/plain"),
                RequestKind::Plain,
            )
            .unwrap(),
        ),
    ])
    .unwrap();
    let report = Generator::new(8)
        .open_loop(&mix, &open(50.0, 200, 64), &keep(Duration::from_secs(5)))
        .await
        .unwrap();
    let s = &report.summary;
    assert_eq!(s.counts.ok, 10, "{s:?}");
    for r in report.records.unwrap() {
        assert_eq!(r.spec, 0);
        let (ttfb, total) = (r.ttfb_us.unwrap(), r.latency_us.unwrap());
        assert!(total >= ttfb + 2 * 35_000, "ttfb {ttfb} total {total}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_drops_and_timeout_is_recorded() {
    let addr = serve().await;
    let generator = Generator::new(4);
    // 20 requests in 200 ms against a 300 ms answer with 2 slots: 2 sent, 18 dropped.
    let capped = generator
        .open_loop(
            &get(addr, "/slow", RequestKind::Plain),
            &open(100.0, 200, 2),
            &keep(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(capped.summary.counts.ok, 2, "{:?}", capped.summary);
    assert_eq!(capped.summary.counts.dropped, 18);
    let timed_out = generator
        .open_loop(
            &get(addr, "/slow", RequestKind::Plain),
            &open(20.0, 100, 8),
            &keep(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    assert_eq!(
        timed_out.summary.counts.timeout, 2,
        "{:?}",
        timed_out.summary
    );
    assert_eq!(timed_out.summary.latency_us.count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_kind() {
    let addr = serve().await;
    let generator = Generator::new(4);
    let plan = open(100.0, 50, 8);
    let opts = keep(Duration::from_secs(5));
    let unavailable = generator
        .open_loop(&get(addr, "/nope", RequestKind::Plain), &plan, &opts)
        .await
        .unwrap();
    assert_eq!(unavailable.summary.counts.http_status.get(&503), Some(&5));
    // A port that was just released refuses connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = generator
        .open_loop(&get(closed, "/plain", RequestKind::Plain), &plan, &opts)
        .await
        .unwrap();
    assert_eq!(
        refused.summary.counts.connect_error, 5,
        "{:?}",
        refused.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_keeps_workers_busy_for_the_duration() {
    let addr = serve().await;
    let generator = Generator::new(4);
    let report = generator
        .closed_loop(
            &get(addr, "/plain", RequestKind::Plain),
            &ClosedLoop {
                concurrency: 4,
                duration: Duration::from_millis(300),
            },
            &RunOptions::default(),
        )
        .await
        .unwrap();
    let s = &report.summary;
    assert!(s.counts.ok > 20, "{s:?}");
    assert_eq!(s.counts.failed(), 0);
    assert_eq!(s.offered_rate, None);
    assert!(report.records.is_none());
    let (status, body) = generator
        .fetch(
            &RequestSpec::new(
                Method::GET,
                &format!("http://{addr}/plain"),
                RequestKind::Plain,
            )
            .unwrap(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"{}"[..]));
}
