//! OpenAI's rate-limit headers, on every answer to a key with `rpm` or
//! `tpm`: `x-ratelimit-limit-*` is the key's cluster-wide limit,
//! `x-ratelimit-remaining-*` what this node can still admit of its share
//! now, and `x-ratelimit-reset-*` how long until this node's window is
//! back to its initial state, in OpenAI's duration form (`1s`, `6m0s`).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::limiter::{View, openai_duration};

static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// One limit's three figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    /// The key's limit per minute.
    pub limit: u64,
    /// What this node can still admit now.
    pub remaining: u64,
    /// Until this node's window is empty, OpenAI's form.
    pub reset: String,
}

impl Figures {
    fn new(limit: u64, share: f64, view: &View) -> Self {
        Self {
            limit,
            remaining: (share - view.estimate()).floor().max(0.0) as u64,
            reset: openai_duration(view.reset_ms()),
        }
    }
}

/// The headers of one answer, computed purely from the windows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateHeaders {
    /// For `rpm`.
    pub requests: Option<Figures>,
    /// For `tpm`.
    pub tokens: Option<Figures>,
}

impl RateHeaders {
    /// From (the key's limit, this node's share of it, its window).
    pub fn new(requests: Option<(u64, f64, View)>, tokens: Option<(u64, f64, View)>) -> Self {
        Self {
            requests: requests.map(|(l, s, v)| Figures::new(l, s, &v)),
            tokens: tokens.map(|(l, s, v)| Figures::new(l, s, &v)),
        }
    }

    /// Sets them on an answer.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let triples = [
            (
                &self.requests,
                [&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS],
            ),
            (
                &self.tokens,
                [&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS],
            ),
        ];
        for (figures, [limit, remaining, reset]) in triples {
            let Some(f) = figures else { continue };
            headers.insert(limit.clone(), HeaderValue::from(f.limit));
            headers.insert(remaining.clone(), HeaderValue::from(f.remaining));
            if let Ok(v) = HeaderValue::from_str(&f.reset) {
                headers.insert(reset.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn headers_say_the_limit_what_remains_and_when_it_resets() {
        let view = View {
            current: 3,
            previous: 4,
            elapsed_ms: 45_000,
            window_ms: 60_000,
        };
        // 4 × 0.25 + 3 = 4 counted of a share of 10.
        let h = RateHeaders::new(Some((30, 10.0, view)), None);
        let mut map = HeaderMap::new();
        h.apply(&mut map);
        assert_eq!(map["x-ratelimit-limit-requests"], "30");
        assert_eq!(map["x-ratelimit-remaining-requests"], "6");
        assert_eq!(map["x-ratelimit-reset-requests"], "1m15s");
        assert!(!map.contains_key("x-ratelimit-limit-tokens"));
        let full = View {
            current: 50,
            previous: 0,
            elapsed_ms: 0,
            window_ms: 60_000,
        };
        let h = RateHeaders::new(None, Some((100, 20.0, full)));
        assert_eq!(h.tokens.unwrap().remaining, 0, "never negative");
    }
}
