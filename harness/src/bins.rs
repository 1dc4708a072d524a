//! Where the binaries are. The harness never builds them: the caller names
//! their directory (node tests the directory of `CARGO_BIN_EXE_meridian`,
//! the chaos runner and the benches their `--bin-dir`), and
//! `cargo build --workspace --bins` (which `scripts/test` runs) puts
//! `meridian` and `meridian-mock` there.

use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The node binary's name.
pub const MERIDIAN: &str = "meridian";
/// The fake provider's binary name.
pub const MOCK: &str = "meridian-mock";

/// `dir/name`, or [`HarnessError::MissingBinary`] with how to build it.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf, HarnessError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary(path))
    }
}

/// The directory holding `exe` (e.g. `env!("CARGO_BIN_EXE_meridian")`),
/// where cargo also put the workspace's other binaries.
pub fn dir_of(exe: &Path) -> PathBuf {
    exe.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(dir.path(), MOCK).unwrap_err().to_string();
        assert!(err.contains("meridian-mock not found"), "{err}");
        assert!(err.contains("cargo build --workspace --bins"), "{err}");
        std::fs::write(dir.path().join(MOCK), "").unwrap();
        assert_eq!(locate(dir.path(), MOCK).unwrap(), dir.path().join(MOCK));
        assert_eq!(dir_of(&dir.path().join(MOCK)), dir.path());
    }
}
