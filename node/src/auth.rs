//! Client keys. Only SHA-256 hashes are kept, so a heap dump or an admin
//! answer never holds a usable key; a lookup hashes the presented key once.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::ProxyError;
use crate::loopback::Foreign;

/// The refusal of a key this node does not accept: the same words whether
/// it was never a key or is one being deleted, so a caller learns nothing
/// more from either.
pub const INCORRECT_KEY: ProxyError = ProxyError::Unauthorized("Incorrect API key provided.");

/// The refusals of an open node (no client keys, loopback only) to a
/// request a web page could have sent ([`crate::loopback`]).
const NOT_LOCAL_HOST: &str = "This node has no client keys, so it answers only requests addressed to \
     a loopback host; the Host header names another.";
const NOT_LOCAL_ORIGIN: &str = "This node has no client keys, so it answers only requests from a \
     loopback page; the Origin header names another site.";

/// A SHA-256 digest of a client key.
pub type KeyHash = [u8; 32];

/// Hashes a client key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The client keys this node accepts, by hash, with the holder's name.
/// With no key at all it refuses every request, unless it was opened
/// ([`KeyRing::open_when_empty`]): only a node started without keys on a
/// loopback data plane is.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    keys: HashMap<KeyHash, Arc<str>>,
    open_when_empty: bool,
}

impl KeyRing {
    /// A ring from (holder name, key hash) pairs; closed when empty.
    pub fn new(keys: impl IntoIterator<Item = (String, KeyHash)>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|(name, hash)| (hash, Arc::from(name)))
                .collect(),
            open_when_empty: false,
        }
    }

    /// Whether an empty ring accepts every request (as `anonymous`) rather
    /// than none: for a node started without keys on loopback only.
    pub fn open_when_empty(mut self, open: bool) -> Self {
        self.open_when_empty = open;
        self
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether every request is accepted, with no key asked.
    pub fn accepts_anyone(&self) -> bool {
        self.keys.is_empty() && self.open_when_empty
    }

    /// The key holder's name, or why the request is refused.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<str>, ProxyError> {
        if self.keys.is_empty() {
            return if self.open_when_empty {
                // Open to any local tool, not to a web page that reaches
                // the loopback listener through the operator's browser.
                match crate::loopback::check(headers) {
                    Ok(()) => Ok(Arc::from("anonymous")),
                    Err(foreign) => Err(ProxyError::Unauthorized(match foreign {
                        Foreign::Host => NOT_LOCAL_HOST,
                        Foreign::Origin => NOT_LOCAL_ORIGIN,
                    })),
                }
            } else {
                Err(ProxyError::Unauthorized(
                    "This node has no client keys and its API is not on loopback, so it accepts \
                     no request until an operator adds a key.",
                ))
            };
        }
        let presented = bearer(headers).ok_or(ProxyError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY` or \
             `x-api-key: KEY`.",
        ))?;
        self.keys
            .get(&hash_key(presented))
            .cloned()
            .ok_or(INCORRECT_KEY)
    }
}

/// The credential of `Authorization: <scheme> VALUE` when the scheme is
/// `Bearer` in any case (RFC 9110: schemes are case-insensitive), trimmed;
/// `None` when absent, of another scheme, or empty.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The key from `Authorization: Bearer KEY`, else from `x-api-key: KEY`
/// as the anthropic SDK sends it, else from `api-key: KEY` as Azure OpenAI
/// clients send it. A present `Authorization` decides alone (a non-Bearer
/// one is refused, not passed over for another header).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    if headers.contains_key(http::header::AUTHORIZATION) {
        return bearer_token(headers);
    }
    ["x-api-key", "api-key"].into_iter().find_map(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn accepts_known_keys_only() {
        let ring = KeyRing::new([("app".to_owned(), hash_key("sk-good"))]);
        let name = ring
            .authenticate(&headers("authorization", "Bearer sk-good"))
            .unwrap();
        assert_eq!(&*name, "app");
        assert!(ring.authenticate(&headers("api-key", "sk-good")).is_ok());
        assert!(ring.authenticate(&headers("x-api-key", "sk-good")).is_ok());
        assert!(
            ring.authenticate(&headers("x-api-key", " sk-good "))
                .is_ok()
        );
        assert!(ring.authenticate(&headers("x-api-key", "sk-bad")).is_err());
        assert!(ring.authenticate(&headers("x-api-key", "")).is_err());
        assert!(matches!(
            ring.authenticate(&headers("authorization", "Bearer sk-bad")),
            Err(ProxyError::Unauthorized(m)) if m.contains("Incorrect")
        ));
        assert!(matches!(
            ring.authenticate(&HeaderMap::new()),
            Err(ProxyError::Unauthorized(m)) if m.contains("didn't provide")
        ));
        assert!(
            ring.authenticate(&headers("authorization", "Basic sk-good"))
                .is_err()
        );
    }

    #[test]
    fn an_empty_ring_is_closed_unless_opened() {
        assert!(matches!(
            KeyRing::default().authenticate(&headers("authorization", "Bearer anything")),
            Err(ProxyError::Unauthorized(m)) if m.contains("no client keys")
        ));
        let open = KeyRing::new([]).open_when_empty(true);
        assert!(open.accepts_anyone());
        assert_eq!(&*open.authenticate(&HeaderMap::new()).unwrap(), "anonymous");
        // Not to a web page: a rebound name, another site's page.
        for (name, value, named) in [
            ("host", "rebound.evil.example", "Host"),
            ("origin", "http://evil.example", "Origin"),
        ] {
            assert!(matches!(
                open.authenticate(&headers(name, value)),
                Err(ProxyError::Unauthorized(m)) if m.contains(named)
            ));
        }
        assert!(
            open.authenticate(&headers("host", "127.0.0.1:8080"))
                .is_ok()
        );
        // Opening only matters while the ring is empty.
        let ring = KeyRing::new([("app".to_owned(), hash_key("sk-good"))]).open_when_empty(true);
        assert!(!ring.accepts_anyone());
        assert!(ring.authenticate(&HeaderMap::new()).is_err());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k  "] {
            assert_eq!(
                bearer_token(&headers("authorization", value)),
                Some("t0k"),
                "{value}"
            );
        }
        for value in ["Basic t0k", "Bearer", "Bearer   ", "Bearert0k", "Token t0k"] {
            assert_eq!(
                bearer_token(&headers("authorization", value)),
                None,
                "{value}"
            );
        }
    }
}
