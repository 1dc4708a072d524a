//! The data plane: answers OpenAI requests as the current behaviour says
//! (delays, injected errors, 429s, stalls, cut connections).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use rand::rngs::SmallRng;
use serde::de::DeserializeOwned;

use super::Shared;
use super::behavior::{Action, Latency};
use super::body::{self, Body, MockError, ReadError};
use super::openai::{self, Api, ChatRequest, Completion, CompletionRequest, EmbeddingRequest};
use super::stats::{Endpoint, Outcome};

/// Largest request body read; beyond it the answer is 413.
const MAX_REQUEST: usize = 16 << 20;

/// How long a stalled request holds its connection if the client never leaves.
const STALL_LIMIT: Duration = Duration::from_secs(600);

/// The answer a request would get if nothing goes wrong, before faults apply.
enum Answer {
    /// A JSON body.
    Json(Bytes),
    /// An SSE stream.
    Stream {
        completion: Completion,
        include_usage: bool,
    },
}

/// Answers one data-plane request.
pub async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, MockError> {
    let endpoint = Endpoint::from_path(request.uri().path());
    let authorization = request.headers().get(header::AUTHORIZATION);
    let n = shared
        .stats
        .begin(endpoint, request.version(), authorization.is_some());

    if let Some(expected) = &shared.authorization
        && authorization.map(HeaderValue::as_bytes) != Some(expected.as_bytes())
    {
        shared.stats.outcome(Outcome::Unauthorized);
        return Ok(body::error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ));
    }

    let behavior = shared.behavior();
    let answer = match prepare(&shared, n, endpoint, behavior.chunks, request).await {
        Ok(answer) => answer,
        Err(Rejected::Respond(outcome, response)) => {
            shared.stats.outcome(outcome);
            return Ok(*response);
        }
        Err(Rejected::Broken(e)) => return Err(e),
    };
    let plan = behavior.plan(shared.seed, n);
    if !plan.first_byte.is_zero() {
        tokio::time::sleep(plan.first_byte).await;
    }
    let (outcome, response) = match plan.action {
        Action::RateLimit => (Outcome::RateLimited, rate_limited(behavior.retry_after_s)),
        Action::Error => (Outcome::Error, injected_error(behavior.error_status)),
        Action::Stall => {
            shared.stats.outcome(Outcome::Stalled);
            // Dropped by hyper as soon as the client goes away.
            tokio::time::sleep(STALL_LIMIT).await;
            return Err(MockError::StallExpired);
        }
        Action::Cut(after) => (
            Outcome::Cut,
            respond(answer, &behavior.chunk_delay, plan.rng, Some(after)),
        ),
        Action::Answer => (
            Outcome::Ok,
            respond(answer, &behavior.chunk_delay, plan.rng, None),
        ),
    };
    shared.stats.outcome(outcome);
    Ok(response)
}

/// Why a request gets no [`Answer`].
enum Rejected {
    /// A client error, answered now (boxed: this is the rare path).
    Respond(Outcome, Box<Response<Body>>),
    /// The connection broke while reading.
    Broken(MockError),
}

/// Reads and parses the request and builds its answer.
async fn prepare(
    shared: &Shared,
    n: u64,
    endpoint: Endpoint,
    chunks: u32,
    request: Request<Incoming>,
) -> Result<Answer, Rejected> {
    let expected = match endpoint {
        Endpoint::Models => Method::GET,
        _ => Method::POST,
    };
    if endpoint == Endpoint::Other || request.method() != expected {
        let response = body::not_found(request.method(), request.uri().path());
        return Err(Rejected::Respond(Outcome::NotFound, Box::new(response)));
    }
    if endpoint == Endpoint::Models {
        return Ok(Answer::Json(shared.models_body.clone()));
    }
    let bytes = match body::read_body(request.into_body(), MAX_REQUEST).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => {
            return Err(Rejected::Respond(
                Outcome::BadRequest,
                Box::new(body::too_large(MAX_REQUEST)),
            ));
        }
        Err(ReadError::Broken(e)) => return Err(Rejected::Broken(e)),
    };
    match endpoint {
        Endpoint::Chat => {
            let request: ChatRequest = parse(&bytes)?;
            shared.stats.model(&request.model);
            let prompt_tokens = request.prompt_tokens();
            let max_tokens = request.max_completion_tokens.or(request.max_tokens);
            let completion = Completion::new(
                Api::Chat,
                n,
                request.model,
                prompt_tokens,
                chunks,
                max_tokens,
            );
            Ok(completion_answer(
                completion,
                request.stream,
                request.stream_options,
            ))
        }
        Endpoint::Completions => {
            let request: CompletionRequest = parse(&bytes)?;
            shared.stats.model(&request.model);
            let prompt_tokens = request.prompt.tokens();
            let completion = Completion::new(
                Api::Completions,
                n,
                request.model,
                prompt_tokens,
                chunks,
                request.max_tokens,
            );
            Ok(completion_answer(
                completion,
                request.stream,
                request.stream_options,
            ))
        }
        _ => {
            let request: EmbeddingRequest = parse(&bytes)?;
            shared.stats.model(&request.model);
            openai::embeddings_body(&request)
                .map(Answer::Json)
                .map_err(|e| {
                    let response = body::error(
                        StatusCode::BAD_REQUEST,
                        &e.to_string(),
                        "invalid_request_error",
                        None,
                    );
                    Rejected::Respond(Outcome::BadRequest, Box::new(response))
                })
        }
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejected> {
    serde_json::from_slice(bytes)
        .map_err(|e| Rejected::Respond(Outcome::BadRequest, Box::new(body::bad_json(&e))))
}

fn completion_answer(
    completion: Completion,
    stream: Option<bool>,
    options: Option<openai::StreamOptions>,
) -> Answer {
    if stream == Some(true) {
        Answer::Stream {
            completion,
            include_usage: options.is_some_and(|o| o.include_usage),
        }
    } else {
        Answer::Json(completion.body())
    }
}

/// 429 the way OpenAI sends it.
fn rate_limited(retry_after_s: u64) -> Response<Body> {
    let message =
        format!("Rate limit reached (meridian-mock). Please try again in {retry_after_s}s.");
    let mut response = body::error(
        StatusCode::TOO_MANY_REQUESTS,
        &message,
        "requests",
        Some("rate_limit_exceeded"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// The injected `error_status`.
fn injected_error(status: u16) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let message = format!("Injected error {} (meridian-mock)", status.as_u16());
    body::error(status, &message, kind, None)
}

/// Sends the answer, cut after `cut` chunks when asked.
fn respond(
    answer: Answer,
    chunk_delay: &Latency,
    rng: SmallRng,
    cut: Option<u32>,
) -> Response<Body> {
    match answer {
        Answer::Json(bytes) => match cut {
            None => body::json(StatusCode::OK, bytes),
            Some(_) => cut_json(bytes),
        },
        Answer::Stream {
            completion,
            include_usage,
        } => {
            let sse = Sse {
                completion,
                include_usage,
                chunk_delay: chunk_delay.clone(),
                rng,
                cut,
                sent: 0,
                stage: Stage::Content,
            };
            let mut response = body::response(StatusCode::OK, sse.into_body(), "text/event-stream");
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    }
}

/// A JSON answer that announces its full length, sends half, then aborts.
fn cut_json(bytes: Bytes) -> Response<Body> {
    let len = bytes.len();
    let half = bytes.slice(..len / 2);
    let frames = stream::unfold(Some(half), |half| async move {
        match half {
            Some(half) => Some((Ok(Frame::data(half)), None)),
            None => Some((Err(abort().await), None)),
        }
    });
    let body = StreamBody::new(frames).boxed_unsync();
    let mut response = body::response(StatusCode::OK, body, "application/json");
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// Where an SSE stream is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Content,
    Usage,
    Done,
    Finished,
}

/// An SSE answer being sent: one body frame per event, `chunk_delay` apart.
struct Sse {
    completion: Completion,
    include_usage: bool,
    chunk_delay: Latency,
    rng: SmallRng,
    cut: Option<u32>,
    sent: u32,
    stage: Stage,
}

impl Sse {
    fn into_body(self) -> Body {
        let frames = stream::unfold(self, |mut sse| async move {
            let item = sse.next().await?;
            Some((item.map(Frame::data), sse))
        });
        StreamBody::new(frames).boxed_unsync()
    }

    /// The next event, the cut, or `None` at the end.
    async fn next(&mut self) -> Option<Result<Bytes, MockError>> {
        let cut_now = match (self.stage, self.cut) {
            (Stage::Finished, _) | (_, None) => false,
            (Stage::Content, Some(after)) => self.sent >= after,
            (_, Some(_)) => true,
        };
        if cut_now {
            self.stage = Stage::Finished;
            self.pause().await;
            return Some(Err(abort().await));
        }
        match self.stage {
            Stage::Content => {
                self.pause().await;
                let event = self.completion.chunk(self.sent);
                self.sent += 1;
                if self.sent >= self.completion.chunks {
                    self.stage = if self.include_usage {
                        Stage::Usage
                    } else {
                        Stage::Done
                    };
                }
                Some(Ok(event))
            }
            Stage::Usage => {
                self.stage = Stage::Done;
                Some(Ok(self.completion.usage_chunk()))
            }
            Stage::Done => {
                self.stage = Stage::Finished;
                Some(Ok(Bytes::from_static(openai::DONE)))
            }
            Stage::Finished => None,
        }
    }

    /// The delay before every chunk but the first (which follows the headers).
    async fn pause(&mut self) {
        if self.sent > 0 {
            let delay = self.chunk_delay.sample(&mut self.rng);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// How long an abort waits for what was already sent to leave: hyper's
/// HTTP/2 side discards a stream's queued frames when the stream is reset.
const ABORT_SETTLE: Duration = Duration::from_millis(10);

/// Waits until what was sent (headers, earlier frames) is on the wire, then
/// gives the error that makes hyper drop the connection (HTTP/1) or reset the
/// stream (HTTP/2).
async fn abort() -> MockError {
    tokio::time::sleep(ABORT_SETTLE).await;
    MockError::Cut
}
