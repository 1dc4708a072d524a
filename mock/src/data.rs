//! The data plane: answers OpenAI and Anthropic requests as the current
//! behaviour says (delays, injected errors, 429s, stalls, cut connections),
//! each error in the wire format of the path it answers.

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
use super::anthropic::{self, MessagesRequest};
use super::azure::{self, AzurePath};
use super::behavior::{Action, Behavior, Latency};
use super::body::{self, Body, MockError, ReadError};
use super::by_id;
use super::chat_tools::{self, Call};
use super::dialect::Dialect;
use super::events::{self, Events};
use super::openai::{self, Api, ChatRequest, Completion, CompletionRequest, EmbeddingRequest};
use super::responses::{ResponsesRequest, Stored};
use super::seen::{Seen, header_value};
use super::stats::{Endpoint, Outcome};
use super::tools::Turn;

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
    /// A stream of events framed up front (tool calls, Messages, Responses).
    Events(Events),
}

/// An answer, and the response to store once it is sent (`POST /v1/responses`).
struct Prepared {
    answer: Answer,
    keep: Option<Stored>,
}

impl From<Answer> for Prepared {
    fn from(answer: Answer) -> Self {
        Prepared { answer, keep: None }
    }
}

/// Answers one data-plane request.
pub async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, MockError> {
    let azure = azure::parse(request.uri());
    let endpoint = match &azure {
        Some(path) => path.endpoint,
        None => Endpoint::from_path(request.uri().path()),
    };
    let headers = request.headers();
    // `GET /v1/models` is both providers' path: a request with an
    // `anthropic-version` is Anthropic's (key in `x-api-key`, its shape).
    let dialect = if endpoint == Endpoint::Models && headers.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        Dialect::of(endpoint)
    };
    let authorization = headers.get(header::AUTHORIZATION);
    let n = shared
        .stats
        .begin(endpoint, request.version(), authorization.is_some());
    shared.stats.seen(azure.is_some(), || {
        let azure = azure.as_ref();
        Seen::of(
            headers,
            azure.map(|a| (a.deployment.as_str(), a.api_version.as_deref())),
        )
    });
    let behavior = shared.behavior();
    // Each provider's own header for it: OpenAI's, Anthropic's, Azure's.
    let id_name = match (&azure, dialect) {
        (Some(_), _) => "apim-request-id",
        (None, Dialect::Anthropic) => "request-id",
        (None, Dialect::OpenAi) => "x-request-id",
    };
    let id = match &behavior.request_id {
        Some(id) => header_value(id),
        None => header_value(&format!("req_mock_{n}")),
    };
    let mut response = answer(&shared, &behavior, n, (endpoint, dialect), azure, request).await?;
    if let Some(id) = id {
        response.headers_mut().insert(id_name, id);
    }
    Ok(response)
}

/// The answer to a counted request: the key checked (`api-key` on Azure's
/// paths, which also need their `api-version`), then the behaviour's.
async fn answer(
    shared: &Shared,
    behavior: &Behavior,
    n: u64,
    (endpoint, dialect): (Endpoint, Dialect),
    azure: Option<AzurePath>,
    request: Request<Incoming>,
) -> Result<Response<Body>, MockError> {
    let headers = request.headers();
    let authorization = headers.get(header::AUTHORIZATION);
    let x_api_key = headers.get("x-api-key");
    // Recorded for the Messages API's own paths only.
    if Dialect::of(endpoint) == Dialect::Anthropic {
        let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
        shared.stats.anthropic(
            x_api_key.is_some(),
            header("anthropic-version"),
            header("anthropic-beta"),
        );
    }

    // The OpenAI paths take `Authorization: Bearer <key>`, the Anthropic
    // ones `x-api-key: <key>`, Azure's `api-key: <key>`, as the real
    // providers do.
    let (expected, sent) = match (dialect, &azure) {
        (_, Some(_)) => (shared.api_key.as_deref(), headers.get("api-key")),
        (Dialect::OpenAi, None) => (shared.authorization.as_deref(), authorization),
        (Dialect::Anthropic, None) => (shared.api_key.as_deref(), x_api_key),
    };
    if let Some(expected) = expected
        && sent.map(HeaderValue::as_bytes) != Some(expected.as_bytes())
    {
        shared.stats.outcome(Outcome::Unauthorized);
        return Ok(dialect.unauthorized());
    }
    if let Some(refused) = azure.as_ref().and_then(azure::refusal) {
        shared.stats.outcome(Outcome::BadRequest);
        return Ok(refused);
    }

    let deployment = azure.map(|a| a.deployment);
    let Prepared { answer, keep } =
        match prepare(shared, n, endpoint, behavior.chunks, deployment, request).await {
            Ok(prepared) => prepared,
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
        Action::RateLimit => (
            Outcome::RateLimited,
            dialect.rate_limited(behavior.retry_after_s),
        ),
        Action::Error => (
            Outcome::Error,
            dialect.injected(behavior.error_status, behavior.retry_after_s),
        ),
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
    // Stored once sent, so a response that failed on purpose cannot be followed.
    if let Some(stored) = keep
        && matches!(plan.action, Action::Answer | Action::Cut(_))
    {
        shared.responses.keep(stored);
    }
    shared.stats.outcome(outcome);
    Ok(response)
}

/// Why a request gets no [`Answer`].
pub(crate) enum Rejected {
    /// Answered now, without faults (boxed: this is the rare path): a client
    /// error, or a `/v1/responses/{id}` call.
    Respond(Outcome, Box<Response<Body>>),
    /// The connection broke while reading.
    Broken(MockError),
}

impl Rejected {
    /// A 4xx client error in `dialect`.
    pub(crate) fn client(dialect: Dialect, status: StatusCode, message: &str) -> Self {
        let outcome = if status == StatusCode::NOT_FOUND {
            Outcome::NotFound
        } else {
            Outcome::BadRequest
        };
        Rejected::Respond(outcome, Box::new(dialect.error(status, message)))
    }
}

/// Reads and parses the request and builds its answer.
async fn prepare(
    shared: &Shared,
    n: u64,
    endpoint: Endpoint,
    chunks: u32,
    deployment: Option<String>,
    request: Request<Incoming>,
) -> Result<Prepared, Rejected> {
    let dialect = Dialect::of(endpoint);
    if endpoint == Endpoint::ResponseById {
        let (parts, incoming) = request.into_parts();
        // The body of these calls is empty or ignored; drain a little of it.
        let _ = body::read_body(incoming, 1 << 16).await;
        let (outcome, response) = by_id::answer(&shared.responses, &parts.method, &parts.uri);
        return Err(Rejected::Respond(outcome, Box::new(response)));
    }
    let expected = match endpoint {
        Endpoint::Models => Method::GET,
        _ => Method::POST,
    };
    if endpoint == Endpoint::Other || request.method() != expected {
        let response = dialect.not_found(request.method(), request.uri().path());
        return Err(Rejected::Respond(Outcome::NotFound, Box::new(response)));
    }
    if endpoint == Endpoint::Models {
        let body = if request.headers().contains_key("anthropic-version") {
            &shared.anthropic_models_body
        } else {
            &shared.models_body
        };
        return Ok(Answer::Json(body.clone()).into());
    }
    let bytes = match body::read_body(request.into_body(), MAX_REQUEST).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => {
            let response = dialect.too_large(MAX_REQUEST);
            return Err(Rejected::Respond(Outcome::BadRequest, Box::new(response)));
        }
        Err(ReadError::Broken(e)) => return Err(Rejected::Broken(e)),
    };
    match endpoint {
        Endpoint::Chat => {
            let mut request: ChatRequest = parse(dialect, &bytes)?;
            azure::as_model(&mut request.model, deployment);
            shared.stats.model(&request.model);
            chat(n, request, chunks).map(Prepared::from)
        }
        Endpoint::Completions => {
            let mut request: CompletionRequest = parse(dialect, &bytes)?;
            azure::as_model(&mut request.model, deployment);
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
            Ok(completion_answer(completion, request.stream, request.stream_options).into())
        }
        Endpoint::Messages | Endpoint::CountTokens => {
            let request: MessagesRequest = parse(dialect, &bytes)?;
            shared.stats.model(&request.model);
            messages(n, endpoint, &request, chunks).map(Prepared::from)
        }
        Endpoint::Responses => {
            let request: ResponsesRequest = parse(dialect, &bytes)?;
            shared.stats.model(&request.model);
            let stream = request.stream == Some(true);
            let stored = shared
                .responses
                .answer(request, chunks)
                .map_err(|e| by_id::rejected(&e))?;
            let answer = if stream {
                Answer::Events(stored.events())
            } else {
                Answer::Json(stored.body())
            };
            Ok(Prepared {
                answer,
                keep: Some(stored),
            })
        }
        _ => {
            let mut request: EmbeddingRequest = parse(dialect, &bytes)?;
            azure::as_model(&mut request.model, deployment);
            shared.stats.model(&request.model);
            openai::embeddings_body(&request)
                .map(|body| Answer::Json(body).into())
                .map_err(|e| Rejected::client(dialect, StatusCode::BAD_REQUEST, &e.to_string()))
        }
    }
}

/// A chat answer: a tool call, a quoted tool result, or the canned words.
fn chat(n: u64, request: ChatRequest, chunks: u32) -> Result<Answer, Rejected> {
    let turn = chat_tools::turn(&request)
        .map_err(|e| Rejected::client(Dialect::OpenAi, StatusCode::BAD_REQUEST, &e.to_string()))?;
    let prompt_tokens = request.prompt_tokens();
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    if let Turn::Call { name, arguments } = turn {
        let call = Call::new(n, request.model, prompt_tokens, name, arguments, chunks);
        return Ok(if request.stream == Some(true) {
            Answer::Events(call.events(chunks, include_usage))
        } else {
            Answer::Json(call.body())
        });
    }
    let mut completion = Completion::new(
        Api::Chat,
        n,
        request.model,
        prompt_tokens,
        chunks,
        max_tokens,
    );
    if let Turn::Quote(text) = turn {
        completion = completion.quoting(&text, max_tokens);
    }
    Ok(completion_answer(
        completion,
        request.stream,
        request.stream_options,
    ))
}

/// A Messages answer (`max_tokens` required), or the `count_tokens` one.
fn messages(
    n: u64,
    endpoint: Endpoint,
    request: &MessagesRequest,
    chunks: u32,
) -> Result<Answer, Rejected> {
    let bad =
        |message: &str| Rejected::client(Dialect::Anthropic, StatusCode::BAD_REQUEST, message);
    if endpoint == Endpoint::CountTokens {
        return Ok(Answer::Json(anthropic::count_tokens_body(request)));
    }
    if request.max_tokens.is_none() {
        return Err(bad("max_tokens: Field required"));
    }
    let turn = request.turn().map_err(|e| bad(&e.to_string()))?;
    let answer = anthropic::Answer::new(n, request, turn, chunks);
    Ok(if request.stream == Some(true) {
        Answer::Events(answer.events(chunks))
    } else {
        Answer::Json(answer.body())
    })
}

fn parse<T: DeserializeOwned>(dialect: Dialect, bytes: &[u8]) -> Result<T, Rejected> {
    serde_json::from_slice(bytes).map_err(|e| {
        let response = dialect.bad_json(&e);
        Rejected::Respond(Outcome::BadRequest, Box::new(response))
    })
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
        Answer::Events(events) => {
            let body = events::body(events, chunk_delay, rng, cut);
            let mut response = body::response(StatusCode::OK, body, "text/event-stream");
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

/// An SSE answer being sent: one body frame per event, `chunk_delay` apart
/// (the usage chunk too).
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
                let event = self.completion.chunk(self.sent, self.include_usage);
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
                // A chunk like the others: `chunk_delay` after the last
                // content, so a client can be seen leaving in between.
                self.pause().await;
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
pub(crate) async fn abort() -> MockError {
    tokio::time::sleep(ABORT_SETTLE).await;
    MockError::Cut
}
