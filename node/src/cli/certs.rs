//! `meridian certs`: a cluster CA and node certificates, so a new operator
//! needs no openssl recipe.

use std::path::Path;

use raft::certs::{CertError, write_cluster};

/// Writes (or adds to) the cluster's certificates in `dir`: the CA is created
/// on first use and reused after, so the same command adds nodes later.
/// Every node certificate names `sans` (addresses and DNS names peers dial).
pub fn new_certs(dir: &Path, nodes: &[String], sans: &[String]) -> Result<Vec<String>, CertError> {
    let sans = if sans.is_empty() {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    } else {
        sans.to_vec()
    };
    let nodes: Vec<(String, Vec<String>)> =
        nodes.iter().map(|n| (n.clone(), sans.clone())).collect();
    let written = write_cluster(dir, &nodes)?;
    Ok(written.iter().map(|p| p.display().to_string()).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn writes_a_ca_and_reuses_it_for_new_nodes() {
        let dir = tempfile::tempdir().unwrap();
        new_certs(dir.path(), &["n1".into()], &[]).unwrap();
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        new_certs(dir.path(), &["n2".into()], &["10.0.0.2".into()]).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("ca.pem")).unwrap(),
            ca,
            "the CA is kept"
        );
        assert!(dir.path().join("n1.pem").exists() && dir.path().join("n2.key").exists());
    }
}
