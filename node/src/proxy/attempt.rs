//! One attempt at one target: the upstream request, its first byte (a
//! stream's first chunk), a plain answer read whole, an error answer named
//! by its status; and two attempts raced when the first is hedged. An
//! attempt that fails says why in an [`AttemptError`]; the failover decides
//! what follows.

use std::borrow::Cow;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use proto::config::UpstreamKind;

use super::failover::Leg;
use super::finish::Finish;
use super::forms::Form;
use super::headers::{X_UPSTREAM_REQUEST_ID, upstream_request_id};
use super::ready::{PendingStream, Ready};
use super::request::{build_request, stream_shape, unix_now};
use super::{Call, JSON, Proxy, ProxyBody};
use crate::error::{AttemptError, anthropic_error_to_openai, openai_error_to_anthropic};
use crate::health::{Outcome, cooldown};
use crate::responses;
use crate::routing::{Dialect, Endpoint, InFlight, Route, Target, Translation};
use crate::scrub::Scrubber;
use crate::translate::{chat_to_messages, messages_to_chat};
use crate::upstream::{SendError, UpstreamBody};
use crate::usage;

/// What a plain answer that reports no usage is charged: an estimate from
/// the request's size and the answer's (`usage::unreported`); nothing for
/// `count_tokens`, which is free.
fn unreported(form: &Form, answer_bytes: usize) -> Option<usage::Usage> {
    let generates = match form.endpoint {
        Endpoint::CountTokens => return None,
        Endpoint::Embeddings => false,
        Endpoint::ChatCompletions
        | Endpoint::Completions
        | Endpoint::Messages
        | Endpoint::Responses => true,
    };
    Some(usage::unreported::answer_estimate(
        form.body.len(),
        answer_bytes,
        generates,
    ))
}

impl Proxy {
    /// One attempt at one target. On success the answer is ready to send:
    /// a plain answer read whole, or a stream whose first chunk arrived.
    pub(super) async fn attempt(
        &self,
        call: &Call<'_>,
        route: &Route,
        target: &Target,
        in_flight: InFlight,
        budget: Duration,
        deadline: Instant,
    ) -> Result<Ready, AttemptError> {
        let upstream = &target.upstream;
        let Some(form) = call.forms.for_upstream(&upstream.config) else {
            // Not reached: the plan holds only targets with a form.
            return Err(AttemptError::Body {
                cause: "this target cannot answer the request's endpoint".into(),
                over_limit: false,
            });
        };
        let request = build_request(call, form, target);
        let started = Instant::now();
        let finish = Finish {
            health: &self.health,
            route,
            target,
            key: &call.key,
            tenants: self.tenants.as_ref(),
            started,
            timed: form.endpoint != Endpoint::CountTokens,
            prompt_bytes: form.body.len(),
        };
        let timed_out = |ttfb, after| {
            let error = AttemptError::Timeout { after };
            finish.failed(&error, Some(ttfb));
            error
        };
        let failed = |error: AttemptError| {
            finish.failed(&error, None);
            error
        };

        // Deadlines from `started` and `ttfb`, read once each: the clock
        // is read a few times per request, not once per timeout.
        let sent = upstream.pools.send(request);
        let response = match tokio::time::timeout_at(started + budget, sent).await {
            Err(_) => return Err(timed_out(budget, budget)),
            Ok(Err(e)) => return Err(failed(client_error(&e))),
            Ok(Ok(sent)) => sent,
        };
        let status = response.status();
        let ttfb = started.elapsed();

        if status.is_success() && call.stream {
            let (parts, mut body) = response.into_parts();
            let first = match tokio::time::timeout_at(started + budget, first_data(&mut body)).await
            {
                Err(_) => return Err(timed_out(budget, budget)),
                Ok(Err(ended)) => return Err(failed(ended)),
                Ok(Ok(first)) => first,
            };
            let ttfb = started.elapsed();
            let sse = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let shape = stream_shape(call, form, target);
            let content_type = if form.translation.changes_api() {
                Some(HeaderValue::from_static("text/event-stream"))
            } else {
                parts
                    .headers
                    .get(CONTENT_TYPE)
                    .map(|v| call.scrub.header(v))
            };
            return Ok(Ready::Stream(Box::new(PendingStream {
                status,
                content_type,
                upstream_id: upstream_request_id(&parts.headers, call.scrub),
                first,
                body,
                sse,
                idle_timeout: route.first_byte_timeout,
                held_max: call.max_response_bytes,
                ends_by: Instant::now().checked_add(call.max_stream),
                scrub: call.scrub.clone(),
                shape,
                done: finish.stream(ttfb, in_flight),
            })));
        }

        let (parts, body) = response.into_parts();
        if status.is_success() {
            let left = deadline.saturating_duration_since(started + ttfb);
            let limited = Limited::new(body, call.max_response_bytes);
            let read = tokio::time::timeout_at(deadline, limited.collect());
            let bytes = match read.await {
                Err(_) => return Err(timed_out(ttfb, left)),
                Ok(Err(e)) => {
                    return Err(failed(AttemptError::Body {
                        over_limit: e.is::<http_body_util::LengthLimitError>(),
                        cause: e.to_string(),
                    }));
                }
                Ok(Ok(collected)) => call.scrub.bytes(collected.to_bytes()),
            };
            let translated = match form.translation {
                Translation::None => Ok(bytes.clone()),
                Translation::TagResponses => Ok(responses::tag_answer(
                    bytes.clone(),
                    &upstream.id,
                    call.owner(),
                )),
                Translation::MessagesToChat => messages_to_chat::response(&bytes),
                Translation::ChatToMessages => chat_to_messages::response(&bytes, unix_now()),
            };
            let answer = match translated {
                Ok(answer) => answer,
                Err(e) => {
                    return Err(failed(AttemptError::Body {
                        cause: format!("the answer could not be translated: {e}"),
                        over_limit: false,
                    }));
                }
            };
            // The usage (the upstream's, before any translation) is for the
            // log line and the cost: parsing the answer again is skipped
            // when neither is wanted.
            let (usage, estimated) = if target.price.is_known()
                || self.tenants.is_some()
                || tracing::enabled!(tracing::Level::INFO)
            {
                match usage::from_json(&bytes) {
                    Some(usage) => (Some(usage), false),
                    None => (unreported(form, bytes.len()), true),
                }
            } else {
                (None, false)
            };
            let cost = finish.plain(Outcome::Success, status, ttfb, usage);
            let mut out = ProxyBody::bytes(answer).answer(status);
            // An estimate is charged, but never told as the answer's cost.
            if let Some(cost) = cost
                .filter(|_| !estimated)
                .and_then(|c| HeaderValue::from_str(&c.to_string()).ok())
            {
                out.headers_mut().insert(usage::COST_HEADER, cost);
            }
            if form.translation.changes_api() {
                out.headers_mut().insert(CONTENT_TYPE, JSON.clone());
            } else {
                copy_header(&parts.headers, out.headers_mut(), &CONTENT_TYPE, call.scrub);
            }
            give_upstream_id(&parts.headers, &mut out, call.scrub);
            return Ok(Ready::Plain(out));
        }

        // An error answer: read a little of it, to name it and to keep the
        // connection reusable.
        let detail = read_error_detail(body).await;
        let mut error = AttemptError::status(status, &parts.headers, None);
        if error.retryable() {
            if let AttemptError::Status { message, .. } = &mut error {
                *message = detail.message(call.scrub);
            }
            let error = failed(error);
            // A provider's `Retry-After` is honoured on every node: cooled
            // after its sample is queued, so the report it triggers holds it.
            if cooldown::cools(status.as_u16())
                && let Some(wait) = cooldown::requested(&parts.headers, crate::tenants::now_ms())
            {
                self.health.cool(upstream, wait);
            }
            return Err(error);
        }
        // The client's own mistake (400, 413, 422…): the upstream's answer
        // is the right one to give, and no other target would differ.
        finish.plain(Outcome::ClientError, status, ttfb, None);
        let body = call.scrub.bytes(detail.body);
        // In the client's shape when the upstream speaks the other API.
        let body = match (call.dialect, upstream.config.kind) {
            (Dialect::Anthropic, UpstreamKind::Openai | UpstreamKind::Azure) => {
                openai_error_to_anthropic(status, &body)
            }
            (Dialect::OpenAi, UpstreamKind::Anthropic) => anthropic_error_to_openai(status, &body),
            _ => body,
        };
        let mut out = ProxyBody::bytes(body).answer(status);
        if form.translation.changes_api() {
            out.headers_mut().insert(CONTENT_TYPE, JSON.clone());
        } else {
            copy_header(&parts.headers, out.headers_mut(), &CONTENT_TYPE, call.scrub);
        }
        give_upstream_id(&parts.headers, &mut out, call.scrub);
        Ok(Ready::Plain(out))
    }
}

/// `error` without the node's keys in any text the network wrote into it:
/// every failure passes here on its way to the log, the events and the
/// client's 502.
pub(super) fn scrubbed(error: AttemptError, scrub: &Scrubber) -> AttemptError {
    error.map_text(|text| match scrub.text(&text) {
        Cow::Owned(clean) => clean,
        Cow::Borrowed(_) => text,
    })
}

/// Two attempts at once: the first answer wins and the other is cancelled
/// (dropped, which closes its upstream request); the leg says which won.
/// Both failures are returned, in the order they came, if neither answers.
pub(super) async fn race<A, B>(
    mut first: Pin<&mut A>,
    second: B,
) -> Result<(Ready, Leg), Vec<(Leg, AttemptError)>>
where
    A: Future<Output = Result<Ready, AttemptError>>,
    B: Future<Output = Result<Ready, AttemptError>>,
{
    tokio::pin!(second);
    let mut failures = Vec::with_capacity(2);
    let (mut first_done, mut second_done) = (false, false);
    while !(first_done && second_done) {
        tokio::select! {
            outcome = &mut first, if !first_done => match outcome {
                Ok(ready) => return Ok((ready, Leg::Primary)),
                Err(failure) => {
                    first_done = true;
                    failures.push((Leg::Primary, failure));
                }
            },
            outcome = &mut second, if !second_done => match outcome {
                Ok(ready) => return Ok((ready, Leg::Hedge)),
                Err(failure) => {
                    second_done = true;
                    failures.push((Leg::Hedge, failure));
                }
            },
        }
    }
    Err(failures)
}

/// The first data frame of a streamed answer.
pub(super) async fn first_data(body: &mut UpstreamBody) -> Result<Bytes, AttemptError> {
    loop {
        match body.frame().await {
            None => return Err(AttemptError::EndedEarly { cause: None }),
            Some(Err(e)) => {
                return Err(AttemptError::EndedEarly {
                    cause: Some(e.to_string()),
                });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(data);
                }
            }
        }
    }
}

struct ErrorDetail {
    body: Bytes,
}

impl ErrorDetail {
    /// The message of an OpenAI-style error body, if there is one, without
    /// the node's keys or anything like a key (scrubbed before it is cut,
    /// so a cut cannot leave half a key the scrubber misses).
    fn message(&self, scrub: &Scrubber) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            message: String,
        }
        serde_json::from_slice::<Envelope>(&self.body)
            .ok()
            .map(|e| {
                let mut m = scrub.message(&e.error.message);
                if m.len() > 200 {
                    let mut cut = 200;
                    while !m.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    m.truncate(cut);
                    m.push('…');
                }
                m
            })
    }
}

async fn read_error_detail(body: UpstreamBody) -> ErrorDetail {
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        Limited::new(body, 1 << 20).collect(),
    );
    // A body not read whole (too slow, too large) is dropped, and with it
    // the connection: only a body read to its end leaves it reusable.
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    ErrorDetail { body }
}

/// A request that got no answer head: the connection failed, or the
/// request on it, with the chain of causes.
pub(super) fn client_error(e: &SendError) -> AttemptError {
    AttemptError::Connect {
        connected: e.connected(),
        causes: e.causes(),
    }
}

/// `x-upstream-request-id` on the client's answer, when the upstream
/// sent a sane request id ([`upstream_request_id`]).
fn give_upstream_id(from: &HeaderMap, to: &mut Response<ProxyBody>, scrub: &Scrubber) {
    if let Some(id) = upstream_request_id(from, scrub) {
        to.headers_mut().insert(X_UPSTREAM_REQUEST_ID.clone(), id);
    }
}

fn copy_header(from: &HeaderMap, to: &mut HeaderMap, name: &HeaderName, scrub: &Scrubber) {
    if let Some(v) = from.get(name) {
        to.insert(name.clone(), scrub.header(v));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use http::StatusCode;

    #[test]
    fn error_detail_names_the_upstream_message() {
        let d = ErrorDetail {
            body: Bytes::from_static(br#"{"error":{"message":"overloaded","type":"x"}}"#),
        };
        let none = Scrubber::default();
        let summary = |d: &ErrorDetail, scrub| {
            AttemptError::status(StatusCode::BAD_GATEWAY, &HeaderMap::new(), d.message(scrub))
                .to_string()
        };
        assert_eq!(summary(&d, &none), "HTTP 502 (overloaded)");
        assert_eq!(
            summary(
                &ErrorDetail {
                    body: Bytes::from_static(b"<html>")
                },
                &none
            ),
            "HTTP 502"
        );
        let key = "UPSECRETB+x/y=Zq81";
        let long = format!("{} {key} end", "x".repeat(185));
        let d = ErrorDetail {
            body: Bytes::from(
                serde_json::to_vec(&serde_json::json!({"error": {"message": long}})).unwrap(),
            ),
        };
        let summary = summary(&d, &Scrubber::new([key]));
        assert!(!summary.contains("UPSECRETB"), "{summary}");
    }
}
