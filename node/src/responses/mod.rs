//! The OpenAI Responses API: which upstream a call belongs to.
//!
//! A response lives at the upstream that made it, so a follow-up
//! (`previous_response_id`) and every `/v1/responses/{id}` call must reach
//! that upstream, from any node in any region, with no state shared between
//! nodes. Meridian does it by tagging the response ids it hands out with the
//! upstream's id (`{upstream}~{id}`) and stripping the tag on the way in: the
//! id itself says where the response lives. With the cluster's response-id
//! secret the tag also binds the id to the key it was handed to
//! ([`seal`]: `{upstream}~{mac}~{id}`).
//!
//! Everything here is pure: bytes in, bytes out. Ids are rewritten by
//! splicing their spans, never by re-serialising a body, so a large
//! response costs one copy.
//!
//! # Layout
//!
//! - `mod.rs`: tagging ids, the request's `previous_response_id`, plain
//!   answers, and [`ResponsesError`].
//! - [`call`]: the paths and query strings a client may call.
//! - [`seal`]: [`Owner`], whose ids a request hands out and may name.
//! - [`stream`]: [`TagStream`], tagging the ids in a streamed answer.

pub mod call;
pub mod seal;
pub mod stream;

pub use call::{ResponsesCall, StoredResponse, parse_call};
pub use seal::{Owner, Seal};
pub use stream::TagStream;

use bytes::Bytes;
use http::StatusCode;

use crate::error::ProxyError;
use crate::request_body::{json_string, members, splice};

/// Separates the upstream from its own id in a tagged id. Upstream ids are
/// `[A-Za-z0-9._-]{1,64}` (proto's `check_name`), so it never occurs in one.
const SEPARATOR: char = '~';

/// The longest upstream id, as proto's `check_name` allows.
const MAX_UPSTREAM: usize = 64;

/// The longest own id accepted from a client: OpenAI's are about 50 bytes.
const MAX_ID: usize = 256;

/// Why a Responses call or body was refused. Each variant names the field,
/// parameter or path at fault and maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponsesError {
    /// An id is not one Meridian handed out (or could change the upstream
    /// URL it would go into).
    #[error("`{field}` is not a response id this gateway handed out: {reason}")]
    BadId {
        /// `previous_response_id`, `response_id` (the path) or a query parameter.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A member that must be a string is something else.
    #[error("`{0}` must be a string")]
    NotString(&'static str),
    /// A member written twice: the upstream might read the other one.
    #[error("duplicate field `{0}`")]
    Duplicate(&'static str),
    /// The body is not a JSON object.
    #[error("The request body must be a JSON object")]
    NotObject,
    /// A query parameter that is unknown or has a value out of range.
    #[error("query parameter `{param}`: {reason}")]
    BadQuery {
        /// The parameter as the client wrote it (percent-decoded).
        param: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path under `/v1/responses` that is no known call.
    #[error("Unknown request URL: {method} {path}.")]
    UnknownCall {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// A response to be run in the background, for a key whose usage is
    /// metered: its usage arrives long after the answer, where nothing
    /// would charge it.
    #[error(
        "`background` responses are not served to a key with credits or a tokens-per-minute \
         limit: their usage arrives after the answer, where it could not be charged. Send \
         the request without `background: true` (stream it instead)."
    )]
    Background,
    /// A known path, called with a method it does not take.
    #[error("{method} is not supported on {path}; use {allowed}.")]
    MethodNotAllowed {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The methods the path takes.
        allowed: &'static str,
    },
}

impl ResponsesError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadId { .. }
            | Self::NotString(_)
            | Self::Duplicate(_)
            | Self::NotObject
            | Self::BadQuery { .. }
            | Self::Background => StatusCode::BAD_REQUEST,
            Self::UnknownCall { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The request field or query parameter at fault, for the error body's
    /// `param` (a query parameter outside the known ones is named only in
    /// the message).
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::BadId { field, .. } => Some(field),
            Self::NotString(field) | Self::Duplicate(field) => Some(field),
            Self::BadQuery { param, .. } => call::known_param(param),
            Self::Background => Some(BACKGROUND),
            Self::NotObject | Self::UnknownCall { .. } | Self::MethodNotAllowed { .. } => None,
        }
    }
}

/// The data plane answers every refusal through [`ProxyError`], so a
/// Responses refusal reads like any other in the client's SDK.
impl From<ResponsesError> for ProxyError {
    fn from(e: ResponsesError) -> Self {
        match e {
            ResponsesError::UnknownCall { method, path } => {
                ProxyError::UnknownPath { method, path }
            }
            ResponsesError::MethodNotAllowed {
                method,
                path,
                allowed,
            } => ProxyError::MethodNotAllowed {
                method,
                path,
                allowed,
            },
            other => ProxyError::BadRequest {
                message: other.to_string(),
                param: other.param(),
            },
        }
    }
}

/// Whether an upstream's own id (or any id passed on to an upstream in a
/// path or a query) is safe there.
fn check_own(own: &str) -> Result<(), &'static str> {
    if own.is_empty() {
        return Err("it is empty");
    }
    if own.len() > MAX_ID {
        return Err("it is longer than 256 bytes");
    }
    if !own.bytes().all(id_byte) {
        return Err("it holds characters other than A-Z a-z 0-9 . _ -");
    }
    if own == "." || own.contains("..") {
        return Err("it holds a dot segment");
    }
    Ok(())
}

/// A byte an id may hold: the same set as an upstream id.
fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The request member that asks for a response run in the background.
const BACKGROUND: &str = "background";

/// Refuses a Responses body that asks to run in the background: for a key
/// whose usage is metered (credits, `tpm`), whose answer would carry no
/// usage. Any `background` member that is `true` counts, so a duplicate
/// cannot hide one from this check that the upstream would read.
pub fn check_metered(body: &[u8]) -> Result<(), ResponsesError> {
    let found = members::find(body, &[BACKGROUND]).ok_or(ResponsesError::NotObject)?;
    if found.iter().any(|m| m.raw.get() == "true") {
        return Err(ResponsesError::Background);
    }
    Ok(())
}

/// The request member that names the response a conversation continues,
/// and the answer member that repeats it.
const PREVIOUS: &str = "previous_response_id";

/// A Responses request body whose `previous_response_id` (if any) is
/// untagged: `Ok(None)` when there is none (or it is `null`),
/// `Ok(Some((upstream, body)))` with the upstream's own id spliced in when
/// it is tagged, and an error naming `previous_response_id` when it is not a
/// string, not an id Meridian handed out to `owner`, or written twice (the
/// upstream might read the copy left tagged).
pub fn previous_response(
    body: &[u8],
    owner: Owner<'_>,
) -> Result<Option<(String, Bytes)>, ResponsesError> {
    let found = members::find(body, &[PREVIOUS]).ok_or(ResponsesError::NotObject)?;
    let member = match found.as_slice() {
        [] => return Ok(None),
        [member] => member,
        _ => return Err(ResponsesError::Duplicate(PREVIOUS)),
    };
    let value: Option<String> =
        serde_json::from_str(member.raw.get()).map_err(|_| ResponsesError::NotString(PREVIOUS))?;
    let Some(value) = value else {
        return Ok(None);
    };
    let (upstream, own) = owner
        .untag(&value)
        .map_err(|reason| ResponsesError::BadId {
            field: PREVIOUS,
            reason,
        })?;
    let body = splice(body, member.span.clone(), &json_string(own));
    Ok(Some((upstream.to_owned(), body)))
}

/// A plain answer from `upstream` with its top-level `id` (and a top-level
/// `previous_response_id`) tagged for `owner` when its top-level `object` is `response`
/// or `response.deleted` (a response, a deleted response); every other body
/// (a list of input items, an error, something unparseable) is returned as
/// it is.
pub fn tag_answer(body: Bytes, upstream: &str, owner: Owner<'_>) -> Bytes {
    const NAMES: &[&str] = &["object", "id", PREVIOUS];
    let Some(found) = members::find(&body, NAMES) else {
        return body;
    };
    // The last `object` is the one a client's parser keeps.
    let object = found.iter().rev().find(|m| m.name == 0);
    let is_response = object.is_some_and(|m| {
        serde_json::from_str::<String>(m.raw.get())
            .is_ok_and(|object| object == "response" || object == "response.deleted")
    });
    if !is_response {
        return body;
    }
    let edits = tag_ids(found.iter().filter(|m| m.name != 0), upstream, owner);
    if edits.is_empty() {
        return body;
    }
    members::splice_all(&body, edits)
}

/// The edits that tag each of `ids` whose value is a string for `owner`
/// (a `null` `previous_response_id` stays `null`).
fn tag_ids<'a, 'b: 'a>(
    ids: impl Iterator<Item = &'a members::Member<'b>>,
    upstream: &str,
    owner: Owner<'_>,
) -> Vec<(std::ops::Range<usize>, Bytes)> {
    ids.filter_map(|m| {
        let raw = m.raw.get();
        if !raw.starts_with('"') {
            return None;
        }
        let id: String = serde_json::from_str(raw).ok()?;
        Some((m.span.clone(), json_string(&owner.tag(upstream, &id))))
    })
    .collect()
}

#[cfg(test)]
mod tests;
