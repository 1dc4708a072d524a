//! An answer ready to go to the client: a plain one as it is, a stream
//! relayed from its first chunk on, holding the request's admission slot
//! until it ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use super::finish::StreamDone;
use super::headers::X_UPSTREAM_REQUEST_ID;
use super::{Admission, ProxyBody};
use crate::relay::{Relay, Shape};
use crate::scrub::Scrubber;
use crate::upstream::UpstreamBody;

/// How long a stream's upstream is read on after its client hangs up, for
/// the usage its last events report: long enough for the events that follow
/// an answer's last words, short enough that a client that stops a long
/// answer early costs little more generation.
const HANGUP_GRACE: Duration = Duration::from_secs(1);

/// An answer ready to go to the client, not yet holding the request's
/// admission slot (the winner of a hedge takes it).
pub(super) enum Ready {
    Plain(Response<ProxyBody>),
    Stream(Box<PendingStream>),
}

/// A stream whose first chunk has arrived.
pub(super) struct PendingStream {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<HeaderValue>,
    /// The upstream's request id, for `x-upstream-request-id`.
    pub(super) upstream_id: Option<HeaderValue>,
    pub(super) first: Bytes,
    pub(super) body: UpstreamBody,
    pub(super) sse: bool,
    pub(super) idle_timeout: Duration,
    /// The most of one unfinished event held (`proxy.max_response_bytes`).
    pub(super) held_max: usize,
    /// When the stream must have ended (`proxy.max_stream_ms`); `None`:
    /// past any instant the clock can hold.
    pub(super) ends_by: Option<Instant>,
    pub(super) scrub: Arc<Scrubber>,
    pub(super) shape: Shape,
    pub(super) done: StreamDone,
}

impl Ready {
    /// The response; a stream keeps the admission slot until it ends.
    pub(super) fn into_response(self, admission: Admission) -> Response<ProxyBody> {
        match self {
            Ready::Plain(response) => response,
            Ready::Stream(pending) => {
                let PendingStream {
                    status,
                    content_type,
                    upstream_id,
                    first,
                    body,
                    sse,
                    idle_timeout,
                    held_max,
                    ends_by,
                    scrub,
                    shape,
                    mut done,
                } = *pending;
                done._admission = Some(admission);
                let mut relay =
                    Relay::with_shape(first, body, sse, idle_timeout, scrub, shape, Box::new(done))
                        .held_max(held_max)
                        .drain_on_hangup(HANGUP_GRACE);
                if let Some(at) = ends_by {
                    relay = relay.ends_by(at);
                }
                let mut out = ProxyBody::Stream(Box::new(relay)).answer(status);
                if let Some(ct) = content_type {
                    out.headers_mut().insert(CONTENT_TYPE, ct);
                }
                if let Some(id) = upstream_id {
                    out.headers_mut().insert(X_UPSTREAM_REQUEST_ID.clone(), id);
                }
                out.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                out
            }
        }
    }
}
