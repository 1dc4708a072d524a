//! TLS for the data listener, so Meridian's `https://` upstream path (rustls,
//! a private CA, HTTP/2 by ALPN) can be tested against the mock like a real
//! provider. The control plane never uses it: tests drive it with a plain
//! client whatever the data plane speaks.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered, preferred first; the connection then serves
/// whichever the client picked.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0}: no PEM private key in it")]
    NoKey(PathBuf),
    /// rustls refused the certificate chain or key (e.g. they do not match).
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server configuration from a PEM certificate chain (leaf first) and its
/// PEM private key, with the ring provider and ALPN `h2`, `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::File { path, source }
    };
    let cert_pem = std::fs::read(cert).map_err(file_error(cert))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert)(io::Error::other(e)))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key_pem = std::fs::read(key).map_err(file_error(key))?;
    let private_key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(private_key) => private_key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey(key.to_owned())),
        Err(e) => return Err(file_error(key)(io::Error::other(e))),
    };

    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
