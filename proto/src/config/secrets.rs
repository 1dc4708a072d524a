//! What the admin API may point an upstream's key at on this node, and how
//! long the node's own secrets must be.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::validate::{check_env_name, has_parent_step};
use super::{Config, ConfigError};

/// The fewest characters an admin token or a client key may have. Only an
/// unsalted SHA-256 of each is kept (client key hashes travel in the Raft
/// log and its snapshots), so a short one falls to guessing or to a brute
/// force of a leaked hash. A length says nothing of randomness, but 16
/// characters stops `test`, `admin` and one-letter tokens while every usual
/// generator passes (`openssl rand -hex 16` gives 32, provider-style
/// `sk-…` keys 40 and more).
pub const MIN_SECRET_CHARS: usize = 16;

/// Refuses an admin token or client key shorter than [`MIN_SECRET_CHARS`]
/// (surrounding whitespace not counted); `field` names where it comes from
/// and `var` the variable that holds it. The value itself is never quoted.
pub fn check_secret_strength(field: &str, var: &str, value: &str) -> Result<(), ConfigError> {
    let chars = value.trim().chars().count();
    if chars < MIN_SECRET_CHARS {
        return Err(ConfigError::new(
            field,
            format!(
                "{var} holds {chars} characters; it needs at least {MIN_SECRET_CHARS} \
                 (for example `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(())
}

/// This node's `[secrets]`: the provider-key references an upstream written
/// through the admin API may use here. The node's own file may name any
/// variable or file in its `[[upstreams]]` (and those stay allowed); the
/// admin API only what this section allows, and never the variable of the
/// admin token or of a client key, so an admin token is not a way to read
/// a node's environment or files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Environment variables allowed as `api_key_env`, by exact name.
    #[serde(default)]
    pub env: Vec<String>,
    /// Variables whose name starts with this are allowed too, e.g. `MERIDIAN_UPSTREAM_`.
    #[serde(default)]
    pub env_prefix: Option<String>,
    /// An `api_key_file` must be a file below this directory (absolute).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

impl SecretsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, var) in self.env.iter().enumerate() {
            check_env_name(&format!("secrets.env[{i}]"), var)?;
        }
        if let Some(prefix) = &self.env_prefix {
            // A prefix must name a family, not every variable of the node.
            if prefix.len() < 3 {
                return Err(ConfigError::new(
                    "secrets.env_prefix",
                    "must be at least 3 characters, e.g. MERIDIAN_UPSTREAM_",
                ));
            }
            check_env_name("secrets.env_prefix", prefix)?;
        }
        if let Some(dir) = &self.dir
            && (!dir.is_absolute() || has_parent_step(dir) || dir.parent().is_none())
        {
            return Err(ConfigError::new(
                "secrets.dir",
                "must be an absolute directory other than / and without `..`",
            ));
        }
        Ok(())
    }
}

/// Where a provider-key reference comes from, which decides what it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// Written through this node's admin API: only what `[secrets]` (or the
    /// node's own `[[upstreams]]`) allows, never the node's own secrets.
    AdminApi,
    /// Arrived in the replicated state (from any node, or a seed): read only
    /// what this node's file allows or names itself.
    Applied,
}

/// How a node may read an allowed `api_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// The node's own file names this path: read it as it is.
    Named,
    /// Allowed below `[secrets] dir`, provided the file, once symlinks are
    /// resolved, still is below the resolved directory
    /// ([`SecretPolicy::resolved_inside`]).
    BelowDir(PathBuf),
}

/// The provider-key references this node accepts, built once from its own
/// file. Pure: the caller resolves paths (symlinks) on the filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretPolicy {
    secrets: SecretsConfig,
    /// Variables of the node's own secrets: the admin token's, the client
    /// keys' and the response-id secret's.
    forbidden_env: BTreeSet<String>,
    /// Files of the node's own identity: its TLS CA, certificate and key.
    forbidden_files: BTreeSet<PathBuf>,
    /// Variables the file's own `[[upstreams]]` name.
    named_env: BTreeSet<String>,
    /// Files the file's own `[[upstreams]]` name.
    named_files: BTreeSet<PathBuf>,
    /// CA files the file's own `[[upstreams]]` name.
    named_ca_files: BTreeSet<PathBuf>,
}

/// The variable that holds the admin token when the file names none
/// (`meridian` CLI's default too), never readable as a provider key.
const DEFAULT_ADMIN_TOKEN_ENV: &str = "MERIDIAN_ADMIN_TOKEN";

impl SecretPolicy {
    /// The policy of a node's own configuration file.
    pub fn new(config: &Config) -> Self {
        let mut forbidden_env: BTreeSet<String> =
            config.keys.iter().map(|k| k.key_env.clone()).collect();
        forbidden_env.insert(config.admin.token_env.clone());
        forbidden_env.insert(DEFAULT_ADMIN_TOKEN_ENV.to_owned());
        forbidden_env.extend(config.responses.secret_env.clone());
        forbidden_env.extend(config.responses.previous_secret_env.clone());
        let forbidden_files = config
            .tls
            .iter()
            .flat_map(|t| [t.ca.clone(), t.cert.clone(), t.key.clone()])
            .collect();
        Self {
            secrets: config.secrets.clone(),
            forbidden_env,
            forbidden_files,
            named_env: config
                .upstreams
                .iter()
                .filter_map(|u| u.api_key_env.clone())
                .collect(),
            named_files: config
                .upstreams
                .iter()
                .filter_map(|u| u.api_key_file.clone())
                .collect(),
            named_ca_files: config
                .upstreams
                .iter()
                .filter_map(|u| u.ca_file.clone())
                .collect(),
        }
    }

    /// Whether an upstream's `api_key_env` may be read here; the error
    /// names `{at}.api_key_env`.
    pub fn check_env(&self, at: &str, var: &str, origin: SecretOrigin) -> Result<(), ConfigError> {
        let field = format!("{at}.api_key_env");
        let forbidden = self.forbidden_env.contains(var);
        let named = self.named_env.contains(var);
        if named && origin == SecretOrigin::Applied {
            return Ok(());
        }
        if forbidden {
            return Err(ConfigError::new(
                field,
                format!(
                    "{var} holds this node's admin token, a client key or the response-id secret, \
                     never a provider key"
                ),
            ));
        }
        let listed = self.secrets.env.iter().any(|e| e == var)
            || self
                .secrets
                .env_prefix
                .as_deref()
                .is_some_and(|p| var.starts_with(p));
        if named || listed {
            Ok(())
        } else {
            Err(ConfigError::new(
                field,
                format!(
                    "{var} is not allowed on this node: its [secrets] env or env_prefix must \
                     allow it"
                ),
            ))
        }
    }

    /// Whether an upstream's `api_key_file` may be read here, and how; the
    /// error names `{at}.api_key_file`. Checks the path as written: a
    /// [`FileAccess::BelowDir`] still needs [`SecretPolicy::resolved_inside`]
    /// once the caller has resolved symlinks.
    pub fn check_file(
        &self,
        at: &str,
        path: &Path,
        origin: SecretOrigin,
    ) -> Result<FileAccess, ConfigError> {
        let field = format!("{at}.api_key_file");
        if self.named_files.contains(path) && origin == SecretOrigin::Applied {
            return Ok(FileAccess::Named);
        }
        if self.forbidden_files.contains(path) {
            return Err(ConfigError::new(
                field,
                "is this node's own TLS identity, never a provider key",
            ));
        }
        if self.named_files.contains(path) {
            return Ok(FileAccess::Named);
        }
        self.below_dir(field, path)
    }

    /// Whether an upstream's `ca_file`, written through the admin API, may
    /// be read here: one the node's own file names, or one below its
    /// `[secrets] dir`, as a key file. Without this the admin API could
    /// have the node open any path, and its errors tell whether the file
    /// exists and what it holds. The error names `{at}.ca_file`.
    pub fn check_ca_file(&self, at: &str, path: &Path) -> Result<FileAccess, ConfigError> {
        let field = format!("{at}.ca_file");
        if self.named_ca_files.contains(path) {
            return Ok(FileAccess::Named);
        }
        if self.forbidden_files.contains(path) {
            return Err(ConfigError::new(field, "is this node's own TLS identity"));
        }
        self.below_dir(field, path)
    }

    /// A file allowed below `[secrets] dir`, as written (the caller then
    /// resolves symlinks: [`SecretPolicy::resolved_inside`]).
    fn below_dir(&self, field: String, path: &Path) -> Result<FileAccess, ConfigError> {
        let Some(dir) = &self.secrets.dir else {
            return Err(ConfigError::new(
                field,
                "is not allowed on this node: it has no [secrets] dir for the files an upstream names",
            ));
        };
        if !path.is_absolute() || has_parent_step(path) || !path.starts_with(dir) || path == dir {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be an absolute path below this node's [secrets] dir ({}), without `..`",
                    dir.display()
                ),
            ));
        }
        Ok(FileAccess::BelowDir(dir.clone()))
    }

    /// Whether a file, with every symlink resolved, is still below the
    /// resolved secrets directory and is not one of the node's TLS files
    /// (compared resolved too, so a link to them is refused).
    pub fn resolved_inside(&self, file: &Path, dir: &Path, resolved_tls: &[PathBuf]) -> bool {
        file.starts_with(dir) && file != dir && !resolved_tls.iter().any(|t| t == file)
    }

    /// The node's TLS files, to resolve and pass to [`SecretPolicy::resolved_inside`].
    pub fn tls_files(&self) -> impl Iterator<Item = &Path> {
        self.forbidden_files.iter().map(PathBuf::as_path)
    }
}
