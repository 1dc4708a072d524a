//! Client keys. Only SHA-256 hashes are kept, so a heap dump or an admin
//! answer never holds a usable key; a lookup hashes the presented key once.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::ProxyError;

/// A SHA-256 digest of a client key.
pub type KeyHash = [u8; 32];

/// Hashes a client key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The client keys this node accepts, by hash, with the holder's name.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    keys: HashMap<KeyHash, Arc<str>>,
}

impl KeyRing {
    /// A ring from (holder name, key hash) pairs.
    pub fn new(keys: impl IntoIterator<Item = (String, KeyHash)>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|(name, hash)| (hash, Arc::from(name)))
                .collect(),
        }
    }

    /// Whether any key is configured; with none the node only listens on loopback.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key holder's name, or why the request is refused. With no keys
    /// configured every request is accepted as `anonymous`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<str>, ProxyError> {
        if self.keys.is_empty() {
            return Ok(Arc::from("anonymous"));
        }
        let presented = bearer(headers).ok_or(ProxyError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY`.",
        ))?;
        self.keys
            .get(&hash_key(presented))
            .cloned()
            .ok_or(ProxyError::Unauthorized("Incorrect API key provided."))
    }
}

/// The key from `Authorization: Bearer KEY`, or from `api-key: KEY` as Azure
/// OpenAI clients send it.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|k| !k.is_empty());
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
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
    fn empty_ring_accepts_everyone() {
        assert!(KeyRing::default().authenticate(&HeaderMap::new()).is_ok());
    }
}
