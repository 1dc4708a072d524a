//! A connection's service, as its watchdog sees it: each request counted
//! as in progress until its answer's body is done with, and, where hyper
//! sends the answers, each body watched for a client that takes none of it
//! ([`super::stall`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use super::limits::{Activity, InRequest};
use super::stall::Handed;

/// The connection's service: each request counted on `activity` until its
/// answer's body is done, and its answer computed in a box of its own.
///
/// An h2 stream's task holds the service's future in place until the
/// stream ends, so a future kept inline (over 3 KB for the proxy's) would
/// be paid again by every open stream long after its answer's head went
/// out; boxed, it is freed once the head is ready and a stream keeps only
/// its body. One allocation per request buys that.
pub(super) fn tracked<R, F, Fut, B>(
    handler: F,
    activity: Arc<Activity>,
    watch: StallWatch,
) -> impl Fn(R) -> Boxed<B> + Clone
where
    F: Fn(R) -> Fut + Clone,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Send + 'static,
{
    move |req| {
        let request = activity.begin();
        let handed = match watch {
            StallWatch::On => Some(activity.stalls.register()),
            StallWatch::Off => None,
        };
        // A combinator, as in the parent's `holding`: an async block
        // awaiting the handler's future would box it twice over.
        Box::pin(handler(req).map(move |answered| {
            answered.map(|response| {
                response.map(|body| Tracked {
                    body,
                    _request: request,
                    handed,
                })
            })
        }))
    }
}

/// Whether a connection's answers are watched for a client that takes
/// none of them ([`super::stall`]): those hyper sends. The node's own
/// HTTP/1.1 server bounds each write itself, and pays no registration per
/// request.
#[derive(Clone, Copy)]
pub(super) enum StallWatch {
    /// Watched: hyper sends the answers.
    On,
    /// Not watched: the node's own server bounds its writes.
    Off,
}

/// A boxed answer of [`tracked`]'s service.
pub(super) type Boxed<B> =
    Pin<Box<dyn Future<Output = Result<Response<Tracked<B>>, Infallible>> + Send>>;

/// An answer's body that keeps its request counted as in progress until the
/// body is done with, and says when it waits on its client.
pub struct Tracked<B> {
    pub(super) body: B,
    pub(super) _request: InRequest,
    /// `None` where the connection's own server bounds its writes.
    pub(super) handed: Option<Arc<Handed>>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(handed) = &this.handed else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        // Polled again: what it handed over was taken.
        handed.taken();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
        {
            handed.handed(crate::clock::monotonic_ms());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
