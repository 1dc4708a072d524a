//! What the latest data request carried that a proxy must pass on or must
//! hold back, so a test can check both: the trace context, the user agent,
//! `openai-beta`, the names of every header (never a value but these), and
//! for an Azure-shaped request its deployment and `api-version`.

use http::{HeaderMap, HeaderValue};
use serde::Serialize;

use super::stats::MAX_HEADER;

/// The most header names kept.
const MAX_NAMES: usize = 64;

/// The latest data request's passed headers, as `GET /_mock/stats` shows
/// them (flattened into [`super::stats::Snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Its `traceparent`, at most [`MAX_HEADER`] bytes.
    pub last_traceparent: Option<String>,
    /// Its `tracestate`.
    pub last_tracestate: Option<String>,
    /// Its `user-agent`.
    pub last_user_agent: Option<String>,
    /// Its `openai-beta`.
    pub last_openai_beta: Option<String>,
    /// Whether it carried `api-key` (Azure's key header; never its value).
    pub last_api_key_seen: bool,
    /// The names of its headers, sorted, at most 64: what a test checks to
    /// know that nothing else of a client's reached the provider.
    pub last_header_names: Vec<String>,
    /// The deployment of an Azure-shaped request (decoded).
    pub last_azure_deployment: Option<String>,
    /// The `api-version` of an Azure-shaped request.
    pub last_api_version: Option<String>,
}

impl Seen {
    /// What `headers` say, and for an Azure-shaped request its deployment
    /// and `api-version`.
    pub fn of(headers: &HeaderMap, azure: Option<(&str, Option<&str>)>) -> Self {
        let keep = |name: &str| headers.get(name).map(|v| kept(v.as_bytes()));
        let mut names: Vec<String> = headers.keys().map(|n| n.as_str().to_owned()).collect();
        names.sort();
        names.dedup();
        names.truncate(MAX_NAMES);
        Self {
            last_traceparent: keep("traceparent"),
            last_tracestate: keep("tracestate"),
            last_user_agent: keep("user-agent"),
            last_openai_beta: keep("openai-beta"),
            last_api_key_seen: headers.get("api-key").is_some(),
            last_header_names: names,
            last_azure_deployment: azure.map(|(d, _)| kept(d.as_bytes())),
            last_api_version: azure.and_then(|(_, v)| v.map(|v| kept(v.as_bytes()))),
        }
    }
}

/// A value as text, cut to [`MAX_HEADER`] bytes at a char boundary.
pub(crate) fn kept(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut end = text.len().min(MAX_HEADER);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A header value the mock sends, when `text` makes one.
pub(crate) fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn names_are_sorted_and_values_bounded() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", HeaderValue::from_static("meridian/1 x"));
        h.insert("api-key", HeaderValue::from_static("k"));
        h.append("b-dup", HeaderValue::from_static("1"));
        h.append("b-dup", HeaderValue::from_static("2"));
        let long = "t".repeat(MAX_HEADER + 10);
        h.insert("tracestate", HeaderValue::from_str(&long).unwrap());
        let seen = Seen::of(&h, Some(("dep", Some("2024-10-21"))));
        assert_eq!(
            seen.last_header_names,
            ["api-key", "b-dup", "tracestate", "user-agent"]
        );
        assert!(seen.last_api_key_seen);
        assert_eq!(seen.last_user_agent.as_deref(), Some("meridian/1 x"));
        assert_eq!(seen.last_tracestate.unwrap().len(), MAX_HEADER);
        assert_eq!(seen.last_azure_deployment.as_deref(), Some("dep"));
        assert_eq!(seen.last_api_version.as_deref(), Some("2024-10-21"));
        assert_eq!(Seen::of(&HeaderMap::new(), None), Seen::default());
    }
}
