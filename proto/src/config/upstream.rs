//! Client keys and the provider deployments (`[[upstreams]]`) requests go to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::{check_env_name, check_name, check_path};

/// A client key, read from the environment so it never sits in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds the key; appears in logs instead of the key.
    pub name: String,
    /// Environment variable that holds the key.
    pub key_env: String,
}

/// How the provider key is presented to the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamAuth {
    /// `Authorization: Bearer KEY` (OpenAI and most compatible servers).
    #[default]
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
}

/// Which API an upstream speaks. A route may mix kinds: Meridian translates
/// between a client's API and its target's (node/src/translate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// OpenAI's API: OpenAI itself and every compatible server (chat
    /// completions, completions, embeddings; the Responses API where
    /// `responses` says so).
    #[default]
    Openai,
    /// Anthropic's native Messages API (`{base_url}/messages`), the key in
    /// `x-api-key` and an `anthropic-version` on every request: prompt
    /// caching and Anthropic's own features, which its OpenAI-compatible
    /// layer lacks.
    Anthropic,
}

/// The `anthropic-version` sent to a native Anthropic upstream when the
/// client named none (an OpenAI-SDK client never does).
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// One provider deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name routes refer to; appears in `x-meridian-upstream`.
    pub id: String,
    /// Base URL up to and including the API version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Where the deployment runs; informs health sharing across regions.
    #[serde(default)]
    pub region: String,
    /// Environment variable holding the provider key on each node.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the provider key on each node (instead of `api_key_env`).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// How the key is sent.
    #[serde(default)]
    pub auth: UpstreamAuth,
    /// Speak HTTP/2 without TLS negotiation (h2c prior knowledge) to a
    /// plain `http://` upstream; `https://` upstreams negotiate it by ALPN.
    #[serde(default)]
    pub http2: bool,
    /// Extra CA (PEM) trusted for this upstream's TLS, for private deployments.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The API it speaks.
    #[serde(default)]
    pub kind: UpstreamKind,
    /// For `kind = "anthropic"`: the `anthropic-version` sent when the
    /// client sent none ([`DEFAULT_ANTHROPIC_VERSION`] when unset).
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// For `kind = "openai"`: it serves the Responses API (`/responses`),
    /// so `/v1/responses` may be sent to it. Off by default: most
    /// OpenAI-compatible servers do not serve it.
    #[serde(default)]
    pub responses: bool,
}

impl UpstreamConfig {
    /// Validates one upstream; `at` is its path in the file (or API body).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_name(&format!("{at}.id"), &self.id)?;
        let uri: http::Uri = self
            .base_url
            .parse()
            .map_err(|e| ConfigError::new(format!("{at}.base_url"), format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(ConfigError::new(
                    format!("{at}.base_url"),
                    "must start with http:// or https://",
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                format!("{at}.base_url"),
                "must name a host",
            ));
        }
        if uri.query().is_some() {
            return Err(ConfigError::new(
                format!("{at}.base_url"),
                "must not carry a query string",
            ));
        }
        // Credentials in the URL would be stored in the Raft log and shown
        // in admin answers: the key belongs in api_key_env or api_key_file.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ConfigError::new(
                format!("{at}.base_url"),
                "must not carry credentials (user:password@); put the provider key in \
                 api_key_env or api_key_file",
            ));
        }
        if self.api_key_env.is_some() && self.api_key_file.is_some() {
            return Err(ConfigError::new(
                format!("{at}.api_key_file"),
                "set either api_key_env or api_key_file, not both",
            ));
        }
        if let Some(var) = &self.api_key_env {
            check_env_name(&format!("{at}.api_key_env"), var)?;
        }
        for (field, path) in [
            ("api_key_file", &self.api_key_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(path) = path {
                check_path(&format!("{at}.{field}"), path)?;
            }
        }
        match self.kind {
            UpstreamKind::Anthropic => {
                if self.auth != UpstreamAuth::Bearer {
                    return Err(ConfigError::new(
                        format!("{at}.auth"),
                        "an anthropic upstream always takes its key as x-api-key; leave auth unset",
                    ));
                }
                if self.responses {
                    return Err(ConfigError::new(
                        format!("{at}.responses"),
                        "the Responses API is OpenAI's; an anthropic upstream does not serve it",
                    ));
                }
                if let Some(version) = &self.anthropic_version {
                    check_anthropic_version(&format!("{at}.anthropic_version"), version)?;
                }
            }
            UpstreamKind::Openai => {
                if self.anthropic_version.is_some() {
                    return Err(ConfigError::new(
                        format!("{at}.anthropic_version"),
                        "only applies to kind = \"anthropic\"",
                    ));
                }
            }
        }
        if self.http2 && uri.scheme_str() == Some("https") {
            return Err(ConfigError::new(
                format!("{at}.http2"),
                "only applies to http:// upstreams; https negotiates HTTP/2 by ALPN",
            ));
        }
        Ok(())
    }
}

/// An `anthropic-version` value: a date such as `2023-06-01`. Checked for
/// the file's value and for a client's header alike, so nothing else
/// reaches an upstream's request head.
pub fn check_anthropic_version(field: &str, value: &str) -> Result<(), ConfigError> {
    let b = value.as_bytes();
    let ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "`{}` is not a version date like 2023-06-01",
                value.escape_debug()
            ),
        ))
    }
}
