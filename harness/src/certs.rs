//! The cluster's certificates, made in-process with `raft::certs` (what
//! `meridian certs` runs): `ca.pem`, `ca.key`, and `NAME.pem`/`NAME.key` per
//! node, with SANs 127.0.0.1 and localhost. And [`UpstreamCa`], a private
//! CA for TLS upstreams that tests and benchmarks stand up.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::HarnessError;

/// Writes a CA (unless `dir` already holds one, which then signs) and one
/// certificate per spec into `dir`; a spec is `n<ID>` or `NAME=ID`, as
/// `meridian certs` takes it.
pub fn write(dir: &Path, specs: &[String]) -> Result<(), HarnessError> {
    let sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let nodes = specs
        .iter()
        .map(|spec| {
            let (name, id) = raft::certs::parse_node(spec)?;
            Ok(raft::certs::NodeCert {
                name,
                id,
                sans: sans.clone(),
            })
        })
        .collect::<Result<Vec<_>, raft::certs::CertError>>()?;
    raft::certs::write_cluster(dir, &nodes)?;
    Ok(())
}

/// The TLS section of node `name`'s config, for certificates in `dir`.
pub fn tls_config(dir: &Path, name: &str) -> proto::config::TlsConfig {
    proto::config::TlsConfig {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// `ca.pem` in `dir`.
pub fn ca(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// A private CA for a TLS upstream (the fake provider, a scripted server):
/// its certificate in `dir/<name>-ca.pem`, the file an upstream's
/// `ca_file` names, and the server certificates it signs. One place, so
/// every test that checks verification makes its CA the same way.
pub struct UpstreamCa {
    pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate [`UpstreamCa`] signed, and its key.
pub struct ServerCert {
    /// The certificate (`.der()`, `.pem()`).
    pub cert: rcgen::Certificate,
    /// Its private key (`.serialize_der()` is PKCS#8).
    pub key: KeyPair,
}

impl UpstreamCa {
    /// A new CA named `name` (its common name says so: two CAs of one test
    /// are never candidate issuers of each other's certificates).
    pub fn new(dir: &Path, name: &str) -> Result<UpstreamCa, HarnessError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("meridian test CA {name}"));
        let cert = params.self_signed(&key)?;
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem())
            .map_err(|e| HarnessError::io(pem.display().to_string(), e))?;
        Ok(UpstreamCa {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's certificate file.
    pub fn pem(&self) -> &Path {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn sign(&self, names: &[&str]) -> Result<ServerCert, HarnessError> {
        let key = KeyPair::generate()?;
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let cert = CertificateParams::new(names)?.signed_by(&key, &self.issuer)?;
        Ok(ServerCert { cert, key })
    }

    /// [`Self::sign`], written as PEM to `dir/<stem>.pem` and
    /// `dir/<stem>-key.pem`: (certificate, key).
    pub fn write_server(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> Result<(PathBuf, PathBuf), HarnessError> {
        let signed = self.sign(names)?;
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}-key.pem")),
        );
        for (path, pem) in [
            (&cert, signed.cert.pem()),
            (&key, signed.key.serialize_pem()),
        ] {
            std::fs::write(path, pem)
                .map_err(|e| HarnessError::io(path.display().to_string(), e))?;
        }
        Ok((cert, key))
    }
}
