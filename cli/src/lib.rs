//! The operator commands of the `meridian` binary that talk to a running
//! node's admin API, or prepare files for one, and `meridian demo`.
//!
//! A crate of its own, apart from the server library (`meridian`): it speaks
//! to nodes only over their admin and data-plane APIs, so it imports nothing
//! of the server, and the server does not carry the demo's dependencies
//! (`tempfile`). The `meridian` binary (node/src/main.rs) ships both.

pub mod admin_client;
pub mod certs;
pub mod config_cmds;
pub mod demo;
pub mod members;
pub mod models;
pub mod status;
pub mod table;
pub mod tenants;

use admin_client::{AdminError, EXIT_INPUT};

/// Why an operator command failed: the admin API's answer, or input the
/// command could not use before sending anything.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The node could not be reached, refused the token or the change.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The body, file or flag given to the command is unusable.
    #[error("{0}")]
    Input(String),
}

impl CliError {
    /// The exit status for this error (see [`AdminError::exit_code`]; bad
    /// local input is 64, like a refused field).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Admin(e) => e.exit_code(),
            Self::Input(_) => EXIT_INPUT,
        }
    }
}

/// What a command prints on success: the JSON the node answered (for
/// `--output json`) and the same for a person to read.
pub struct Printed {
    /// Printed with `--output json`.
    pub json: serde_json::Value,
    /// Printed otherwise.
    pub text: String,
}
