//! The Responses API's calls on a stored response (`GET`, `DELETE`,
//! `cancel`, `input_items`): the response lives at the upstream that made
//! it, which its id names ([`crate::responses`]), so the call goes there
//! and nowhere else, with no route, no failover and no health sample (a
//! lookup is not a generation, and its latency says nothing of the
//! upstream's). What comes back is passed on with its ids tagged, a stream
//! event by event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;
use tracing::info;

use super::attempt::{client_error, first_data};
use super::{Admission, Answered, Failed, Proxy, ProxyBody, X_REQUEST_ID};
use crate::error::{AttemptError, Attempts, ProxyError, Tried};
use crate::relay::{OnStreamEnd, Relay, Shape, StreamEnd, openai_stream_error};
use crate::responses::{Owner, ResponsesCall, TagStream, tag_answer};
use crate::routing::{Endpoint, RoutingSnapshot, Upstream};
use crate::server::RequestBody;
use crate::usage::Usage;

impl Proxy {
    /// Sends `call` to the upstream its id names and passes the answer on.
    pub(super) async fn stored_response(
        &self,
        call: ResponsesCall,
        req: Request<RequestBody>,
        snapshot: &RoutingSnapshot,
        request_id: &HeaderValue,
        key: &Arc<str>,
    ) -> Result<Answered, Failed> {
        let Some(stored) = call.stored() else {
            // Not reached: a new response is routed, not sent here.
            return Err(ProxyError::UnknownPath {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
            }
            .into());
        };
        // Only an upstream of this cluster that serves the Responses API;
        // an id naming anything else is as unknown as a made-up id.
        let upstream = snapshot
            .upstreams
            .iter()
            .find(|u| *u.id == *stored.upstream && Endpoint::Responses.on(&u.config).is_some())
            .ok_or_else(|| ProxyError::NotServed {
                message: format!(
                    "No response `{}` is reachable here: `{}` is not one of this cluster's \
                     Responses API upstreams.",
                    stored.id, stored.upstream
                ),
                not_found: true,
            })?;
        if !upstream.usable() {
            return Err(ProxyError::NoUsableUpstream(upstream.id.to_string()).into());
        }
        let limit = snapshot.proxy.max_in_flight;
        let admission = Admission(self.in_flight.clone());
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= limit {
            return Err(ProxyError::Overloaded { limit }.into());
        }
        let failed = |error: AttemptError| -> Failed {
            let timed_out = error.is_timeout();
            let attempts = Attempts::from(vec![Tried::Failed {
                upstream: upstream.id.clone(),
                model: Arc::from("responses"),
                error,
            }]);
            Failed {
                error: if timed_out {
                    ProxyError::UpstreamsTimedOut { attempts }
                } else {
                    ProxyError::UpstreamsFailed { attempts }
                },
                attempts: 1,
                routed: false,
            }
        };

        let request =
            stored_request(&call, upstream, req.method().clone(), request_id).map_err(|_| {
                failed(AttemptError::Connect {
                    connected: false,
                    causes: Vec::new(),
                })
            })?;
        let started = Instant::now();
        let first_byte = Duration::from_millis(snapshot.proxy.first_byte_timeout_ms);
        let deadline = started + Duration::from_millis(snapshot.proxy.request_timeout_ms);
        let sent = upstream.pools.send(request);
        let response = match tokio::time::timeout(first_byte, sent).await {
            Err(_) => return Err(failed(AttemptError::Timeout { after: first_byte })),
            Ok(Err(e)) => return Err(failed(client_error(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let (parts, mut body) = response.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| snapshot.scrub.header(v));
        let answered = |response: Response<ProxyBody>| Answered {
            response,
            upstream: upstream.id_header.clone(),
            attempts: 1,
            fallback: false,
        };
        snapshot.metrics.unrouted.inc(status.as_u16());

        if status.is_success() && call.streams() {
            let left = deadline.saturating_duration_since(Instant::now());
            let first = match tokio::time::timeout(left, first_data(&mut body)).await {
                Err(_) => return Err(failed(AttemptError::Timeout { after: left })),
                Ok(Err(e)) => return Err(failed(e)),
                Ok(Ok(first)) => first,
            };
            let shape = Shape {
                translator: Some(Box::new(TagStream::new(
                    &upstream.id,
                    self.seal.clone(),
                    key.clone(),
                ))),
                error_event: openai_stream_error,
            };
            let done = Box::new(StoredStreamEnd {
                upstream: upstream.id.clone(),
                started,
                _admission: admission,
            });
            let relay = Relay::with_shape(
                first,
                body,
                true,
                first_byte,
                snapshot.scrub.clone(),
                shape,
                done,
            )
            .held_max(snapshot.proxy.max_response_bytes);
            let mut out = ProxyBody::Stream(Box::new(relay)).answer(status);
            let headers = out.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return Ok(answered(out));
        }

        let left = deadline.saturating_duration_since(Instant::now());
        let limited = Limited::new(body, snapshot.proxy.max_response_bytes);
        let bytes = match tokio::time::timeout(left, limited.collect()).await {
            Err(_) => return Err(failed(AttemptError::Timeout { after: left })),
            Ok(Err(e)) => {
                return Err(failed(AttemptError::Body {
                    over_limit: e.is::<http_body_util::LengthLimitError>(),
                    cause: e.to_string(),
                }));
            }
            Ok(Ok(collected)) => snapshot.scrub.bytes(collected.to_bytes()),
        };
        // Errors (an unknown id: 404) pass as the upstream wrote them;
        // answers carry tagged ids.
        let bytes = if status.is_success() {
            tag_answer(bytes, &upstream.id, Owner::new(self.seal.as_deref(), key))
        } else {
            bytes
        };
        info!(upstream = %upstream.id, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "stored response call done");
        drop(admission);
        let mut out = ProxyBody::bytes(bytes).answer(status);
        if let Some(ct) = content_type {
            out.headers_mut().insert(CONTENT_TYPE, ct);
        }
        Ok(answered(out))
    }
}

/// The upstream request of a call on a stored response: the upstream's own
/// id in a path rebuilt from checked parts, its key, no body.
fn stored_request(
    call: &ResponsesCall,
    upstream: &Upstream,
    method: http::Method,
    request_id: &HeaderValue,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let base = upstream.config.base_url.trim_end_matches('/');
    let uri: Uri = format!("{base}{}", call.upstream_path()).parse()?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))?;
    let headers = request.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if let Some((name, value)) = upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    Ok(request)
}

/// The end of a relayed stored-response stream: its log line, and the
/// admission slot it held.
struct StoredStreamEnd {
    upstream: Arc<str>,
    started: Instant,
    _admission: Admission,
}

impl OnStreamEnd for StoredStreamEnd {
    fn finish(self: Box<Self>, end: StreamEnd, _usage: Option<Usage>, bytes: u64) {
        info!(upstream = %self.upstream, bytes, ms = self.started.elapsed().as_millis() as u64, end = ?end, "stored response stream done");
    }
}
