//! The few client headers an upstream is sent, and the one upstream header
//! a client is given back, each checked here (pure, no I/O) before it
//! crosses: the upstream request is built from scratch
//! ([`super::request::build_request`]), so nothing else of the client's
//! (its key, any other `authorization`, `x-api-key`, `api-key`, a cookie)
//! can reach a provider, and nothing else of the provider's reaches the
//! client.
//!
//! - `traceparent` / `tracestate` (W3C Trace Context): passed when valid,
//!   DROPPED when not, never refused: the W3C rule is that a vendor that
//!   cannot parse them restarts the trace rather than failing the call.
//!   `tracestate` travels only with a valid `traceparent`.
//! - `openai-beta`: to OpenAI and Azure targets; refused (400) when it is
//!   not a list of beta names, as `anthropic-beta` is
//!   ([`super::request::anthropic_headers`]).
//! - `user-agent`: Meridian's own, then the client's when it is at most
//!   256 printable ASCII characters (else Meridian's alone).
//! - `x-upstream-request-id`, to the client: the upstream's `x-request-id`,
//!   `request-id` (Anthropic) or `apim-request-id` (Azure), scrubbed, at
//!   most 128 visible ASCII characters, else dropped.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ProxyError;
use crate::scrub::Scrubber;

/// Meridian's own `user-agent`, first in every upstream request's.
pub(super) const MERIDIAN_UA: &str = concat!("meridian/", env!("CARGO_PKG_VERSION"));

/// The longest client `user-agent` appended to Meridian's.
const MAX_CLIENT_UA: usize = 256;

/// The longest `tracestate` passed on: the W3C's 512 bytes of list-members.
const MAX_TRACESTATE: usize = 512;

/// The W3C's most list-members in one `tracestate`.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The longest client `accept` passed on.
const MAX_ACCEPT: usize = 256;

/// The longest upstream request id given back.
const MAX_UPSTREAM_ID: usize = 128;

pub(super) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(super) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub(super) static OPENAI_BETA: HeaderName = HeaderName::from_static("openai-beta");
pub(super) static X_UPSTREAM_REQUEST_ID: HeaderName =
    HeaderName::from_static("x-upstream-request-id");

/// The upstream headers a request id may come in, in the order looked at:
/// OpenAI's, Anthropic's, Azure's (API Management's).
static UPSTREAM_IDS: [HeaderName; 3] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("request-id"),
    HeaderName::from_static("apim-request-id"),
];

/// The client headers every attempt of a request passes on, checked once.
#[derive(Debug, Clone)]
pub(super) struct Passed {
    /// A valid W3C `traceparent`.
    pub traceparent: Option<HeaderValue>,
    /// A valid `tracestate`, only with a valid `traceparent`.
    pub tracestate: Option<HeaderValue>,
    /// A checked `openai-beta`, for OpenAI and Azure targets.
    pub openai_beta: Option<HeaderValue>,
    /// `meridian/<version>`, then the client's own when it is sane.
    pub user_agent: HeaderValue,
    /// The client's one `accept`, when it is 1 to 256 printable ASCII
    /// characters (the upstream's default content otherwise).
    pub accept: Option<HeaderValue>,
}

impl Passed {
    /// Reads them from the client's headers: the trace headers, the user
    /// agent and `accept` are dropped when not valid; a bad `openai-beta`
    /// is refused, naming the header.
    pub(super) fn from_client(headers: &HeaderMap) -> Result<Self, ProxyError> {
        let traceparent = only(headers, &TRACEPARENT)
            .filter(|v| traceparent_ok(v.as_bytes()))
            .cloned();
        let tracestate = match traceparent {
            Some(_) => tracestate(headers),
            None => None,
        };
        Ok(Self {
            traceparent,
            tracestate,
            openai_beta: openai_beta(headers)?,
            user_agent: user_agent(headers.get(http::header::USER_AGENT)),
            accept: only(headers, &http::header::ACCEPT)
                .filter(|v| printable(v.as_bytes(), MAX_ACCEPT))
                .cloned(),
        })
    }
}

/// The one value of `name`: none when absent or sent more than once (two
/// `traceparent`s are as invalid as a malformed one).
fn only<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// A version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase,
/// with neither id all zeros (read by [`crate::telemetry::propagation`]).
fn traceparent_ok(value: &[u8]) -> bool {
    crate::telemetry::propagation::parse(value).is_some()
}

/// The client's `tracestate` (its header lines joined by `,`, as the W3C
/// allows it split), when it is at most 512 bytes and 32 list-members,
/// each `key=value` by the W3C's grammar.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut joined: Vec<u8> = Vec::new();
    for value in headers.get_all(&TRACESTATE) {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(value.as_bytes());
        if joined.len() > MAX_TRACESTATE {
            return None;
        }
    }
    let members: Vec<&[u8]> = joined
        .split(|b| *b == b',')
        .map(trim_ows)
        .filter(|m| !m.is_empty())
        .collect();
    if members.is_empty() || members.len() > MAX_TRACESTATE_MEMBERS {
        return None;
    }
    if !members.iter().all(|m| member_ok(m)) {
        return None;
    }
    HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One `key=value` list-member: the key lowercase letters, digits and
/// `_-*/` (a first letter or digit, an optional `@system`), at most 256;
/// the value printable ASCII but `,` and `=`, at most 256, not ending in
/// a space.
fn member_ok(member: &[u8]) -> bool {
    let Some(eq) = member.iter().position(|b| *b == b'=') else {
        return false;
    };
    let (key, value) = (&member[..eq], &member[eq + 1..]);
    let key_char = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let key_ok = (1..=256).contains(&key.len())
        && key[0].is_ascii_lowercase() | key[0].is_ascii_digit()
        && match key.iter().position(|b| *b == b'@') {
            None => key.iter().all(key_char),
            Some(at) => {
                let (tenant, system) = (&key[..at], &key[at + 1..]);
                !system.is_empty()
                    && system.len() <= 14
                    && system[0].is_ascii_lowercase()
                    && tenant.iter().all(key_char)
                    && system.iter().all(key_char)
            }
        };
    let value_ok = (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|b| (0x20..=0x7e).contains(b) && *b != b',' && *b != b'=')
        && value.last() != Some(&b' ');
    key_ok && value_ok
}

/// The client's `openai-beta` (`assistants=v2`, a comma-separated list of
/// such), refused when it is anything else: it reaches an upstream's
/// request head.
fn openai_beta(headers: &HeaderMap) -> Result<Option<HeaderValue>, ProxyError> {
    beta_list(
        headers,
        "openai-beta",
        b"-_.,:= ",
        "a comma-separated list of beta names such as `assistants=v2` (letters, digits, \
         `-`, `_`, `.`, `=`), at most 1024 bytes",
    )
}

/// A client's beta header (`openai-beta`, `anthropic-beta`) when it is 1 to
/// 1024 bytes of letters, digits and `punctuation`, for an upstream's
/// request head; a 400 naming the header, saying it must be `what`,
/// otherwise.
pub(super) fn beta_list(
    headers: &HeaderMap,
    name: &'static str,
    punctuation: &[u8],
    what: &str,
) -> Result<Option<HeaderValue>, ProxyError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let ok = (1..=1024).contains(&v.len())
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(b));
    if !ok {
        return Err(ProxyError::BadHeader {
            name,
            message: format!("must be {what}"),
        });
    }
    Ok(Some(v.clone()))
}

/// Whether a client's value may go on to an upstream: 1 to `max` printable
/// ASCII characters (space to `~`), not all spaces.
fn printable(bytes: &[u8], max: usize) -> bool {
    (1..=max).contains(&bytes.len())
        && bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        && bytes.iter().any(|b| *b != b' ')
}

/// `meridian/<version>`, then the client's user agent when it is 1 to 256
/// printable ASCII characters (space to `~`); Meridian's alone otherwise.
fn user_agent(client: Option<&HeaderValue>) -> HeaderValue {
    let own = HeaderValue::from_static(MERIDIAN_UA);
    let Some(client) = client else {
        return own;
    };
    let bytes = client.as_bytes();
    if !printable(bytes, MAX_CLIENT_UA) {
        return own;
    }
    let mut joined = Vec::with_capacity(MERIDIAN_UA.len() + 1 + bytes.len());
    joined.extend_from_slice(MERIDIAN_UA.as_bytes());
    joined.push(b' ');
    joined.extend_from_slice(bytes);
    HeaderValue::from_maybe_shared(Bytes::from(joined)).unwrap_or(own)
}

/// The upstream's request id for `x-upstream-request-id`: the first of its
/// `x-request-id`, `request-id` and `apim-request-id` it sent, when that is
/// 1 to 128 visible ASCII characters and holds none of the node's keys;
/// `None` otherwise (never a made-up one).
pub(super) fn upstream_request_id(headers: &HeaderMap, scrub: &Scrubber) -> Option<HeaderValue> {
    let value = UPSTREAM_IDS.iter().find_map(|name| headers.get(name))?;
    let sane = (1..=MAX_UPSTREAM_ID).contains(&value.len())
        && value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b));
    (sane && scrub.header(value) == value).then(|| value.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    fn passed(pairs: &[(&str, &[u8])]) -> Passed {
        Passed::from_client(&headers(pairs)).unwrap()
    }

    #[test]
    fn a_valid_traceparent_and_tracestate_pass() {
        let p = passed(&[
            ("traceparent", TP.as_bytes()),
            ("tracestate", b"congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
            ("tracestate", b"acme@sys=x:y;z"),
        ]);
        assert_eq!(p.traceparent.unwrap(), TP);
        assert_eq!(
            p.tracestate.unwrap(),
            "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,acme@sys=x:y;z"
        );
    }

    #[test]
    fn invalid_trace_headers_are_dropped_not_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            let p = passed(&[("traceparent", bad.as_bytes()), ("tracestate", b"a=b")]);
            assert!(p.traceparent.is_none(), "{bad}");
            assert!(
                p.tracestate.is_none(),
                "a tracestate without a traceparent: {bad}"
            );
        }
        let twice = passed(&[
            ("traceparent", TP.as_bytes()),
            ("traceparent", TP.as_bytes()),
        ]);
        assert!(twice.traceparent.is_none());
        let long = format!("a={}", "x".repeat(250));
        let too_long = [long.as_str(); 3].join(",");
        let too_many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        for bad in [
            "noequals",
            "Upper=x",
            "a=b,c",
            "a=b=c",
            "a=x\ty",
            "a=caf\u{e9}",
            "=v",
            "a@=x",
            "a=",
            too_long.as_str(),
            too_many.as_str(),
        ] {
            let p = passed(&[
                ("traceparent", TP.as_bytes()),
                ("tracestate", bad.as_bytes()),
            ]);
            assert_eq!(p.traceparent.as_ref().unwrap(), TP);
            assert!(p.tracestate.is_none(), "{bad}");
        }
    }

    #[test]
    fn the_user_agent_follows_meridians_when_sane() {
        assert_eq!(passed(&[]).user_agent, MERIDIAN_UA);
        assert_eq!(
            passed(&[("user-agent", b"OpenAI/Python 1.40.0")]).user_agent,
            format!("{MERIDIAN_UA} OpenAI/Python 1.40.0")
        );
        let long = "x".repeat(257);
        for bad in [long.as_bytes(), b"caf\xc3\xa9", b"tab\there", b"   "] {
            assert_eq!(passed(&[("user-agent", bad)]).user_agent, MERIDIAN_UA);
        }
    }

    #[test]
    fn accept_is_passed_only_when_sane() {
        assert_eq!(passed(&[]).accept, None);
        assert_eq!(
            passed(&[("accept", b"text/event-stream")]).accept.unwrap(),
            "text/event-stream"
        );
        let long = "a/b,".repeat(65);
        for bad in [long.as_bytes(), b"caf\xc3\xa9", b"tab\there", b"  "] {
            assert_eq!(passed(&[("accept", bad)]).accept, None, "{bad:?}");
        }
        // Two values: neither is chosen.
        assert_eq!(
            passed(&[("accept", b"application/json"), ("accept", b"text/html")]).accept,
            None
        );
    }

    #[test]
    fn openai_beta_is_passed_when_a_list_of_names_and_refused_otherwise() {
        assert_eq!(
            passed(&[("openai-beta", b"assistants=v2")])
                .openai_beta
                .unwrap(),
            "assistants=v2"
        );
        for bad in [&b"x;y"[..], b"a\"b", b"\xc3\xa9"] {
            let e = Passed::from_client(&headers(&[("openai-beta", bad)])).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
            assert!(e.to_string().contains("openai-beta"), "{e}");
        }
    }

    #[test]
    fn the_upstream_request_id_is_given_back_only_when_sane() {
        let none = Scrubber::default();
        let id =
            |pairs: &[(&str, &[u8])], scrub: &Scrubber| upstream_request_id(&headers(pairs), scrub);
        assert_eq!(
            id(&[("x-request-id", b"req_123")], &none).unwrap(),
            "req_123"
        );
        assert_eq!(
            id(&[("request-id", b"req_01ab")], &none).unwrap(),
            "req_01ab"
        );
        assert_eq!(
            id(&[("apim-request-id", b"6f1c-22")], &none).unwrap(),
            "6f1c-22"
        );
        assert_eq!(
            id(&[("apim-request-id", b"b"), ("x-request-id", b"a")], &none).unwrap(),
            "a"
        );
        assert!(id(&[], &none).is_none());
        let long = "r".repeat(129);
        for bad in [long.as_bytes(), b"a b", b"caf\xc3\xa9", b""] {
            assert!(id(&[("x-request-id", bad)], &none).is_none());
        }
        let key = "sk-upstream-secret-0123456789";
        let scrub = Scrubber::new([key]);
        assert!(id(&[("x-request-id", key.as_bytes())], &scrub).is_none());
    }
}
