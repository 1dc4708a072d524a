//! One upstream's model list, fetched through its own pool (its TLS
//! settings, its private CA) with its own key header, page after page, within
//! a deadline. What the pages say is read by [`super::parse`].

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use proto::config::{DEFAULT_ANTHROPIC_VERSION, UpstreamKind};

use super::parse::{self, Gather, ParseError};
use crate::routing::Upstream;
use crate::scrub::Scrubber;

/// The largest page read: 10 000 models with their metadata fit in a few
/// MiB; a provider cannot make the leader buffer more.
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// Models asked for per page where the provider pages (Anthropic's maximum).
const PAGE_LIMIT: u32 = 1000;

/// Why a fetch gave no list. Every message is safe to log: the key never
/// appears (transport errors and provider bodies are scrubbed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The upstream is not used on this node (its key is missing here).
    #[error("the upstream is disabled on this node ({0})")]
    Disabled(String),
    /// Azure OpenAI lists the models a resource could deploy, not the
    /// deployments a request names: there is nothing to discover.
    #[error("kind = \"azure\" has no model list to discover (list its deployments in `models`)")]
    Unsupported,
    /// The URL of the list could not be formed.
    #[error("cannot form the model list's URL: {0}")]
    Url(String),
    /// The request failed before an answer (connect, TLS, reset).
    #[error("the model list could not be fetched: {0}")]
    Transport(String),
    /// The provider answered with an error status.
    #[error("the model list answered HTTP {0}")]
    Status(u16),
    /// The answer was larger than [`MAX_PAGE_BYTES`] or broke off.
    #[error("the model list's body could not be read: {0}")]
    Body(String),
    /// The answer was not a usable list.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The whole fetch took longer than the configured timeout.
    #[error("the model list did not arrive within {0:?}")]
    Timeout(Duration),
}

/// A fetched list: sorted, without repeats, and the entries skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The models.
    pub models: Vec<String>,
    /// Entries of the provider's list that were not usable names.
    pub skipped: usize,
}

/// Fetches `upstream`'s whole model list within `timeout`.
pub async fn fetch(
    upstream: &Upstream,
    scrub: &Scrubber,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    if let Some(disabled) = &upstream.disabled {
        return Err(FetchError::Disabled(format!(
            "{}: {}",
            disabled.field,
            scrub.message(&disabled.reason)
        )));
    }
    if upstream.config.kind == UpstreamKind::Azure {
        return Err(FetchError::Unsupported);
    }
    match tokio::time::timeout(timeout, pages(upstream, scrub)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(FetchError::Timeout(timeout)),
    }
}

async fn pages(upstream: &Upstream, scrub: &Scrubber) -> Result<Fetched, FetchError> {
    let mut gather = Gather::default();
    let mut after: Option<String> = None;
    loop {
        let uri = list_uri(
            &upstream.config.base_url,
            upstream.config.kind,
            after.as_deref(),
        )?;
        let body = get(upstream, scrub, uri).await?;
        match gather.add(parse::page(&body)?)? {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let (models, skipped) = gather.finish()?;
    Ok(Fetched { models, skipped })
}

/// `{base_url}/models`, with Anthropic's page size and, after the first
/// page, the cursor (`after_id` for Anthropic, `after` for OpenAI's lists).
pub fn list_uri(
    base_url: &str,
    kind: UpstreamKind,
    after: Option<&str>,
) -> Result<Uri, FetchError> {
    let mut text = format!("{}/models", base_url.trim_end_matches('/'));
    let cursor = if kind == UpstreamKind::Anthropic {
        text.push_str(&format!("?limit={PAGE_LIMIT}"));
        "&after_id="
    } else {
        "?after="
    };
    if let Some(after) = after {
        text.push_str(cursor);
        text.push_str(&escape(after));
    }
    text.parse()
        .map_err(|e: http::uri::InvalidUri| FetchError::Url(e.to_string()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// One page: GET with the upstream's key header (and, for Anthropic, its
/// `anthropic-version`), a 2xx answer, its body read up to the limit.
async fn get(upstream: &Upstream, scrub: &Scrubber, uri: Uri) -> Result<Bytes, FetchError> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("meridian/", env!("CARGO_PKG_VERSION"))),
    );
    if let Some((name, value)) = upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    if upstream.config.kind == UpstreamKind::Anthropic {
        let version = upstream
            .config
            .anthropic_version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
            .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION));
        headers.insert(ANTHROPIC_VERSION.clone(), version);
    }
    // An error and its causes on one line (the client's own says only
    // "client error").
    let response = upstream.pools.send(request).await.map_err(|e| {
        let chain = std::iter::once(e.to_string()).chain(e.causes());
        FetchError::Transport(scrub.message(&chain.collect::<Vec<_>>().join(": ")))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
        .collect()
        .await
        .map_err(|e| FetchError::Body(scrub.message(&e.to_string())))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;

    use proto::Config;

    use super::*;
    use crate::routing::{RoutingSnapshot, Secrets};

    const KEY: &str = "sk-catalogue-test-0123456789abcdef";

    struct Env(HashMap<&'static str, &'static str>);
    impl Secrets for Env {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
    }

    /// Both shapes from one mock that wants `KEY`, each with the kind's
    /// key header; a wrong key is a 401 whose error carries no key.
    #[tokio::test]
    async fn each_kind_fetches_its_shape_with_its_key_header() {
        let mock = mock::MockServer::start(mock::MockConfig {
            api_key: Some(KEY.to_owned()),
            models: vec!["m2".into(), "m1".into(), "m1".into()],
            ..mock::MockConfig::default()
        })
        .await
        .unwrap();
        let base = format!("http://{}/v1", mock.api_addr());
        let config = Config::from_toml(&format!(
            "[node]\nid = 1\nregion = \"r\"\n\n\
             [[upstreams]]\nid = \"o\"\nbase_url = \"{base}\"\napi_key_env = \"GOOD\"\n\n\
             [[upstreams]]\nid = \"a\"\nbase_url = \"{base}\"\napi_key_env = \"GOOD\"\nkind = \"anthropic\"\n\n\
             [[upstreams]]\nid = \"w\"\nbase_url = \"{base}\"\napi_key_env = \"WRONG\"\n"
        ))
        .unwrap();
        let env = Env(HashMap::from([
            ("GOOD", KEY),
            ("WRONG", "sk-wrong-key-0123456789abcdef"),
        ]));
        let snapshot = RoutingSnapshot::build(&config, &env, None).unwrap();
        let upstream = |id: &str| {
            snapshot
                .upstreams
                .iter()
                .find(|u| u.id.as_ref() == id)
                .unwrap()
                .clone()
        };
        let timeout = Duration::from_secs(10);
        for id in ["o", "a"] {
            let fetched = fetch(&upstream(id), &snapshot.scrub, timeout)
                .await
                .unwrap();
            assert_eq!(fetched.models, ["m1", "m2"], "{id}");
            assert_eq!(fetched.skipped, 0);
        }
        let refused = fetch(&upstream("w"), &snapshot.scrub, timeout)
            .await
            .unwrap_err();
        assert_eq!(refused, FetchError::Status(401));
        mock.stop().await;
        let gone = fetch(&upstream("o"), &snapshot.scrub, timeout)
            .await
            .unwrap_err();
        assert!(matches!(gone, FetchError::Transport(_)), "{gone:?}");
        assert!(!gone.to_string().contains(KEY));
    }

    #[test]
    fn the_list_url_follows_the_kind_and_escapes_the_cursor() {
        let openai = list_uri("http://h/v1/", UpstreamKind::Openai, None).unwrap();
        assert_eq!(openai.to_string(), "http://h/v1/models");
        let anthropic = list_uri(
            "https://api.anthropic.com/v1",
            UpstreamKind::Anthropic,
            None,
        );
        assert_eq!(
            anthropic.unwrap().to_string(),
            "https://api.anthropic.com/v1/models?limit=1000"
        );
        let next = list_uri("http://h/v1", UpstreamKind::Anthropic, Some("a/b&c=d#é")).unwrap();
        assert_eq!(
            next.to_string(),
            "http://h/v1/models?limit=1000&after_id=a%2Fb%26c%3Dd%23%C3%A9"
        );
        let next = list_uri("http://h/v1", UpstreamKind::Openai, Some("m-1")).unwrap();
        assert_eq!(next.to_string(), "http://h/v1/models?after=m-1");
    }
}
