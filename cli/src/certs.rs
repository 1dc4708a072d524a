//! `meridian certs`: a cluster CA and node certificates, so a new operator
//! needs no openssl recipe.

use std::path::Path;

use raft::certs::{CertError, NodeCert, parse_node, write_cluster};

/// Writes (or adds to) the cluster's certificates in `dir`: the CA is created
/// on first use and reused after, so the same command adds nodes later.
/// Each of `nodes` is `n<ID>` (n4 is node 4) or `NAME=ID`; its certificate
/// names that node id, which peers hold it to. Every node certificate names
/// `sans` (addresses and DNS names peers dial). A node without an id is
/// refused before anything is written.
pub fn new_certs(dir: &Path, nodes: &[String], sans: &[String]) -> Result<Vec<String>, CertError> {
    let sans = if sans.is_empty() {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    } else {
        sans.to_vec()
    };
    let nodes = nodes
        .iter()
        .map(|spec| {
            let (name, id) = parse_node(spec)?;
            Ok(NodeCert {
                name,
                id,
                sans: sans.clone(),
            })
        })
        .collect::<Result<Vec<_>, CertError>>()?;
    let written = write_cluster(dir, &nodes)?;
    Ok(written.iter().map(|p| p.display().to_string()).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    fn id_in(path: &Path) -> u64 {
        let pem = std::fs::read(path).unwrap();
        raft::certs::node_id(&CertificateDer::from_pem_slice(&pem).unwrap()).unwrap()
    }

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
        assert_eq!(id_in(&dir.path().join("n1.pem")), 1);
        assert_eq!(id_in(&dir.path().join("n2.pem")), 2);
    }

    #[test]
    fn names_take_their_id_explicitly_or_from_n_id() {
        let dir = tempfile::tempdir().unwrap();
        new_certs(dir.path(), &["us-east=7".into(), "n12".into()], &[]).unwrap();
        assert_eq!(id_in(&dir.path().join("us-east.pem")), 7);
        assert_eq!(id_in(&dir.path().join("n12.pem")), 12);
    }

    #[test]
    fn a_node_without_an_id_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = new_certs(dir.path(), &["n1".into(), "us-east".into()], &[]).unwrap_err();
        assert!(
            matches!(e, CertError::NoId(ref name) if name == "us-east"),
            "{e}"
        );
        assert!(!dir.path().join("ca.pem").exists());
        assert!(!dir.path().join("n1.pem").exists());
    }
}
