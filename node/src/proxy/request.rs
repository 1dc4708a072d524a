//! What an attempt sends and how its answer is shaped for the client: the
//! upstream request (the form's body with the target's model, its URI, the
//! provider key, Anthropic's version and beta headers, and the client
//! headers [`super::headers`] checked), and the shape of a streamed answer
//! (translated or not, its error event in the client's API).
//!
//! The upstream request is built from scratch, header by header: nothing
//! of the client's is copied wholesale, so its key (in `authorization`,
//! `x-api-key` or `api-key`), its cookies and any other header stay here.
//! Its URI, query included (Azure's `api-version`), is the target's, set
//! from configuration; a client's query string never reaches it.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use proto::config::{DEFAULT_ANTHROPIC_VERSION, UpstreamKind};

use super::forms::Form;
use super::headers::{OPENAI_BETA, TRACEPARENT, TRACESTATE, beta_list};
use super::{Call, JSON, X_REQUEST_ID};
use crate::error::{ProxyError, anthropic_stream_error};
use crate::relay::{Shape, openai_stream_error};
use crate::request_body::splice;
use crate::responses::TagStream;
use crate::routing::{Dialect, Target, Translation};
use crate::translate::{StreamTranslator, chat_to_messages, messages_to_chat};
use crate::usage::unasked::StripUsage;

/// What the client receives of a stream: translated when the target speaks
/// the other API, and ended on a failure by an error event in the client's
/// shape either way.
pub(super) fn stream_shape(call: &Call<'_>, form: &Form, target: &Target) -> Shape {
    let translator: Option<Box<dyn StreamTranslator>> = match form.translation {
        Translation::None if form.strip_usage => Some(Box::new(StripUsage)),
        Translation::None => None,
        Translation::TagResponses => Some(Box::new(TagStream::new(
            &target.upstream.id,
            call.seal.cloned(),
            call.key.clone(),
        ))),
        Translation::MessagesToChat => Some(Box::new(messages_to_chat::Stream::new())),
        Translation::ChatToMessages => Some(Box::new(chat_to_messages::Stream::new(
            form.include_usage,
            unix_now(),
        ))),
    };
    Shape {
        translator,
        error_event: match call.dialect {
            Dialect::OpenAi => openai_stream_error,
            Dialect::Anthropic => anthropic_stream_error,
        },
    }
}

/// Seconds since the Unix epoch, for the `created` of a translated answer.
pub(super) fn unix_now() -> u64 {
    crate::clock::wall_ms() / 1000
}

pub(super) fn build_request(call: &Call<'_>, form: &Form, target: &Target) -> Request<Full<Bytes>> {
    let body = splice(&form.body, form.model_span.clone(), &target.model_json);
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.uri(form.endpoint).clone();
    // Sized once for the most fields written below, as the answers are.
    *request.headers_mut() = HeaderMap::with_capacity(REQUEST_FIELDS);
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, JSON.clone());
    let accept = match (&call.passed.accept, call.stream) {
        (Some(accept), _) => accept.clone(),
        (None, true) => HeaderValue::from_static("text/event-stream"),
        (None, false) => JSON.clone(),
    };
    headers.insert(http::header::ACCEPT, accept);
    headers.insert(X_REQUEST_ID.clone(), call.request_id.clone());
    if let Some((name, value)) = target.upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    let passed = &call.passed;
    headers.insert(USER_AGENT, passed.user_agent.clone());
    // Traced: the attempt's own span is the upstream's parent. Not
    // traced: the client's valid `traceparent`, forwarded as it came.
    if let Some(traceparent) =
        crate::telemetry::upstream_traceparent().or_else(|| passed.traceparent.clone())
    {
        headers.insert(TRACEPARENT.clone(), traceparent);
    }
    if let Some(tracestate) = &passed.tracestate {
        headers.insert(TRACESTATE.clone(), tracestate.clone());
    }
    let config = &target.upstream.config;
    if let (UpstreamKind::Openai | UpstreamKind::Azure, Some(beta)) =
        (config.kind, &passed.openai_beta)
    {
        headers.insert(OPENAI_BETA.clone(), beta.clone());
    }
    if config.kind == UpstreamKind::Anthropic {
        let version = call.anthropic_version.clone().unwrap_or_else(|| {
            config
                .anthropic_version
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION))
        });
        headers.insert(ANTHROPIC_VERSION.clone(), version);
        if let Some(beta) = &call.anthropic_beta {
            headers.insert(ANTHROPIC_BETA.clone(), beta.clone());
        }
    }
    request
}

/// The most fields [`build_request`] writes: content type, accept, request
/// id, the upstream's key, user agent, the two trace fields, and the
/// provider's version and beta fields.
const REQUEST_FIELDS: usize = 10;

static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// Refuses a client query string on a proxied endpoint with a 400 naming
/// its first parameter: none is passed on, and one silently dropped would
/// leave the client believing it took effect. Two markers SDKs put on
/// their requests are accepted and not passed on: `api-version`, which the
/// AzureOpenAI SDKs send on every request (each Azure upstream gets its
/// configured version instead, since the deployment Meridian picks decides
/// which it speaks), and `beta=true`, which the anthropic SDK's `beta`
/// resources add (the betas themselves travel in `anthropic-beta`). The
/// Responses API's calls check their own ([`crate::responses`]).
pub(super) fn no_client_query(query: Option<&str>) -> Result<(), ProxyError> {
    let Some(query) = query else {
        return Ok(());
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let sane_version = (1..=32).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if (name == "api-version" && sane_version) || pair == "beta=true" {
            continue;
        }
        // As sent (a URI's query is printable ASCII), and cut: it goes into
        // the error body and the log.
        return Err(ProxyError::QueryRefused {
            param: name.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// The client's `anthropic-version` and `anthropic-beta`, which a native
/// Anthropic target is sent (the version is the upstream's configured one
/// when the client names none). Both reach an upstream's request head, so
/// both are checked: a version date, and a list of beta names.
pub(super) fn anthropic_headers(
    headers: &HeaderMap,
) -> Result<(Option<HeaderValue>, Option<HeaderValue>), ProxyError> {
    let version = match headers.get("anthropic-version") {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| ProxyError::BadHeader {
                name: "anthropic-version",
                message: "not visible ASCII".into(),
            })?;
            proto::config::check_anthropic_version("anthropic-version", text).map_err(|e| {
                ProxyError::BadHeader {
                    name: "anthropic-version",
                    message: e.message,
                }
            })?;
            Some(v.clone())
        }
    };
    let beta = beta_list(
        headers,
        "anthropic-beta",
        b"-_.,: ",
        "a comma-separated list of beta names (letters, digits, `-`, `_`, `.`), at most \
         1024 bytes",
    )?;
    Ok((version, beta))
}
