//! What can go wrong while starting or driving a local cluster.

use std::path::PathBuf;

/// A harness failure, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A binary the harness needs is not where it was told to look.
    #[error(
        "{} not found: build the binaries with `cargo build --workspace --bins` (scripts/test does), or point the harness at their directory",
        .0.display()
    )]
    MissingBinary(PathBuf),
    /// Certificates could not be made.
    #[error("certificates: {0}")]
    Certs(#[from] raft::certs::CertError),
    /// A private CA or a certificate it signs could not be made.
    #[error("test certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A node config could not be serialized.
    #[error("node config: {0}")]
    Config(#[from] toml::ser::Error),
    /// A process did not print its ready or address line in time.
    #[error("{name} did not get ready: {detail}; end of its log:\n{log}")]
    NotReady {
        /// Which process.
        name: String,
        /// What was seen instead.
        detail: String,
        /// The last lines of its log.
        log: String,
    },
    /// A process is not in the state the call needs (not running, already running).
    #[error("{0}")]
    State(String),
    /// An HTTP exchange failed or timed out.
    #[error("{0}")]
    Http(String),
}

impl HarnessError {
    /// An [`HarnessError::Io`] saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
