//! The Responses paths a client may call, parsed into what to send where.
//!
//! A stored response's id, in the path, says which upstream holds it; what
//! goes on to that upstream (the path below its base URL, and a query
//! string) is rebuilt here from checked parts only, so no client input can
//! change the upstream URL beyond the id and the known parameters.

use http::Method;

use super::{Owner, ResponsesError, check_own};

/// A response stored at an upstream, as a client's tagged id names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The upstream that made (and holds) the response.
    pub upstream: String,
    /// The upstream's own id for it.
    pub id: String,
}

/// One call of the Responses API, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsesCall {
    /// `POST /v1/responses`: a new response; which upstream makes it is the
    /// route's choice, unless the body names a `previous_response_id`.
    Create,
    /// `GET /v1/responses/{id}`.
    Get {
        /// The response asked for.
        response: StoredResponse,
        /// The checked query string to pass on, without `?` (may be empty).
        query: String,
        /// Whether the client asked for the response as a stream of events
        /// (`stream=true`, for a background response), to be relayed and
        /// tagged as a created one is.
        stream: bool,
    },
    /// `DELETE /v1/responses/{id}`.
    Delete(StoredResponse),
    /// `POST /v1/responses/{id}/cancel`.
    Cancel(StoredResponse),
    /// `GET /v1/responses/{id}/input_items`.
    InputItems {
        /// The response whose input is listed.
        response: StoredResponse,
        /// The checked query string to pass on, without `?` (may be empty).
        query: String,
    },
}

impl ResponsesCall {
    /// The upstream the call must reach; `None` for [`Create`](Self::Create),
    /// which the route decides.
    pub fn upstream(&self) -> Option<&str> {
        self.stored().map(|r| r.upstream.as_str())
    }

    /// The stored response the call is about, if any.
    pub fn stored(&self) -> Option<&StoredResponse> {
        match self {
            Self::Create => None,
            Self::Get { response, .. } | Self::InputItems { response, .. } => Some(response),
            Self::Delete(response) | Self::Cancel(response) => Some(response),
        }
    }

    /// The path (and query) below the upstream's base URL, which ends in
    /// `/v1` as for chat: `/responses`, `/responses/{own id}/cancel`, ...
    pub fn upstream_path(&self) -> String {
        let (id, tail, query) = match self {
            Self::Create => return "/responses".to_owned(),
            Self::Get {
                response, query, ..
            } => (&response.id, "", query.as_str()),
            Self::Delete(response) => (&response.id, "", ""),
            Self::Cancel(response) => (&response.id, "/cancel", ""),
            Self::InputItems { response, query } => (&response.id, "/input_items", query.as_str()),
        };
        let mut path = format!("/responses/{id}{tail}");
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        path
    }

    /// Whether the answer is a stream of events.
    pub fn streams(&self) -> bool {
        matches!(self, Self::Get { stream: true, .. })
    }
}

/// The path prefixes served: the plain one, and the doubled one that code
/// handing an SDK a `base_url` ending in `/v1` calls.
const PREFIXES: [&str; 2] = ["/v1/v1/responses", "/v1/responses"];

/// The Responses call at `path` (with its raw `query`, without `?`):
/// `Ok(None)` when the path is not under `/v1/responses` at all, an error
/// for a path under it that is no known call (404), a method the path does
/// not take (405), or an id or query that is not acceptable (400).
pub fn parse_call(
    method: &Method,
    path: &str,
    query: Option<&str>,
    owner: Owner<'_>,
) -> Result<Option<ResponsesCall>, ResponsesError> {
    // A trailing slash is forgiven, as on the other endpoints.
    let trimmed = path.trim_end_matches('/');
    let Some(rest) = PREFIXES
        .iter()
        .find_map(|prefix| trimmed.strip_prefix(prefix))
    else {
        return Ok(None);
    };
    let segments: Vec<&str> = match rest {
        "" => Vec::new(),
        _ => match rest.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => return Ok(None),
        },
    };
    let unknown = || ResponsesError::UnknownCall {
        method: method.to_string(),
        path: path.to_owned(),
    };
    let wrong = |allowed| ResponsesError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_owned(),
        allowed,
    };
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(unknown());
    }
    let query = query.unwrap_or("");
    let call = match segments.as_slice() {
        [] if method == Method::POST => {
            no_query(query)?;
            ResponsesCall::Create
        }
        [] => return Err(wrong("POST")),
        [id] if method == Method::GET => {
            let (query, stream) = checked_query(query, GET_PARAMS)?;
            ResponsesCall::Get {
                response: stored(id, owner)?,
                query,
                stream,
            }
        }
        [id] if method == Method::DELETE => {
            no_query(query)?;
            ResponsesCall::Delete(stored(id, owner)?)
        }
        [_] => return Err(wrong("GET or DELETE")),
        [id, "cancel"] if method == Method::POST => {
            no_query(query)?;
            ResponsesCall::Cancel(stored(id, owner)?)
        }
        [_, "cancel"] => return Err(wrong("POST")),
        [id, "input_items"] if method == Method::GET => {
            let (query, _) = checked_query(query, INPUT_ITEMS_PARAMS)?;
            ResponsesCall::InputItems {
                response: stored(id, owner)?,
                query,
            }
        }
        [_, "input_items"] => return Err(wrong("GET")),
        _ => return Err(unknown()),
    };
    Ok(Some(call))
}

/// The response a path segment names. A client may percent-encode the tag
/// separator (`%7E`); nothing else is decoded, so `%2F` and the like are
/// refused by the id rules. Only an id handed out to `owner` is one.
fn stored(segment: &str, owner: Owner<'_>) -> Result<StoredResponse, ResponsesError> {
    let decoded = segment.replace("%7E", "~").replace("%7e", "~");
    let (upstream, id) = owner
        .untag(&decoded)
        .map_err(|reason| ResponsesError::BadId {
            field: "response_id",
            reason,
        })?;
    Ok(StoredResponse {
        upstream: upstream.to_owned(),
        id: id.to_owned(),
    })
}

/// Refuses any query parameter on a call that takes none.
fn no_query(query: &str) -> Result<(), ResponsesError> {
    match query.split('&').find(|pair| !pair.is_empty()) {
        None => Ok(()),
        Some(pair) => Err(ResponsesError::BadQuery {
            param: decode(pair.split('=').next().unwrap_or(pair)),
            reason: "this call takes no query parameters",
        }),
    }
}

/// A query parameter a call takes, and how its value is checked.
#[derive(Clone, Copy)]
enum Param {
    /// An item id (`after`, `before`): the id rules.
    ItemId,
    /// `limit`: 1 to 100.
    Limit,
    /// `order`: `asc` or `desc`.
    Order,
    /// `include[]`, which may repeat: a field path such as
    /// `message.output_text.logprobs`.
    Include,
    /// `stream`, `include_obfuscation`: `true` or `false`.
    Bool,
    /// `starting_after`: a sequence number.
    Sequence,
}

/// The parameters of `GET /v1/responses/{id}`.
const GET_PARAMS: &[(&str, Param)] = &[
    ("include[]", Param::Include),
    ("stream", Param::Bool),
    ("starting_after", Param::Sequence),
    ("include_obfuscation", Param::Bool),
];

/// The parameters of `GET /v1/responses/{id}/input_items`.
const INPUT_ITEMS_PARAMS: &[(&str, Param)] = &[
    ("after", Param::ItemId),
    ("before", Param::ItemId),
    ("limit", Param::Limit),
    ("order", Param::Order),
    ("include[]", Param::Include),
];

/// The most `include[]` values accepted: there are fewer includable fields.
const MAX_INCLUDES: usize = 16;

/// The name of a known query parameter, for an error's `param`.
pub(super) fn known_param(param: &str) -> Option<&'static str> {
    GET_PARAMS
        .iter()
        .chain(INPUT_ITEMS_PARAMS)
        .map(|(name, _)| *name)
        .find(|name| *name == param)
}

/// The query string to pass on, rebuilt from `query`'s parameters once each
/// is known to `params` and its value checked, and whether `stream=true`
/// was among them.
fn checked_query(query: &str, params: &[(&str, Param)]) -> Result<(String, bool), ResponsesError> {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut includes = 0;
    let mut stream = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name);
        // `include` without brackets is the same list, as servers read it.
        let lookup = if name == "include" {
            "include[]"
        } else {
            name.as_str()
        };
        let bad = |reason| ResponsesError::BadQuery {
            param: name.clone(),
            reason,
        };
        let &(known, kind) = params
            .iter()
            .find(|(known, _)| *known == lookup)
            .ok_or_else(|| bad("not a parameter of this call"))?;
        if matches!(kind, Param::Include) {
            includes += 1;
            if includes > MAX_INCLUDES {
                return Err(bad("given too many times"));
            }
        } else if seen.contains(&known) {
            return Err(bad("given twice"));
        }
        seen.push(known);
        let value = decode(raw_value);
        check_value(kind, &value).map_err(bad)?;
        if known == "stream" {
            stream = value == "true";
        }
        if !out.is_empty() {
            out.push('&');
        }
        // Values are checked to hold nothing a query would need to escape.
        out.push_str(&known.replace("[]", "%5B%5D"));
        out.push('=');
        out.push_str(&value);
    }
    Ok((out, stream))
}

/// Whether `value` is acceptable for a parameter of `kind`; why not.
fn check_value(kind: Param, value: &str) -> Result<(), &'static str> {
    match kind {
        Param::ItemId => check_own(value),
        Param::Limit => match value.parse::<u32>() {
            Ok(1..=100) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err("must be a whole number from 1 to 100"),
        },
        Param::Order => match value {
            "asc" | "desc" => Ok(()),
            _ => Err("must be `asc` or `desc`"),
        },
        Param::Include => {
            let ok = !value.is_empty()
                && value.len() <= 128
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'));
            if ok {
                Ok(())
            } else {
                Err("must be a field path such as `message.output_text.logprobs`")
            }
        }
        Param::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err("must be `true` or `false`"),
        },
        Param::Sequence => match value.parse::<u64>() {
            Ok(_) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err("must be a whole number"),
        },
    }
}

/// `raw` percent-decoded (a malformed escape is kept as written, and then
/// fails whatever check follows); bytes that are not UTF-8 become U+FFFD.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
