//! Uploaded certificate files on disk: reading and checking a site's PEM pair, and noticing
//! when the files change (also by atomic rename or symlink swap).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::CertFiles;
use crate::certs::{CertBundle, CertError, HostName};

/// Why a certificate pair on disk cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertFileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{cert} with {key}: {source}")]
    Invalid {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: CertError,
    },
}

/// Reads `files` and checks the pair serves `hosts` now.
pub fn load(files: &CertFiles, hosts: &[HostName]) -> Result<CertBundle, CertFileError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|source| CertFileError::Read {
                path: path.to_owned(),
                source,
            })
    };
    let (chain, key) = (read(&files.cert)?, read(&files.key)?);
    CertBundle::from_pem(&chain, &key)
        .and_then(|b| b.check_serves(hosts, SystemTime::now()).map(|()| b))
        .map_err(|source| CertFileError::Invalid {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })
}

/// Identity of a file's current content as far as metadata tells: device, inode, size and
/// modification time. A rename over the file or a symlink swap changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// Stamps of a certificate and key file; `None` when either cannot be read.
pub fn stamps(files: &CertFiles) -> Option<(FileStamp, FileStamp)> {
    let stamp = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    };
    Some((stamp(&files.cert)?, stamp(&files.key)?))
}
