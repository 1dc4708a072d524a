//! `[responses]`: how the Responses API's stored responses are bound to the
//! key that made them.
//!
//! A stored response lives at the provider, under the provider key that
//! Meridian holds for every team; the id a client is handed is all that
//! says whose it is. With `secret_env` set (the same secret on every node
//! of the cluster), each id carries a MAC of the key's name, so one key
//! cannot read, continue, cancel or delete another key's response.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::check_env_name;

/// Where the secret that binds response ids to keys comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesConfig {
    /// The environment variable holding the cluster's response-id secret
    /// (at least 32 characters, the same on every node). None: ids are not
    /// bound, and any key that knows an id may use it.
    pub secret_env: Option<String>,
    /// The environment variable holding the secret before the current one,
    /// while the cluster rotates: ids made with it are still taken, new
    /// ones are made with `secret_env`. Needs `secret_env`.
    pub previous_secret_env: Option<String>,
}

impl ResponsesConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.secret_env {
            check_env_name("responses.secret_env", name)?;
        }
        if let Some(name) = &self.previous_secret_env {
            const FIELD: &str = "responses.previous_secret_env";
            check_env_name(FIELD, name)?;
            match &self.secret_env {
                None => {
                    return Err(ConfigError::new(
                        FIELD,
                        "needs responses.secret_env: the previous secret only checks ids, \
                         the current one makes them",
                    ));
                }
                Some(current) if current == name => {
                    return Err(ConfigError::new(
                        FIELD,
                        "names the same variable as responses.secret_env",
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
