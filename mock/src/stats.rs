//! What the fake provider saw, so a test can check what the proxy sent it
//! (how many requests, which model, which faults fired). Counters are atomics;
//! the per-model map takes a read lock unless a model is new.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock, TryLockError};

use http::Version;
use serde::Serialize;

use super::seen::Seen;

/// Distinct model names counted one by one; later ones share [`OTHER_MODELS`],
/// so a client sending random names cannot grow the map without bound.
const MAX_MODELS: usize = 1024;

/// The bucket for models past [`MAX_MODELS`].
const OTHER_MODELS: &str = "(other)";

/// The names of `by_version`: HTTP/1.0 and 1.1 share the first (the mock
/// serves HTTP/1 and HTTP/2 only).
const VERSIONS: [&str; 2] = ["HTTP/1", "HTTP/2"];

/// The data-plane endpoints, for routing and for `by_path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `GET /v1/models`.
    Models,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1/messages/count_tokens` (Anthropic).
    CountTokens,
    /// `POST /v1/responses`.
    Responses,
    /// `/v1/responses/{id}`, its `/cancel` and `/input_items`.
    ResponseById,
    /// Any other path (answered 404).
    Other,
}

impl Endpoint {
    const ALL: [Endpoint; 9] = [
        Endpoint::Chat,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Models,
        Endpoint::Messages,
        Endpoint::CountTokens,
        Endpoint::Responses,
        Endpoint::ResponseById,
        Endpoint::Other,
    ];

    /// The endpoint a path names (the method is checked by the caller).
    pub fn from_path(path: &str) -> Self {
        match path {
            "/v1/chat/completions" => Endpoint::Chat,
            "/v1/completions" => Endpoint::Completions,
            "/v1/embeddings" => Endpoint::Embeddings,
            "/v1/models" => Endpoint::Models,
            "/v1/messages" => Endpoint::Messages,
            "/v1/messages/count_tokens" => Endpoint::CountTokens,
            "/v1/responses" => Endpoint::Responses,
            _ if path.starts_with("/v1/responses/") => Endpoint::ResponseById,
            _ => Endpoint::Other,
        }
    }

    /// The path, as counted in `by_path` (`other` for unknown paths).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Models => "/v1/models",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::Responses => "/v1/responses",
            Endpoint::ResponseById => "/v1/responses/{id}",
            Endpoint::Other => "other",
        }
    }
}

/// How a data request ended, as counted in `outcomes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered normally.
    Ok,
    /// Injected error status.
    Error,
    /// Injected 429.
    RateLimited,
    /// Never answered on purpose.
    Stalled,
    /// Aborted mid-answer on purpose.
    Cut,
    /// Missing or wrong API key (401).
    Unauthorized,
    /// Malformed request (400, 413).
    BadRequest,
    /// Unknown path or method (404).
    NotFound,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::RateLimited,
        Outcome::Stalled,
        Outcome::Cut,
        Outcome::Unauthorized,
        Outcome::BadRequest,
        Outcome::NotFound,
    ];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Stalled => "stalled",
            Outcome::Cut => "cut",
            Outcome::Unauthorized => "unauthorized",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
        }
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    by_path: [AtomicU64; Endpoint::ALL.len()],
    by_version: [AtomicU64; VERSIONS.len()],
    by_model: RwLock<HashMap<Box<str>, AtomicU64>>,
    last_authorization_seen: AtomicBool,
    anthropic: Mutex<AnthropicHeaders>,
    seen: Mutex<Seen>,
    azure_requests: AtomicU64,
}

/// What the latest Messages-API request (`/v1/messages`, `/count_tokens`)
/// said about itself, so a test can check what the proxy sent.
#[derive(Clone, Debug, Default)]
pub struct AnthropicHeaders {
    /// Whether it carried `x-api-key` (never its value).
    pub x_api_key_seen: bool,
    /// Its `anthropic-version`, at most [`MAX_HEADER`] bytes.
    pub version: Option<String>,
    /// Its `anthropic-beta`, at most [`MAX_HEADER`] bytes.
    pub beta: Option<String>,
}

/// The longest header value kept (longer ones are cut at a char boundary).
pub const MAX_HEADER: usize = 256;

/// The `GET /_mock/stats` answer.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Data requests received.
    pub requests: u64,
    /// Count per [`Outcome`] name (all present, zeros included).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Count per requested model (only models seen).
    pub by_model: BTreeMap<String, u64>,
    /// Count per path (only paths seen).
    pub by_path: BTreeMap<&'static str, u64>,
    /// Count per HTTP version, `HTTP/1` or `HTTP/2` (only versions seen),
    /// so a test can tell what a client negotiated.
    pub by_version: BTreeMap<&'static str, u64>,
    /// Whether the latest request carried an `Authorization` header (never its value).
    pub last_authorization_seen: bool,
    /// Whether the latest Messages-API request carried `x-api-key` (never its value).
    pub last_x_api_key_seen: bool,
    /// The `anthropic-version` of the latest Messages-API request.
    pub last_anthropic_version: Option<String>,
    /// The `anthropic-beta` of the latest Messages-API request.
    pub last_anthropic_beta: Option<String>,
    /// Data requests in Azure's path shape (`/openai/deployments/…`).
    pub azure_requests: u64,
    /// The latest data request's passed headers (`last_traceparent`,
    /// `last_user_agent`, `last_header_names`, …).
    #[serde(flatten)]
    pub seen: Seen,
}

impl Stats {
    /// Counts a new data request and returns its number (0-based), which
    /// seeds its random draws.
    pub fn begin(&self, endpoint: Endpoint, version: Version, authorization_seen: bool) -> u64 {
        self.by_path[endpoint as usize].fetch_add(1, Relaxed);
        let version = usize::from(version == Version::HTTP_2);
        self.by_version[version].fetch_add(1, Relaxed);
        self.last_authorization_seen
            .store(authorization_seen, Relaxed);
        self.requests.fetch_add(1, Relaxed)
    }

    /// Records the Anthropic headers of a Messages-API request.
    pub fn anthropic(&self, x_api_key_seen: bool, version: Option<&[u8]>, beta: Option<&[u8]>) {
        let keep = |value: Option<&[u8]>| {
            value.map(|v| {
                let text = String::from_utf8_lossy(v);
                let mut end = text.len().min(MAX_HEADER);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_owned()
            })
        };
        *self.anthropic.lock().unwrap_or_else(|e| e.into_inner()) = AnthropicHeaders {
            x_api_key_seen,
            version: keep(version),
            beta: keep(beta),
        };
    }

    /// Counts a request in Azure's shape when `azure`, and records what
    /// the request carried (`make`, [`Seen`]). Under concurrent load "the
    /// latest" is any recent one: a request that finds the record busy
    /// skips it rather than wait (a benchmark's mock stays lock-free in
    /// effect), and a test's sequential requests are each recorded.
    pub fn seen(&self, azure: bool, make: impl FnOnce() -> Seen) {
        if azure {
            self.azure_requests.fetch_add(1, Relaxed);
        }
        let mut slot = match self.seen.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        *slot = make();
    }

    /// Counts how a request ended.
    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts a request for `model`.
    pub fn model(&self, model: &str) {
        {
            let map = self.by_model.read().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = map.get(model) {
                count.fetch_add(1, Relaxed);
                return;
            }
        }
        let mut map = self.by_model.write().unwrap_or_else(|e| e.into_inner());
        let key = if map.len() < MAX_MODELS || map.contains_key(model) {
            model
        } else {
            OTHER_MODELS
        };
        map.entry(key.into()).or_default().fetch_add(1, Relaxed);
    }

    /// Zeroes everything (`POST /_mock/reset`), request numbers included, so
    /// a run after a reset draws the same faults as the first.
    pub fn reset(&self) {
        let mut map = self.by_model.write().unwrap_or_else(|e| e.into_inner());
        map.clear();
        self.requests.store(0, Relaxed);
        self.azure_requests.store(0, Relaxed);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Seen::default();
        self.outcomes
            .iter()
            .chain(&self.by_path)
            .chain(&self.by_version)
            .for_each(|c| c.store(0, Relaxed));
        self.last_authorization_seen.store(false, Relaxed);
        *self.anthropic.lock().unwrap_or_else(|e| e.into_inner()) = AnthropicHeaders::default();
    }

    /// A copy of the counters, for the control plane.
    pub fn snapshot(&self) -> Snapshot {
        let by_model = self
            .by_model
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(model, count)| (model.to_string(), count.load(Relaxed)))
            .collect();
        let anthropic = self
            .anthropic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Snapshot {
            requests: self.requests.load(Relaxed),
            outcomes: Outcome::ALL
                .iter()
                .map(|o| (o.name(), self.outcomes[*o as usize].load(Relaxed)))
                .collect(),
            by_model,
            by_path: Endpoint::ALL
                .iter()
                .map(|e| (e.path(), self.by_path[*e as usize].load(Relaxed)))
                .filter(|(_, count)| *count > 0)
                .collect(),
            by_version: VERSIONS
                .iter()
                .zip(&self.by_version)
                .map(|(name, count)| (*name, count.load(Relaxed)))
                .filter(|(_, count)| *count > 0)
                .collect(),
            last_authorization_seen: self.last_authorization_seen.load(Relaxed),
            last_x_api_key_seen: anthropic.x_api_key_seen,
            last_anthropic_version: anthropic.version,
            last_anthropic_beta: anthropic.beta,
            azure_requests: self.azure_requests.load(Relaxed),
            seen: self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn counts_and_resets() {
        let stats = Stats::default();
        assert_eq!(stats.begin(Endpoint::Chat, Version::HTTP_11, true), 0);
        assert_eq!(stats.begin(Endpoint::Chat, Version::HTTP_2, false), 1);
        stats.model("a");
        stats.model("a");
        stats.outcome(Outcome::Cut);
        let snap = stats.snapshot();
        assert_eq!(snap.requests, 2);
        assert_eq!(snap.by_model["a"], 2);
        assert_eq!(snap.by_path["/v1/chat/completions"], 2);
        assert_eq!(snap.by_version["HTTP/1"], 1);
        assert_eq!(snap.by_version["HTTP/2"], 1);
        assert_eq!(snap.outcomes["cut"], 1);
        assert_eq!(snap.outcomes["ok"], 0);
        assert!(!snap.last_authorization_seen);

        stats.reset();
        let snap = stats.snapshot();
        assert_eq!(snap.requests, 0);
        assert!(snap.by_model.is_empty() && snap.by_path.is_empty() && snap.by_version.is_empty());
        assert_eq!(stats.begin(Endpoint::Models, Version::HTTP_11, false), 0);
    }

    #[test]
    fn anthropic_headers_are_kept_bounded_and_reset() {
        let stats = Stats::default();
        let long = "é".repeat(MAX_HEADER);
        stats.anthropic(true, Some(b"2023-06-01"), Some(long.as_bytes()));
        let snap = stats.snapshot();
        assert!(snap.last_x_api_key_seen);
        assert_eq!(snap.last_anthropic_version.as_deref(), Some("2023-06-01"));
        assert_eq!(snap.last_anthropic_beta.unwrap().len(), MAX_HEADER);
        stats.anthropic(false, None, None);
        assert_eq!(stats.snapshot().last_anthropic_version, None);
        stats.anthropic(true, Some(b"v"), None);
        stats.reset();
        let snap = stats.snapshot();
        assert!(!snap.last_x_api_key_seen && snap.last_anthropic_version.is_none());
        assert_eq!(
            Endpoint::from_path("/v1/responses/resp_1/cancel"),
            Endpoint::ResponseById
        );
        assert_eq!(
            Endpoint::from_path("/v1/messages/count_tokens"),
            Endpoint::CountTokens
        );
    }

    #[test]
    fn model_map_is_bounded() {
        let stats = Stats::default();
        for i in 0..MAX_MODELS + 10 {
            stats.model(&format!("m{i}"));
        }
        stats.model("m0");
        let snap = stats.snapshot();
        assert_eq!(snap.by_model.len(), MAX_MODELS + 1);
        assert_eq!(snap.by_model[OTHER_MODELS], 10);
        assert_eq!(snap.by_model["m0"], 2);
    }
}
