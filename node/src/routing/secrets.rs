//! Where keys come from and whether this node may read them: client keys
//! and the response-id secret from the environment ([`resolve_keys`],
//! [`response_seal`]), provider keys from a variable or
//! a file as the node's own `[secrets]` allows ([`LocalTrust`]), checked
//! before an admin write is proposed ([`check_upstream`]) and again when a
//! node applies it. A reason names the variable or the file, never the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use proto::FieldError;
use proto::config::{
    Config, ConfigError, FileAccess, SecretOrigin, SecretPolicy, UpstreamAuth, UpstreamConfig,
    UpstreamKind, check_secret_strength,
};

use super::BuildError;
use crate::auth::{KeyHash, hash_key};
use crate::responses::Seal;
use crate::upstream;

/// Where secrets come from; the process environment in production, a map in tests.
pub trait Secrets {
    /// The value of an environment variable, if set and not empty.
    fn env(&self, name: &str) -> Option<String>;
}

/// Reads secrets from the process environment.
pub struct ProcessEnv;

impl Secrets for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// What a node's own file decides, whatever the replicated state says:
/// which provider-key references it reads, and whether it lets in clients
/// without a key while no key exists (only a node started without keys on
/// a loopback data plane).
#[derive(Debug, Clone, Default)]
pub struct LocalTrust {
    /// The provider-key references this node reads.
    pub policy: SecretPolicy,
    /// With no client key at all, accept every request (else refuse every one).
    pub open_without_keys: bool,
}

impl LocalTrust {
    /// The trust of a node's own configuration file.
    pub fn new(config: &Config) -> Self {
        Self {
            policy: SecretPolicy::new(config),
            open_without_keys: config.keys.is_empty() && config.listen.api.ip().is_loopback(),
        }
    }
}

/// Hashes the client keys a configuration names, from the environment. A
/// key whose variable is unset is an error: a node must not start accepting
/// fewer clients than its operator configured.
pub fn resolve_keys(
    config: &Config,
    secrets: &dyn Secrets,
) -> Result<Vec<(String, KeyHash)>, BuildError> {
    config
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let field = format!("keys[{i}].key_env");
            let value = secrets.env(&key.key_env).ok_or_else(|| {
                FieldError::new(
                    &field,
                    format!("environment variable {} is not set", key.key_env),
                )
            })?;
            check_secret_strength(&field, &key.key_env, &value)?;
            Ok((key.name.clone(), hash_key(&value)))
        })
        .collect()
}

/// The seal that binds stored responses' ids to keys, from
/// `[responses] secret_env` (and `previous_secret_env` while rotating);
/// `None` when the file names no variable. A named variable that is unset
/// or weak is an error, as for a client key: a node must not start handing
/// out ids that bind nobody, or refusing the ids of the last secret.
pub fn response_seal(
    config: &Config,
    secrets: &dyn Secrets,
) -> Result<Option<Arc<Seal>>, BuildError> {
    let Some(var) = &config.responses.secret_env else {
        return Ok(None);
    };
    let secret = |field: &str, var: &str| -> Result<String, FieldError> {
        let value = secrets.env(var).ok_or_else(|| {
            FieldError::new(field, format!("environment variable {var} is not set"))
        })?;
        check_secret_strength(field, var, &value)?;
        Ok(value.trim().to_owned())
    };
    let mut seal = Seal::new(secret("responses.secret_env", var)?.as_bytes());
    if let Some(previous) = &config.responses.previous_secret_env {
        let value = secret("responses.previous_secret_env", previous)?;
        seal = seal.with_previous(value.as_bytes());
    }
    Ok(Some(Arc::new(seal)))
}

/// The largest key file read, so a reference to a huge file (or a device)
/// cannot stall or exhaust the node.
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;
/// The provider key header of an upstream, read as `origin` allows on this
/// node: `Ok(None)` for a keyless upstream, else the field at fault and why.
pub(super) fn provider_key(
    uc: &UpstreamConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
    origin: SecretOrigin,
) -> Result<Option<(HeaderName, HeaderValue)>, (&'static str, String)> {
    let (field, key) = match (&uc.api_key_env, &uc.api_key_file) {
        (Some(var), _) => {
            policy
                .check_env("upstream", var, origin)
                .map_err(|e| ("api_key_env", e.message))?;
            let key = secrets.env(var).ok_or_else(|| {
                (
                    "api_key_env",
                    format!("environment variable {var} is not set"),
                )
            })?;
            ("api_key_env", key)
        }
        (None, Some(path)) => {
            let access = policy
                .check_file("upstream", path, origin)
                .map_err(|e| ("api_key_file", e.message))?;
            let key = read_key_file(path, &access, policy).map_err(|r| ("api_key_file", r))?;
            ("api_key_file", key)
        }
        (None, None) => return Ok(None),
    };
    let key = key.trim();
    let (name, value) = match (uc.kind, uc.auth) {
        (UpstreamKind::Anthropic, _) => (HeaderName::from_static("x-api-key"), key.to_owned()),
        (UpstreamKind::Openai, UpstreamAuth::Bearer) => {
            (http::header::AUTHORIZATION, format!("Bearer {key}"))
        }
        (UpstreamKind::Azure, _) | (UpstreamKind::Openai, UpstreamAuth::ApiKey) => {
            (HeaderName::from_static("api-key"), key.to_owned())
        }
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        (
            field,
            "the key holds characters not allowed in a header (a line break or a control \
             character?)"
                .to_owned(),
        )
    })?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

/// Reads an allowed key file: below the secrets directory once symlinks
/// are resolved (unless the node's own file names it), a regular file of at
/// most 64 KiB, not empty. The reason never holds the file's content.
fn read_key_file(
    path: &Path,
    access: &FileAccess,
    policy: &SecretPolicy,
) -> Result<String, String> {
    let shown = path.display();
    let target = match access {
        FileAccess::Named => path.to_path_buf(),
        FileAccess::BelowDir(dir) => resolved_below(path, dir, policy)?,
    };
    let file = std::fs::File::open(&target).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!("{shown} is larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    let mut key = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_KEY_FILE_BYTES), &mut key)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if key.trim().is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(key)
}

/// Checks an upstream written through the admin API before it is proposed,
/// as far as this node can: its key reference is one the node's
/// `[secrets]` allows (never its own secrets), a key file is readable and
/// a valid header value, a key variable that is set here holds a valid
/// header value, and a CA file holds a PEM certificate. Other nodes check
/// again when they apply it, and disable it there if they cannot use it.
pub fn check_upstream(
    uc: &UpstreamConfig,
    secrets: &dyn Secrets,
    policy: &SecretPolicy,
) -> Result<(), ConfigError> {
    let error =
        |field: &str, message: String| ConfigError::new(format!("upstream.{field}"), message);
    if let Some(var) = &uc.api_key_env {
        policy.check_env("upstream", var, SecretOrigin::AdminApi)?;
    }
    // A variable may be set on other nodes only (each region its own key).
    let unset_here = uc
        .api_key_env
        .as_deref()
        .is_some_and(|var| secrets.env(var).is_none());
    if !unset_here {
        provider_key(uc, secrets, policy, SecretOrigin::AdminApi)
            .map_err(|(field, reason)| error(field, reason))?;
    }
    if let Some(path) = &uc.ca_file {
        ca_file_allowed(path, policy).map_err(|reason| error("ca_file", reason))?;
        upstream::load_ca(path).map_err(|e| error(e.field(), e.to_string()))?;
    }
    Ok(())
}

/// Whether this node may open an upstream's `ca_file`: one its own file
/// names, or one below its `[secrets] dir` that resolves there too. The
/// admin API checks it before proposing, and every node again when it
/// applies the upstream: the replicated state holds what another node's
/// file allowed, or what a member proposed without any admin API.
pub(super) fn ca_file_allowed(path: &Path, policy: &SecretPolicy) -> Result<(), String> {
    let access = policy
        .check_ca_file("upstream", path)
        .map_err(|e| e.message)?;
    if let FileAccess::BelowDir(dir) = access {
        resolved_below(path, &dir, policy)?;
    }
    Ok(())
}

/// That `path`, with every symlink resolved, is still below the resolved
/// `dir` and is none of the node's TLS files. The reason never holds the
/// file's content.
fn resolved_below(path: &Path, dir: &Path, policy: &SecretPolicy) -> Result<PathBuf, String> {
    let shown = path.display();
    let dir = std::fs::canonicalize(dir).map_err(|e| {
        format!(
            "this node's [secrets] dir {} cannot be used: {e}",
            dir.display()
        )
    })?;
    let file = std::fs::canonicalize(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let tls: Vec<PathBuf> = policy
        .tls_files()
        .filter_map(|t| std::fs::canonicalize(t).ok())
        .collect();
    if !policy.resolved_inside(&file, &dir, &tls) {
        return Err(format!(
            "{shown} resolves (through a link) outside this node's [secrets] dir"
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::super::fixtures::build;
    use super::*;

    #[tokio::test]
    async fn missing_client_key_is_an_error_naming_the_field() {
        let Err(BuildError::Invalid(FieldError { field, .. })) = build(&[("A_KEY", "ka")]) else {
            panic!("expected an error");
        };
        assert_eq!(field, "keys[0].key_env");
    }

    #[tokio::test]
    async fn short_client_keys_are_refused_at_start() {
        let Err(BuildError::Invalid(FieldError { field, message })) =
            build(&[("CLIENT_KEY", "k"), ("A_KEY", "ka"), ("B_KEY", "kb")])
        else {
            panic!("expected an error");
        };
        assert_eq!(field, "keys[0].key_env");
        assert!(
            message.contains("CLIENT_KEY") && message.contains("16"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn the_client_door_is_open_only_without_keys_on_loopback() {
        let bare = |api: &str| {
            let config = Config::from_toml(&format!(
                "[node]\nid = 1\nregion = \"r\"\n[listen]\napi = \"{api}\"\n"
            ));
            config.map(|c| LocalTrust::new(&c).open_without_keys)
        };
        assert_eq!(bare("127.0.0.1:8080"), Ok(true));
        assert_eq!(bare("[::1]:8080"), Ok(true));
        assert!(bare("0.0.0.0:8080").is_err(), "refused at start");
        let with_key = Config::from_toml(
            "[node]\nid = 1\nregion = \"r\"\n[[keys]]\nname = \"a\"\nkey_env = \"K\"\n",
        )
        .unwrap();
        assert!(!LocalTrust::new(&with_key).open_without_keys);
    }
}
