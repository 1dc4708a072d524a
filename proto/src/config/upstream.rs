//! Client keys and the provider deployments (`[[upstreams]]`) requests go to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::{check_env_name, check_name, check_path};
use crate::tenancy::KeyLimits;

/// A client key, read from the environment so it never sits in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds the key; appears in logs instead of the key.
    pub name: String,
    /// Environment variable that holds the key.
    pub key_env: String,
    /// Route names and addressed models (`upstream/model`) the key may
    /// call, `*` matching any run of characters; absent: every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Requests per minute, cluster-wide; absent: no limit.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute (input + output), cluster-wide; absent: no limit.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Opening prepaid balance in US dollars; never expires; absent: no
    /// balance check.
    #[serde(default)]
    pub credits_usd: Option<f64>,
    /// Priority class; absent: the last class.
    #[serde(default)]
    pub class: Option<String>,
}

impl KeyConfig {
    /// The limits as the replicated state keeps them, or the field at
    /// fault (named from the key, e.g. `credits_usd`).
    pub fn limits(&self) -> Result<KeyLimits, ConfigError> {
        KeyLimits::from_dollars(
            self.models.clone(),
            self.rpm,
            self.tpm,
            self.credits_usd,
            self.class.clone(),
        )
    }
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
    /// Azure OpenAI: OpenAI's chat API at a deployment URL
    /// (`{base_url}/openai/deployments/{model}/chat/completions?api-version=…`),
    /// the key in `api-key`, so a deployment in each region can sit in a
    /// tier like any other upstream.
    Azure,
}

/// What a model costs, per million tokens, for the cost on every answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Per million input tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Per million output tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
    /// Per million input tokens read from the provider's prompt cache, where
    /// it bills them apart (absent: billed as input).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

/// The `anthropic-version` sent to a native Anthropic upstream when the
/// client named none (an OpenAI-SDK client never does).
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// One provider deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Speak HTTP/2 to the upstream: by ALPN over `https://`, with prior
    /// knowledge (h2c) over `http://`. Off, the node speaks HTTP/1.1 over
    /// keep-alive connections of its own, plain or TLS.
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
    /// Other prefixes that address it: with `aliases = ["deepseek-ai"]`,
    /// `deepseek-ai/DeepSeek-V3.2` reaches it as `deepseek/…` does.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The models it serves, listed in `/v1/models` as `{id}/{model}`;
    /// when this (or the discovered list) is not empty, an addressed name
    /// outside it is a 404.
    #[serde(default)]
    pub models: Vec<String>,
    /// Prices of its models when addressed as `{id}/{model}` (a route's
    /// targets carry their own).
    #[serde(default)]
    pub prices: BTreeMap<String, ModelPrice>,
    /// The leader fetches the upstream's own model list on an interval and
    /// commits it, so every region lists the same catalogue.
    #[serde(default)]
    pub discover_models: bool,
    /// For `kind = "azure"`: the `api-version` query parameter.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Requests in flight to it from each node; at capacity it is not
    /// eligible for the classes that may not use what is left, which fall
    /// to the next target or tier. Absent: no limit.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Requests per minute the provider grants the account, shared by all
    /// nodes like a key's rpm. Absent: no limit.
    #[serde(default)]
    pub rpm: Option<u64>,
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
        for (i, alias) in self.aliases.iter().enumerate() {
            check_name(&format!("{at}.aliases[{i}]"), alias)?;
            if *alias == self.id {
                return Err(ConfigError::new(
                    format!("{at}.aliases[{i}]"),
                    "is the upstream's own id",
                ));
            }
        }
        for (i, model) in self.models.iter().enumerate() {
            check_model_name(&format!("{at}.models[{i}]"), model)?;
        }
        for (model, price) in &self.prices {
            check_model_name(&format!("{at}.prices"), model)?;
            for (field, value) in [
                ("input_per_mtok", Some(price.input_per_mtok)),
                ("output_per_mtok", Some(price.output_per_mtok)),
                ("cached_input_per_mtok", price.cached_input_per_mtok),
            ] {
                if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(ConfigError::new(
                        format!("{at}.prices.{model}.{field}"),
                        "must be a finite price of at least 0",
                    ));
                }
            }
        }
        match (self.kind, &self.api_version) {
            (UpstreamKind::Azure, None) => {
                return Err(ConfigError::new(
                    format!("{at}.api_version"),
                    "an azure upstream needs its api-version, e.g. 2024-10-21",
                ));
            }
            (UpstreamKind::Azure, Some(version)) => {
                check_azure_version(&format!("{at}.api_version"), version)?;
                if self.auth != UpstreamAuth::Bearer || self.responses {
                    return Err(ConfigError::new(
                        format!("{at}.{}", if self.responses { "responses" } else { "auth" }),
                        "an azure upstream takes its key as api-key and serves chat, \
                         completions and embeddings; leave this unset",
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    format!("{at}.api_version"),
                    "only applies to kind = \"azure\"",
                ));
            }
            (_, None) => {}
        }
        match self.kind {
            UpstreamKind::Azure => {}
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
        if self.max_concurrency == Some(0) {
            return Err(ConfigError::new(
                format!("{at}.max_concurrency"),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        if self.rpm == Some(0) {
            return Err(ConfigError::new(
                format!("{at}.rpm"),
                "must be at least 1 (leave it out for no limit)",
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

/// A provider's model name as a catalogue holds it: 1 to 256 visible
/// characters, no whitespace (it goes into `/v1/models` and, for Azure, a
/// URL path, where it is escaped).
pub fn check_model_name(field: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "`{}` must be 1 to 256 characters without spaces or control characters",
                value.escape_debug()
            ),
        ))
    }
}

/// An Azure OpenAI `api-version`: a date, optionally `-preview`.
fn check_azure_version(field: &str, value: &str) -> Result<(), ConfigError> {
    let date = value.strip_suffix("-preview").unwrap_or(value);
    check_anthropic_version(field, date).map_err(|_| {
        ConfigError::new(
            field,
            format!(
                "`{}` is not an api-version like 2024-10-21 or 2025-04-01-preview",
                value.escape_debug()
            ),
        )
    })
}

/// Checks that every prefix addressing an upstream (its id, its aliases)
/// names one upstream only: `{prefix}/{model}` must have one meaning.
pub fn check_prefixes<'a>(
    upstreams: impl Iterator<Item = &'a UpstreamConfig>,
    at: &str,
) -> Result<(), ConfigError> {
    let upstreams: Vec<&UpstreamConfig> = upstreams.collect();
    let mut owner: BTreeMap<&str, &str> = upstreams
        .iter()
        .map(|u| (u.id.as_str(), u.id.as_str()))
        .collect();
    for u in &upstreams {
        for (i, alias) in u.aliases.iter().enumerate() {
            if let Some(other) = owner.insert(alias, &u.id) {
                return Err(ConfigError::new(
                    format!("{at}.{}.aliases[{i}]", u.id),
                    format!("`{alias}` already addresses upstream `{other}`"),
                ));
            }
        }
    }
    Ok(())
}
