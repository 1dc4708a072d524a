//! The cluster's certificates, made in-process with `raft::certs` (what
//! `meridian certs` runs): `ca.pem`, `ca.key`, and `NAME.pem`/`NAME.key` per
//! node, with SANs 127.0.0.1 and localhost.

use std::path::{Path, PathBuf};

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
