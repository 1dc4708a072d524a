//! The cluster's certificates: one CA, and per node a certificate it presents
//! both as a server (to peers dialling it) and as a client (when it dials
//! them). Peers accept each other only when the certificate chains to the
//! cluster CA, so whoever holds `ca.key` decides who may join.
//!
//! Keys are ECDSA P-256. Certificates are valid from yesterday (a little
//! slack for clock skew between nodes) for ten years; rotation is issuing new
//! node certificates from the same CA and restarting nodes one at a time.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

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

/// Issues a certificate for `node_name` signed by `ca`, naming the node's
/// addresses in `sans` (IP addresses and DNS names, as peers dial it). The
/// certificate is usable as TLS server and client. `ca` must be a CA made by
/// [`generate_ca`] (its subject is its common name alone).
pub fn generate_node(
    ca: &CaFiles,
    node_name: &str,
    sans: &[String],
) -> Result<NodeFiles, CertError> {
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|e| CertError::BadCa(format!("certificate: {e}")))?;
    let ca_key =
        KeyPair::from_pem(&ca.key_pem).map_err(|e| CertError::BadCa(format!("key: {e}")))?;
    let spki = ca_key.public_key_der();
    if !ca_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
        return Err(CertError::BadCa(
            "the key does not belong to the certificate".into(),
        ));
    }
    let ca_name = common_name(&ca_der)
        .ok_or_else(|| CertError::BadCa("the certificate has no common name".into()))?;
    // rcgen 0.13 signs with an issuer `Certificate`; the issuer's name and
    // key are all it takes from it, so rebuilding it from the same name and
    // key yields the same issuer and authority key identifier.
    let issuer = ca_params(&ca_name).self_signed(&ca_key)?;

    let mut params = CertificateParams::new(sans.to_vec())?;
    params.distinguished_name = name(node_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
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
pub fn write_cluster(
    dir: &Path,
    nodes: &[(String, Vec<String>)],
) -> Result<Vec<PathBuf>, CertError> {
    for (name, _) in nodes {
        check_name(name)?;
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
    for (name, sans) in nodes {
        let node = generate_node(&ca, name, sans)?;
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        write(&cert, &node.cert_pem, false)?;
        write(&key, &node.key_pem, true)?;
        written.extend([cert, key]);
    }
    Ok(written)
}

/// The subject common name of a DER certificate, if it has one. Used to
/// name peers in logs and to rebuild a CA's issuer name.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = der_expect(cert_der, 0x30)?;
    let (_, tbs, _) = der_expect(cert, 0x30)?;
    let (tag, _, after_version) = der(tbs)?;
    let mut rest = if tag == 0xa0 { after_version } else { tbs };
    // serialNumber, signature, issuer, validity; then the subject.
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (_, mut rdns, _) = der_expect(rest, 0x30)?;
    while !rdns.is_empty() {
        let (_, mut set, next) = der_expect(rdns, 0x31)?;
        rdns = next;
        while !set.is_empty() {
            let (_, attribute, next) = der_expect(set, 0x30)?;
            set = next;
            let (_, oid, value) = der_expect(attribute, 0x06)?;
            let (tag, text, _) = der(value)?;
            // UTF8String, PrintableString, IA5String.
            if oid == CN_OID && matches!(tag, 0x0c | 0x13 | 0x16) {
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// Splits one DER element off `input`: its tag, its contents and what follows.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    der(input).filter(|(t, _, _)| *t == tag)
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
    let (year, month, day) = civil_from_days(days.saturating_sub(1) as i64);
    // February 29th does not come back every year.
    let day = day.min(28);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, month, day);
}

/// Converts days since 1970-01-01 to a (year, month, day) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
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
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn node_certificates_name_their_node_and_issuer() {
        let ca = generate_ca("test CA").unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(&ca_der).as_deref(), Some("test CA"));
        let node = generate_node(&ca, "n1", &["127.0.0.1".into(), "n1.local".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("n1"));
        assert!(common_name(b"not a certificate").is_none());
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
            generate_node(&mixed, "n1", &[]),
            Err(CertError::BadCa(_))
        ));
    }

    #[test]
    fn write_cluster_writes_private_keys_privately_and_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = vec![("n1".to_string(), vec!["127.0.0.1".to_string()])];
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
        let more = vec![("n2".to_string(), vec!["n2.example".to_string()])];
        assert_eq!(write_cluster(dir.path(), &more).unwrap().len(), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
            ca_before
        );
        assert!(matches!(
            write_cluster(dir.path(), &[("../x".to_string(), vec![])]),
            Err(CertError::BadName(_))
        ));
    }
}
