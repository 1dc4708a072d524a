//! What the proxy answers with: one body type for buffered answers and
//! relayed streams, so every handler returns the same response type.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use crate::relay::Relay;
use crate::upstream::UpstreamBody;

/// The body of every answer: a whole buffer, or a relayed stream.
pub enum ProxyBody {
    /// Buffered answers and errors.
    Full(Full<Bytes>),
    /// A streamed answer.
    Stream(Box<Relay<UpstreamBody>>),
}

/// The most fields the proxy gives an answer on its way out: its content
/// type, cost, cache control and upstream request id, `x-upstream`,
/// `x-attempts`, `x-fallback`, `x-request-id`, `x-region`, and six
/// rate-limit fields.
const ANSWER_FIELDS: usize = 15;

impl ProxyBody {
    pub(super) fn bytes(b: Bytes) -> Self {
        Self::Full(Full::new(b))
    }

    /// An answer with this body, its field map sized once for every field
    /// the proxy adds (grown field by field, it would be allocated three
    /// times over, two allocations each).
    pub(super) fn answer(self, status: StatusCode) -> Response<Self> {
        let mut out = Response::new(self);
        *out.status_mut() = status;
        *out.headers_mut() = HeaderMap::with_capacity(ANSWER_FIELDS);
        out
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(b) => Pin::new(b).poll_frame(cx),
            Self::Stream(r) => Pin::new(r.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_end_stream(),
            Self::Stream(r) => r.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => b.size_hint(),
            Self::Stream(r) => r.size_hint(),
        }
    }
}
