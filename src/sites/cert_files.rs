//! Certificate files on disk: reading and checking a site's PEM pair, noticing when the files
//! change (also by atomic rename or symlink swap), and the self-signed pair the demo keeps
//! under `data_dir` until an issuer exists.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::certs::{CertBundle, CertError, HostName, selfsigned};
use crate::config::CertFiles;

/// Lifetime of the demo's self-signed certificates; regenerated when a tenth is left.
const SELF_SIGNED_DAYS: i64 = 90;
const SELF_SIGNED_MIN_LEFT: Duration = Duration::from_secs(9 * 86400);

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
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Reads `files` and checks the pair serves `hosts` now.
pub fn load(files: &CertFiles, hosts: &[HostName]) -> Result<CertBundle, CertFileError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertFileError::Read {
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

/// The demo's self-signed pair for a site: reused from `data_dir/selfsigned/` while it still
/// covers the site and has time left, generated (and saved, key 0600) otherwise.
pub fn self_signed(data_dir: &Path, hosts: &[HostName]) -> Result<CertBundle, CertFileError> {
    let name = hosts
        .first()
        .map_or("site", HostName::as_str)
        .replace('*', "_wildcard");
    let dir = data_dir.join("selfsigned");
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    if let Ok(bundle) = load(&files, hosts)
        && bundle.info.not_after > SystemTime::now() + SELF_SIGNED_MIN_LEFT
    {
        return Ok(bundle);
    }
    let pair = selfsigned::generate(hosts, SELF_SIGNED_DAYS)?;
    std::fs::create_dir_all(&dir).map_err(|source| CertFileError::Write {
        path: dir.clone(),
        source,
    })?;
    write_atomic(&files.key, pair.key_pem.as_bytes(), 0o600)?;
    write_atomic(&files.cert, pair.chain_pem.as_bytes(), 0o644)?;
    CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes()).map_err(|source| {
        CertFileError::Invalid {
            cert: files.cert,
            key: files.key,
            source,
        }
    })
}

/// Writes `data` to `path` through a temporary file, fsync and rename.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CertFileError> {
    let tmp = path.with_extension("tmp");
    let err = |source| CertFileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
