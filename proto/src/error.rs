//! The one shape every Meridian error about a value takes: the field at
//! fault, named as the operator wrote it, and what is wrong with it.
//!
//! A node's configuration file, a routing table built on a node, a command
//! the replicated state refuses, a node that cannot start and a chaos case
//! file all report a bad value this way, so the CLI, the admin API and the
//! logs print it the same way (`field: message`) and a test can ask which
//! field was named without parsing text.

use serde::{Deserialize, Serialize};

/// A value that cannot be used, with the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the offending field, as written in the TOML file or the
    /// API body, e.g. `routes[1].tiers[0][0].upstream`.
    pub field: String,
    /// What is wrong with it, in words an operator can act on.
    pub message: String,
}

impl FieldError {
    /// An error naming `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn prints_field_then_message() {
        let e = FieldError::new("cluster.members[1]", "expected `id@host:port`");
        assert_eq!(e.to_string(), "cluster.members[1]: expected `id@host:port`");
    }
}
