//! Mutual TLS for Raft traffic: both ends present a certificate signed by the
//! cluster CA and trust nothing else. A peer without such a certificate fails
//! the handshake, before it can send a single RPC, and so does one whose
//! certificate names no node id (`meridian:node:<id>`, see
//! [`crate::certs::node_id`]): each end then knows which node the other is
//! ([`peer_id`]), and the transport holds it to that.
//!
//! Nothing global is installed: the ring provider is handed to each config
//! explicitly, so the data plane's own TLS setup is unaffected.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::certs::{IdentityError, node_id};
use crate::types::NodeId;

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

    /// The key of this node's QUIC stateless resets, derived from its
    /// private key so that it survives a restart. A peer still holding a
    /// connection to the process that died sends its next packet to the
    /// new one, which cannot decrypt it and answers with a stateless reset;
    /// only a reset made with the old process's key is believed, so with a
    /// random key per process (quinn's default) the peer would wait out its
    /// idle timeout instead of redialling at once. Only this node can make
    /// the key: it needs the private key.
    pub fn reset_key(&self) -> ring::hmac::Key {
        let mut material = b"meridian/quic-stateless-reset/v1".to_vec();
        material.extend_from_slice(self.key.secret_der());
        let digest = ring::digest::digest(&ring::digest::SHA256, &material);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref())
    }

    /// The server side: presents this node's certificate and requires a
    /// client certificate that chains to the cluster CA and names a node id.
    pub fn server_config(&self) -> Result<QuicServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(config)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_client_cert_verifier(Arc::new(NamedClient(verifier)))
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        QuicServerConfig::try_from(tls).map_err(config)
    }

    /// The client side: trusts only the cluster CA, requires the server's
    /// certificate to name a node id (which one is the dialler's to check,
    /// see [`peer_id`]), and presents this node's certificate.
    pub fn client_config(&self) -> Result<QuicClientConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(config)?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NamedServer(verifier)))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        QuicClientConfig::try_from(tls).map_err(config)
    }
}

/// The common name of the certificate a connected peer presented, for logs.
pub fn peer_name(connection: &quinn::Connection) -> Option<String> {
    crate::certs::common_name(peer_certificate(connection)?.as_ref())
}

/// The node id the certificate of a connected peer names. The handshake
/// has already refused a certificate without one, so `None` means the
/// connection carries no certificate at all.
pub fn peer_id(connection: &quinn::Connection) -> Option<NodeId> {
    node_id(peer_certificate(connection)?.as_ref()).ok()
}

fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().cloned()
}

/// Refuses, at the handshake, a certificate that names no node id.
fn require_node_id(end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    node_id(end_entity.as_ref())
        .map(|_| ())
        .map_err(|e: IdentityError| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })
}

/// The cluster CA's client verifier, plus: the certificate names a node id.
#[derive(Debug)]
struct NamedClient(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for NamedClient {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        require_node_id(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The cluster CA's server verifier (chain and address), plus: the
/// certificate names a node id.
#[derive(Debug)]
struct NamedServer(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        require_node_id(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
