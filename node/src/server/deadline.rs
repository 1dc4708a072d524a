//! The admin listener's answers: each request body gets a deadline
//! ([`Deadline`]), so a client that trickles a body cannot hold an admin
//! connection and the handler reading it past `body_timeout`; the handler
//! sees a failed read ([`BodyTimedOut`]) and answers an error.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Answers one admin request with `router`, its body bounded by
/// `body_timeout` (a body still incomplete then fails to read, and the
/// handler reading it answers an error).
pub async fn admin_answer(
    router: axum::Router,
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Result<Response<axum::body::Body>, Infallible> {
    use tower_service::Service as _;
    let req = req.map(|body| axum::body::Body::new(Deadline::new(body, body_timeout)));
    // A `Router` is always ready; `call` needs no `poll_ready` first.
    router.clone().call(req).await
}

/// A request body that fails once its deadline passes before its end.
struct Deadline<B> {
    body: B,
    timer: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl<B> Deadline<B> {
    fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            timer: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// The error of a body whose deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
struct BodyTimedOut(Duration);

impl<B> Body for Deadline<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
