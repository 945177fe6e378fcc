//! Where a node's master key comes from: the `ONEHTTPS_MASTER_KEY` environment variable (64
//! hex digits) or `data_dir/master.key` (0600, created on first start). It never enters the
//! store itself; the store checks it against `master.check` before anything is read.

use std::path::Path;

use zeroize::Zeroizing;

use super::atomic::write_atomic;
use crate::seal::{MASTER_KEY_ENV, MasterKey, SealError, parse_hex_key, random_key_bytes, to_hex};

/// The master key for `data_dir`: from the environment if set, else from
/// `data_dir/master.key`, created (0600) when neither exists. The store then checks it
/// against its `master.check` ([`MasterKey::sealed_check`]).
pub fn load_or_create(data_dir: &Path) -> Result<MasterKey, SealError> {
    match std::env::var(MASTER_KEY_ENV) {
        Ok(hex) => Ok(MasterKey::from_bytes(
            &parse_hex_key(&hex).ok_or(SealError::BadEnvKey)?,
        )),
        Err(_) => from_file(&data_dir.join("master.key")),
    }
}

fn from_file(path: &Path) -> Result<MasterKey, SealError> {
    let io = |source| SealError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            let bytes = parse_hex_key(text.trim()).ok_or_else(|| SealError::BadKeyFile {
                path: path.to_owned(),
            })?;
            Ok(MasterKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = random_key_bytes()?;
            let hex = Zeroizing::new(to_hex(bytes.as_ref()) + "\n");
            write_atomic(path, hex.as_bytes(), 0o600).map_err(io)?;
            Ok(MasterKey::from_bytes(&bytes))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_created_once_and_wrong_key_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = from_file(&dir.path().join("master.key")).unwrap();
        let check = first.sealed_check().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("master.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = from_file(&dir.path().join("master.key")).unwrap();
        assert!(again.opens_check(&check));
        assert!(!MasterKey::from_bytes(&[1; 32]).opens_check(&check));
    }
}
