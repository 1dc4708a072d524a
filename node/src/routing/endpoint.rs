//! The endpoints Meridian proxies, the API each belongs to, and which
//! upstream kinds can answer each: natively, or through a translation.

use http::Uri;
use http::uri::InvalidUri;
use proto::config::{UpstreamConfig, UpstreamKind};

/// A proxied endpoint, as the client called it and as an upstream is sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    ChatCompletions,
    /// `/v1/completions`
    Completions,
    /// `/v1/embeddings`
    Embeddings,
    /// `/v1/messages`, Anthropic's Messages API.
    Messages,
    /// `/v1/messages/count_tokens`
    CountTokens,
    /// `/v1/responses`, OpenAI's Responses API (a new response; the calls
    /// on an existing one name their upstream, see [`crate::responses`]).
    Responses,
}

/// The API a client speaks, which fixes the shape of every error it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// Anthropic's: `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
}

/// How a request reaches a target of another API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Sent as the client wrote it (the model name spliced in).
    None,
    /// An Anthropic Messages client, an OpenAI chat target.
    MessagesToChat,
    /// An OpenAI chat client, a native Anthropic target.
    ChatToMessages,
    /// The Responses API, passed through, with the response ids in the
    /// answer tagged with the upstream that holds them
    /// ([`crate::responses`]).
    TagResponses,
}

impl Translation {
    /// Whether the answer changes API on its way back (and with it its
    /// content type), not just a few of its values.
    pub fn changes_api(self) -> bool {
        matches!(self, Self::MessagesToChat | Self::ChatToMessages)
    }
}

impl Endpoint {
    /// Every proxied endpoint, in the order of `Upstream::uris`.
    pub const ALL: [Endpoint; 6] = [
        Self::ChatCompletions,
        Self::Completions,
        Self::Embeddings,
        Self::Messages,
        Self::CountTokens,
        Self::Responses,
    ];

    /// The endpoint for a client path, if it is one Meridian proxies. The
    /// Anthropic paths are also served under a doubled `/v1/v1/`: code that
    /// hands both SDKs the same `base_url` ending in `/v1` makes the
    /// anthropic SDK call `/v1/v1/messages`, and it should work unchanged.
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        match path {
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            "/v1/completions" => Some(Self::Completions),
            "/v1/embeddings" => Some(Self::Embeddings),
            "/v1/responses" | "/v1/v1/responses" => Some(Self::Responses),
            "/v1/messages" | "/v1/v1/messages" => Some(Self::Messages),
            "/v1/messages/count_tokens" | "/v1/v1/messages/count_tokens" => Some(Self::CountTokens),
            _ => None,
        }
    }

    /// The API of the client calling it.
    pub fn dialect(self) -> Dialect {
        match self {
            Self::Messages | Self::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Whether a path is one of Anthropic's, so that even a refusal
    /// before the endpoint is known (a bad key, an unknown Anthropic path)
    /// is in the shape the anthropic SDK reads.
    pub fn dialect_of_path(path: &str) -> Dialect {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        let path = path.strip_prefix("/v1").unwrap_or(path);
        if path == "/messages" || path.starts_with("/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }

    /// The path below the upstream's base URL.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Messages => "/messages",
            Self::CountTokens => "/messages/count_tokens",
            Self::Responses => "/responses",
        }
    }

    /// Where a request to this endpoint goes on an upstream, and through
    /// which translation; `None` when the upstream cannot answer it at all
    /// (embeddings from Anthropic, the Responses API from a server that
    /// does not declare it).
    pub fn on(self, upstream: &UpstreamConfig) -> Option<(Endpoint, Translation)> {
        use UpstreamKind::{Anthropic, Azure, Openai};
        match (self, upstream.kind) {
            (Self::ChatCompletions | Self::Completions | Self::Embeddings, Openai | Azure)
            | (Self::Messages | Self::CountTokens, Anthropic) => Some((self, Translation::None)),
            (Self::Responses, Openai) if upstream.responses => {
                Some((self, Translation::TagResponses))
            }
            (Self::Messages, Openai | Azure) => {
                Some((Self::ChatCompletions, Translation::MessagesToChat))
            }
            (Self::ChatCompletions, Anthropic) => {
                Some((Self::Messages, Translation::ChatToMessages))
            }
            _ => None,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Each endpoint's URI on one Azure OpenAI deployment, by `Endpoint`
/// index: `{base_url}/openai/deployments/{deployment}{suffix}?api-version=…`,
/// the deployment (the target's model) percent-encoded as one path
/// segment and the `api-version` the upstream's own, never a client's.
/// Built once per target when the snapshot is, so the hot path formats
/// nothing; only chat, completions and embeddings are ever sent there
/// ([`Endpoint::on`]), the other entries follow the same shape unused.
pub fn azure_uris(
    upstream: &UpstreamConfig,
    deployment: &str,
) -> Result<[Uri; Endpoint::ALL.len()], InvalidUri> {
    let base = upstream.base_url.trim_end_matches('/');
    let segment = path_segment(deployment);
    let version = upstream.api_version.as_deref().unwrap_or_default();
    let mut uris: [Uri; Endpoint::ALL.len()] = Default::default();
    for (uri, endpoint) in uris.iter_mut().zip(Endpoint::ALL) {
        *uri = format!(
            "{base}/openai/deployments/{segment}{}?api-version={version}",
            endpoint.suffix()
        )
        .parse()?;
    }
    Ok(uris)
}

/// `text` as one URI path segment: RFC 3986's unreserved characters kept,
/// every other byte percent-encoded, so a deployment name can neither add
/// a segment (`/`), start a query (`?`) nor climb out of its place (a
/// segment of dots alone is encoded whole).
fn path_segment(text: &str) -> String {
    let dots = text.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b.is_ascii_alphanumeric() || b"-_~".contains(&b) || b == b'.') && !dots {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn upstream(kind: UpstreamKind, responses: bool) -> UpstreamConfig {
        UpstreamConfig {
            kind,
            responses,
            ..harness_free_upstream()
        }
    }

    fn harness_free_upstream() -> UpstreamConfig {
        UpstreamConfig {
            id: "u".into(),
            base_url: "http://u/v1".into(),
            ..UpstreamConfig::default()
        }
    }

    #[test]
    fn paths_name_their_endpoint_and_dialect() {
        for (path, endpoint, dialect) in [
            (
                "/v1/chat/completions",
                Endpoint::ChatCompletions,
                Dialect::OpenAi,
            ),
            ("/v1/messages", Endpoint::Messages, Dialect::Anthropic),
            ("/v1/v1/messages", Endpoint::Messages, Dialect::Anthropic),
            ("/v1/messages/", Endpoint::Messages, Dialect::Anthropic),
            (
                "/v1/v1/messages/count_tokens",
                Endpoint::CountTokens,
                Dialect::Anthropic,
            ),
            ("/v1/responses", Endpoint::Responses, Dialect::OpenAi),
        ] {
            assert_eq!(Endpoint::from_path(path), Some(endpoint), "{path}");
            assert_eq!(endpoint.dialect(), dialect);
            assert_eq!(Endpoint::dialect_of_path(path), dialect, "{path}");
        }
        for hostile in [
            "/v1/v1/v1/messages",
            "/v1/messages/../chat",
            "/messages",
            "/v1/messagesx",
        ] {
            assert_eq!(Endpoint::from_path(hostile), None, "{hostile}");
        }
        assert_eq!(
            Endpoint::dialect_of_path("/v1/messages/nope"),
            Dialect::Anthropic
        );
        assert_eq!(Endpoint::dialect_of_path("/v1/nope"), Dialect::OpenAi);
    }

    #[test]
    fn each_kind_answers_what_it_can() {
        let openai = upstream(UpstreamKind::Openai, false);
        let openai_responses = upstream(UpstreamKind::Openai, true);
        let anthropic = upstream(UpstreamKind::Anthropic, false);
        use Translation as T;
        assert_eq!(
            Endpoint::Messages.on(&openai),
            Some((Endpoint::ChatCompletions, T::MessagesToChat))
        );
        assert_eq!(
            Endpoint::ChatCompletions.on(&anthropic),
            Some((Endpoint::Messages, T::ChatToMessages))
        );
        assert_eq!(
            Endpoint::Messages.on(&anthropic),
            Some((Endpoint::Messages, T::None))
        );
        assert_eq!(Endpoint::Embeddings.on(&anthropic), None);
        assert_eq!(Endpoint::CountTokens.on(&openai), None);
        assert_eq!(Endpoint::Responses.on(&openai), None);
        assert_eq!(
            Endpoint::Responses.on(&openai_responses),
            Some((Endpoint::Responses, T::TagResponses))
        );
        assert_eq!(Endpoint::Responses.on(&anthropic), None);
        let azure = upstream(UpstreamKind::Azure, false);
        assert_eq!(
            Endpoint::Embeddings.on(&azure),
            Some((Endpoint::Embeddings, T::None))
        );
        assert_eq!(
            Endpoint::Messages.on(&azure),
            Some((Endpoint::ChatCompletions, T::MessagesToChat))
        );
        assert_eq!(Endpoint::Responses.on(&azure), None);
        assert_eq!(Endpoint::CountTokens.on(&azure), None);
    }

    #[test]
    fn azure_uris_name_the_deployment_and_the_configured_version() {
        let azure = UpstreamConfig {
            kind: UpstreamKind::Azure,
            base_url: "https://res.openai.azure.com/".into(),
            api_version: Some("2024-10-21".into()),
            ..harness_free_upstream()
        };
        let uris = azure_uris(&azure, "gpt-4o.mini_1").unwrap();
        assert_eq!(
            uris[Endpoint::ChatCompletions.index()],
            "https://res.openai.azure.com/openai/deployments/gpt-4o.mini_1/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            uris[Endpoint::Embeddings.index()].path(),
            "/openai/deployments/gpt-4o.mini_1/embeddings"
        );
        assert_eq!(
            uris[Endpoint::Completions.index()].query(),
            Some("api-version=2024-10-21")
        );
        for (hostile, segment) in [
            ("a/b?api-version=x", "a%2Fb%3Fapi-version%3Dx"),
            ("..", "%2E%2E"),
            ("é #", "%C3%A9%20%23"),
            ("a%2F", "a%252F"),
        ] {
            let uri = &azure_uris(&azure, hostile).unwrap()[Endpoint::ChatCompletions.index()];
            assert_eq!(
                uri.path(),
                format!("/openai/deployments/{segment}/chat/completions"),
                "{hostile}"
            );
            assert_eq!(uri.query(), Some("api-version=2024-10-21"));
        }
    }
}
