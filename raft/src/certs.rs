//! The cluster's certificates: one CA, and per node a certificate it presents
//! both as a server (to peers dialling it) and as a client (when it dials
//! them). Peers accept each other only when the certificate chains to the
//! cluster CA, so whoever holds `ca.key` decides who may join.
//!
//! A node certificate names its node: its Raft id as a URI subject
//! alternative name `meridian:node:<id>` ([`node_id`] reads it), and a common
//! name for logs. The transport holds every peer to that id: a certificate
//! is not a key to the whole cluster but the identity of one member.
//!
//! Keys are ECDSA P-256. Certificates are valid from yesterday (a little
//! slack for clock skew between nodes) for ten years; rotation is issuing new
//! node certificates from the same CA and restarting nodes one at a time.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

use crate::types::NodeId;

/// The prefix of the URI subject alternative name that carries a node
/// certificate's node id: `meridian:node:4` is node 4.
pub const NODE_URI_PREFIX: &str = "meridian:node:";

/// How many years certificates made here stay valid.
const VALID_YEARS: i32 = 10;

/// A cluster CA: the certificate every node trusts and the key that signs
/// node certificates. The key belongs on the operator's machine, not on nodes.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// What a node certificate is issued for: the name its files and logs use,
/// the Raft id it proves, and the addresses peers dial it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    /// The node's name: the certificate's common name and its files'
    /// names (`NAME.pem`, `NAME.key`).
    pub name: String,
    /// The node's Raft id, written as the `meridian:node:<id>` URI SAN.
    pub id: NodeId,
    /// IP addresses and DNS names peers dial the node at.
    pub sans: Vec<String>,
}

/// One node's identity, signed by the cluster CA.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// The node's private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters (an invalid DNS name among the SANs, say).
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The CA given to sign with is unusable.
    #[error("unusable CA: {0}")]
    BadCa(String),
    /// A node name that cannot name its files.
    #[error(
        "invalid node name `{0}`: use letters, digits, `.`, `_` and `-`, not starting with `.`"
    )]
    BadName(String),
    /// A node given without a Raft id, or with one that is not a number.
    #[error(
        "node `{0}` has no node id: name it `n<ID>` (n4 is node 4) or give the id as `NAME=ID`"
    )]
    NoId(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Creates a self-signed cluster CA named `common_name`.
pub fn generate_ca(common_name: &str) -> Result<CaFiles, CertError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(common_name).self_signed(&key)?;
    Ok(CaFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `node` signed by `ca`: common name
/// `node.name`, the URI SAN `meridian:node:<node.id>`, and the node's
/// addresses (IP addresses and DNS names, as peers dial it). The certificate
/// is usable as TLS server and client. `ca` must be a CA made by
/// [`generate_ca`] (its subject is its common name alone).
pub fn generate_node(ca: &CaFiles, node: &NodeCert) -> Result<NodeFiles, CertError> {
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|e| CertError::BadCa(format!("certificate: {e}")))?;
    let ca_key =
        KeyPair::from_pem(&ca.key_pem).map_err(|e| CertError::BadCa(format!("key: {e}")))?;
    let spki = ca_key.subject_public_key_info();
    if !ca_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
        return Err(CertError::BadCa(
            "the key does not belong to the certificate".into(),
        ));
    }
    let ca_name = common_name(&ca_der)
        .ok_or_else(|| CertError::BadCa("the certificate has no common name".into()))?;
    // The issuer is the CA's name and key (what rcgen takes from it), so
    // rebuilding it from the same name and key yields the same issuer and
    // authority key identifier.
    let issuer = Issuer::new(ca_params(&ca_name), &ca_key);

    let mut params = CertificateParams::new(node.sans.clone())?;
    let uri = Ia5String::try_from(format!("{NODE_URI_PREFIX}{}", node.id))?;
    params.subject_alt_names.push(SanType::URI(uri));
    params.distinguished_name = name(&node.name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(NodeFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a cluster's certificates into `dir` (created if missing):
/// `ca.pem`, `ca.key`, and per node `NAME.pem` and `NAME.key`, keys readable
/// by the owner only. An existing `ca.pem` and `ca.key` in `dir` are reused,
/// so running it again adds nodes to the same cluster; node files are
/// replaced. Returns the files written.
pub fn write_cluster(dir: &Path, nodes: &[NodeCert]) -> Result<Vec<PathBuf>, CertError> {
    for node in nodes {
        check_name(&node.name)?;
    }
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let mut written = Vec::new();
    let ca = if ca_cert.exists() && ca_key.exists() {
        CaFiles {
            cert_pem: read(&ca_cert)?,
            key_pem: read(&ca_key)?,
        }
    } else {
        // A name of its own, so that a certificate from another cluster is
        // reported as of an unknown issuer rather than a bad signature.
        let tag: u32 = rand::random();
        let ca = generate_ca(&format!("Meridian cluster CA {tag:08x}"))?;
        write(&ca_cert, &ca.cert_pem, false)?;
        write(&ca_key, &ca.key_pem, true)?;
        written.extend([ca_cert, ca_key]);
        ca
    };
    for node in nodes {
        let files = generate_node(&ca, node)?;
        let cert = dir.join(format!("{}.pem", node.name));
        let key = dir.join(format!("{}.key", node.name));
        write(&cert, &files.cert_pem, false)?;
        write(&key, &files.key_pem, true)?;
        written.extend([cert, key]);
    }
    Ok(written)
}

/// A node given on the command line: `NAME=ID` names the id explicitly,
/// and `n<ID>` (the usual `n1`, `n2`, …) carries it in the name. Returns
/// the name and the id; anything else is [`CertError::NoId`].
pub fn parse_node(spec: &str) -> Result<(String, NodeId), CertError> {
    if let Some((name, id)) = spec.split_once('=') {
        let id = parse_id(id).ok_or_else(|| CertError::NoId(spec.to_string()))?;
        return Ok((name.to_string(), id));
    }
    spec.strip_prefix('n')
        .and_then(parse_id)
        .map(|id| (spec.to_string(), id))
        .ok_or_else(|| CertError::NoId(spec.to_string()))
}

/// A node id in plain decimal digits (no sign, no spaces).
fn parse_id(text: &str) -> Option<NodeId> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Why a certificate does not identify a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not an X.509 certificate.
    #[error("not a parseable X.509 certificate")]
    Unparseable,
    /// No `meridian:node:<id>` URI SAN: a certificate made before node
    /// certificates named their node, or by another tool.
    #[error(
        "the certificate names no node id (no `{NODE_URI_PREFIX}<id>` subject alternative name); re-issue it with `meridian certs`"
    )]
    NoId,
    /// A `meridian:node:` URI SAN whose id is not a number.
    #[error("the certificate's node id `{0}` is not a number")]
    BadId(String),
    /// More than one node id: which node it is cannot be told.
    #[error("the certificate names several node ids ({0} and {1})")]
    Ambiguous(NodeId, NodeId),
}

/// The node id a node certificate (DER) was issued for, from its
/// `meridian:node:<id>` URI subject alternative name. Exactly one such name
/// must be present.
pub fn node_id(cert_der: &[u8]) -> Result<NodeId, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|_| IdentityError::Unparseable)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparseable)?;
    let mut found = None;
    for general in san.iter().flat_map(|s| s.value.general_names.iter()) {
        let GeneralName::URI(uri) = general else {
            continue;
        };
        let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) else {
            continue;
        };
        let id = parse_id(id).ok_or_else(|| IdentityError::BadId(id.to_string()))?;
        match found {
            Some(first) if first != id => return Err(IdentityError::Ambiguous(first, id)),
            _ => found = Some(id),
        }
    }
    found.ok_or(IdentityError::NoId)
}

/// The subject common name of a DER certificate, if it has one. Used to
/// name peers in logs and to rebuild a CA's issuer name.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    // Node certificates are signed directly: no intermediates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

/// Valid from yesterday (UTC) for [`VALID_YEARS`] years.
fn set_validity(params: &mut CertificateParams) {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let (year, month, day) = proto::calendar::civil_from_days(days.saturating_sub(1) as i64);
    let (year, month, day) = (year as i32, month as u8, day as u8);
    // February 29th does not come back every year.
    let day = day.min(28);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, month, day);
}

fn check_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CertError::BadName(name.to_string()))
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // The mode above only applies to a new file; tighten an old one
        // before the key is written into it.
        if path.exists() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn node_certificates_name_their_node_and_issuer() {
        let ca = generate_ca("test CA").unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(&ca_der).as_deref(), Some("test CA"));
        assert_eq!(node_id(&ca_der), Err(IdentityError::NoId));
        let node = generate_node(&ca, &cert("n1", 41, &["127.0.0.1", "n1.local"])).unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("n1"));
        assert_eq!(node_id(&der), Ok(41));
        assert!(common_name(b"not a certificate").is_none());
        assert_eq!(
            node_id(b"not a certificate"),
            Err(IdentityError::Unparseable)
        );
        assert_eq!(node_id(&[]), Err(IdentityError::Unparseable));
    }

    fn cert(name: &str, id: NodeId, sans: &[&str]) -> NodeCert {
        NodeCert {
            name: name.into(),
            id,
            sans: sans.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A certificate signed by `ca` with exactly the SANs given, as another
    /// tool (or an attacker holding the CA key) might make it.
    fn with_sans(ca: &CaFiles, sans: Vec<SanType>) -> Vec<u8> {
        let ca_key = KeyPair::from_pem(&ca.key_pem).unwrap();
        let issuer = Issuer::new(ca_params("test CA"), &ca_key);
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = name("odd");
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    #[test]
    fn hostile_node_ids_are_refused() {
        let ca = generate_ca("test CA").unwrap();
        let uri = |s: &str| SanType::URI(Ia5String::try_from(s).unwrap());
        let dns = |s: &str| SanType::DnsName(Ia5String::try_from(s).unwrap());
        let id_of = |sans| node_id(&with_sans(&ca, sans));
        assert_eq!(
            id_of(vec![dns("meridian:node:4")]),
            Err(IdentityError::NoId)
        );
        assert_eq!(id_of(vec![uri("https://node:4")]), Err(IdentityError::NoId));
        assert_eq!(
            id_of(vec![uri("meridian:node:")]),
            Err(IdentityError::BadId(String::new()))
        );
        for bad in ["-1", "+4", " 4", "4 ", "0x4", "4a", "18446744073709551616"] {
            assert_eq!(
                id_of(vec![uri(&format!("meridian:node:{bad}"))]),
                Err(IdentityError::BadId(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            id_of(vec![uri("meridian:node:2"), uri("meridian:node:4")]),
            Err(IdentityError::Ambiguous(2, 4))
        );
        assert_eq!(
            id_of(vec![uri("meridian:node:4"), uri("meridian:node:4")]),
            Ok(4)
        );
        assert_eq!(
            id_of(vec![uri("MERIDIAN:NODE:4")]),
            Err(IdentityError::NoId)
        );
        assert_eq!(
            id_of(vec![uri("meridian:node:18446744073709551615")]),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn nodes_are_named_with_their_id() {
        assert_eq!(parse_node("n1").unwrap(), ("n1".to_string(), 1));
        assert_eq!(parse_node("n042").unwrap(), ("n042".to_string(), 42));
        assert_eq!(parse_node("us-east=7").unwrap(), ("us-east".to_string(), 7));
        assert_eq!(parse_node("n1=9").unwrap(), ("n1".to_string(), 9));
        for bad in [
            "us-east", "n", "n-1", "nx", "n1x", "x=", "x=-2", "x=a", "=", "n 1", "N1",
        ] {
            assert!(matches!(parse_node(bad), Err(CertError::NoId(_))), "{bad}");
        }
    }

    #[test]
    fn a_foreign_key_is_refused() {
        let ca = generate_ca("a").unwrap();
        let other = generate_ca("b").unwrap();
        let mixed = CaFiles {
            cert_pem: ca.cert_pem,
            key_pem: other.key_pem,
        };
        assert!(matches!(
            generate_node(&mixed, &cert("n1", 1, &[])),
            Err(CertError::BadCa(_))
        ));
    }

    #[test]
    fn write_cluster_writes_private_keys_privately_and_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = vec![cert("n1", 1, &["127.0.0.1"])];
        let written = write_cluster(dir.path(), &nodes).unwrap();
        assert_eq!(written.len(), 4);
        let ca_before = fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["ca.key", "n1.key"] {
                let mode = fs::metadata(dir.path().join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
        let more = vec![cert("n2", 2, &["n2.example"])];
        assert_eq!(write_cluster(dir.path(), &more).unwrap().len(), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
            ca_before
        );
        let pem = fs::read(dir.path().join("n2.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(node_id(&der), Ok(2));
        assert!(matches!(
            write_cluster(dir.path(), &[cert("../x", 3, &[])]),
            Err(CertError::BadName(_))
        ));
    }
}
