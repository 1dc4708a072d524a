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
        if self.http2 && uri.scheme_str() == Some("https") {
            return Err(ConfigError::new(
                format!("{at}.http2"),
                "only applies to http:// upstreams; https negotiates HTTP/2 by ALPN",
            ));
        }
        Ok(())
    }
}
