//! Mutual TLS for Raft traffic: both ends present a certificate signed by the
//! cluster CA and trust nothing else. A peer without such a certificate fails
//! the handshake, before it can send a single RPC.
//!
//! Nothing global is installed: the ring provider is handed to each config
//! explicitly, so the data plane's own TLS setup is unaffected.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The ALPN protocol both ends must offer; a later incompatible wire format
/// gets a new one, so mismatched nodes fail the handshake plainly.
pub const ALPN: &[u8] = b"meridian-raft/1";

/// Where a node's TLS material lives (the `[tls]` section of its config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The cluster CA certificate, PEM.
    pub ca: PathBuf,
    /// This node's certificate (chain), PEM, signed by the cluster CA.
    pub cert: PathBuf,
    /// This node's private key, PEM.
    pub key: PathBuf,
}

/// Why the TLS material could not be loaded or assembled.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls or quinn refused the assembled configuration (a key that does
    /// not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A node's loaded TLS material, from which both sides' configs are built.
#[derive(Debug)]
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads the CA, certificate and key named by `paths`; errors name the
    /// offending file.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in certificates(&paths.ca)? {
            roots.add(ca).map_err(|e| invalid(&paths.ca, e))?;
        }
        let chain = certificates(&paths.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&paths.key)?)
            .map_err(|e| invalid(&paths.key, format!("no private key: {e}")))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The server side: presents this node's certificate and requires a
    /// client certificate that chains to the cluster CA.
    pub fn server_config(&self) -> Result<QuicServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(config)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        QuicServerConfig::try_from(tls).map_err(config)
    }

    /// The client side: trusts only the cluster CA and presents this node's
    /// certificate.
    pub fn client_config(&self) -> Result<QuicClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        QuicClientConfig::try_from(tls).map_err(config)
    }
}

/// The common name of the certificate a connected peer presented, for logs.
pub fn peer_name(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    crate::certs::common_name(chain.first()?)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if chain.is_empty() {
        return Err(invalid(path, "no PEM certificate in the file"));
    }
    Ok(chain)
}

fn invalid(path: &Path, message: impl ToString) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn config(e: impl ToString) -> TlsError {
    TlsError::Config(e.to_string())
}
