//! Persistence behind one interface with three backends: `embedded` (the default: every
//! entry in one transactional file, `data_dir/store.redb`, `embedded.rs`), `fs` (one file per
//! entry under `data_dir`, every write atomic, `atomic.rs`) and `etcd` for a fleet
//! (`etcd.rs`), chosen by its own settings type (`settings.rs`). A store of bytes under
//! keys, with claims (fenced writes) and leases: it knows nothing of certificates or of
//! the config (the certificate records' format is `managed::records`'). Secrets are
//! sealed under the master key (`crate::seal`), which never enters the store (each node has
//! it from `ONEHTTPS_MASTER_KEY` or its own `data_dir/master.key`, `master_key.rs`); every
//! file holding a secret is 0600. A corrupt entry is reported with its location and set
//! aside, never fatal for the rest.
//!
//! Layout of `fs` (embedded: the same keys in `store.redb`, 0600; etcd: the same keys under
//! `storage.prefix`, plus `locks/`, `challenges/` and `nodes/` attached to each node's lease;
//! `master.key` stays a file of `data_dir` whatever the backend):
//! ```text
//! data_dir/            0700
//!   master.key         0600  the master key (unless ONEHTTPS_MASTER_KEY is set)
//!   master.check       0600  proves the master key is the one the directory was sealed with
//!   certs/<id>.json    0600  one managed certificate (written by `managed::records`)
//!   records-v2.sealed  0600  marks that every record carries a tag (untagged = tampered)
//!   ca/root.pem        0644  the internal CA's root certificate (trust this)
//!   ca/root.key.sealed 0600  its key
//!   acme/<id>.sealed   0600  ACME account credentials, one per directory URL
//! ```

pub mod atomic;
mod batch;
mod claims;
pub mod embedded;
pub mod etcd;
mod etcd_tls;
mod listing;
pub mod master_key;
pub mod settings;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::seal::{MasterKey, SealError};
pub use atomic::write_atomic;
pub use claims::{Claim, StoreLock};
pub use settings::{EtcdSettings, StorageSettings};

/// Why something could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} failed authentication: {reason} (altered on disk, or not written by onehttps)")]
    Tampered { path: PathBuf, reason: String },
    #[error("the store is unavailable: {what}: {reason}")]
    Unavailable { what: String, reason: String },
    #[error(
        "{key} was not written: this node lost its lock (its lease expired) and another node may hold it now"
    )]
    LockLost { key: String },
}

impl StoreError {
    /// Whether the store could not be reached (as opposed to holding bad data).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Where the store keeps things.
#[derive(Debug)]
enum Backend {
    /// Files under this directory.
    Fs(PathBuf),
    /// One file in this directory (`dir` also holds the lock file and the master key).
    Embedded {
        dir: PathBuf,
        db: Box<embedded::EmbeddedBackend>,
    },
    Etcd(Box<etcd::EtcdBackend>),
}

/// Marks the key inside the embedded file in a reported location: `…/store.redb#<key>`.
const EMBEDDED_MARK: char = '#';

/// Marks where an etcd key is reported (in the `path` of an error).
const ETCD_MARK: &str = "etcd:";

/// The store.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    master: std::sync::Arc<MasterKey>,
}

impl Store {
    /// Opens (creating on first use) the fs store in `dir`; refuses a wrong master key.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(&StorageSettings::Fs, dir)
    }

    /// Opens the store `settings` choose: the embedded file or fs files in `data_dir`, or
    /// etcd. The master key comes from `ONEHTTPS_MASTER_KEY` or `data_dir/master.key`, never
    /// from the store; a store sealed under another key is refused.
    pub fn open_with(settings: &StorageSettings, data_dir: &Path) -> Result<Self, StoreError> {
        let data_dir_error = |source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(data_dir_error)?;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(data_dir_error)?;
        // Held until the store is verified: first opens by two processes agree on one key.
        let _lock = atomic::lock_dir(data_dir).map_err(data_dir_error)?;
        let master = master_key::load_or_create(data_dir)?;
        let backend = match settings {
            StorageSettings::Fs => {
                for sub in ["certs", "ca", "acme", "sites"] {
                    atomic::clean_temporaries(&data_dir.join(sub));
                }
                Backend::Fs(data_dir.to_owned())
            }
            StorageSettings::Embedded => Backend::Embedded {
                dir: data_dir.to_owned(),
                db: Box::new(embedded::EmbeddedBackend::open(data_dir)?),
            },
            StorageSettings::Etcd(etcd) => {
                Backend::Etcd(Box::new(etcd::EtcdBackend::connect(etcd)?))
            }
        };
        let store = Self {
            backend,
            master: std::sync::Arc::new(master),
        };
        store.verify_master()?;
        Ok(store)
    }

    /// The etcd backend, when this edge is part of a fleet.
    pub fn fleet(&self) -> Option<&etcd::EtcdBackend> {
        match &self.backend {
            Backend::Etcd(etcd) => Some(etcd),
            Backend::Fs(_) | Backend::Embedded { .. } => None,
        }
    }

    /// The master key this store seals under, for what seals its own records with it (the
    /// certificate records' tags and keys): it never leaves the process.
    pub fn master_key(&self) -> &std::sync::Arc<MasterKey> {
        &self.master
    }

    /// Opens `master.check` (creating it on first use): a node whose master key is not the
    /// one the store was sealed with is refused here, before anything is read.
    fn verify_master(&self) -> Result<(), StoreError> {
        const CHECK: &str = "master.check";
        let existing = match self.get(CHECK)? {
            Some(sealed) => sealed,
            None => {
                let sealed = self.master.sealed_check()?;
                if self.create(CHECK, sealed.as_bytes(), 0o600)? {
                    return Ok(());
                }
                self.get(CHECK)?.unwrap_or_default()
            }
        };
        let text = String::from_utf8_lossy(&existing);
        if self.master.opens_check(text.trim()) {
            Ok(())
        } else {
            Err(SealError::WrongMasterKey {
                path: self.path_of(CHECK),
            }
            .into())
        }
    }

    /// Where `key` lives: a path under `data_dir`, `…/store.redb#<key>` or
    /// `etcd:<prefix><key>`.
    pub fn path_of(&self, key: &str) -> PathBuf {
        match &self.backend {
            Backend::Fs(dir) => dir.join(key),
            Backend::Embedded { db, .. } => {
                PathBuf::from(format!("{}{EMBEDDED_MARK}{key}", db.file().display()))
            }
            Backend::Etcd(etcd) => {
                PathBuf::from(format!("{ETCD_MARK}{}{key}", etcd.settings().prefix))
            }
        }
    }

    /// Closes the embedded database cleanly, so the process may exit without freeing what
    /// it holds (a million sites take seconds to free); later operations fail as
    /// unavailable. Nothing to do for the fs store; an etcd node's lease lapses on its own.
    pub fn close(&self) {
        if let Backend::Embedded { db, .. } = &self.backend {
            db.close();
        }
    }

    /// The key of a location [`path_of`](Self::path_of) returned.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        match &self.backend {
            Backend::Fs(dir) => Some(path.strip_prefix(dir).ok()?.to_str()?.to_owned()),
            Backend::Embedded { db, .. } => Some(
                path.to_str()?
                    .strip_prefix(db.file().to_str()?)?
                    .strip_prefix(EMBEDDED_MARK)?
                    .to_owned(),
            ),
            Backend::Etcd(etcd) => Some(
                path.to_str()?
                    .strip_prefix(ETCD_MARK)?
                    .strip_prefix(etcd.settings().prefix.as_str())?
                    .to_owned(),
            ),
        }
    }

    /// The bytes at `key`; `None` if absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Fs(dir) => {
                let path = dir.join(key);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(StoreError::Read { path, source }),
                }
            }
            Backend::Embedded { db, .. } => db.get(key),
            Backend::Etcd(etcd) => etcd.get(key),
        }
    }

    /// Writes `data` at `key` (a file with `mode`, atomically).
    fn put(&self, key: &str, data: &[u8], mode: u32) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Fs(dir) => {
                let path = dir.join(key);
                write_atomic(&path, data, mode).map_err(|source| StoreError::Write { path, source })
            }
            Backend::Embedded { db, .. } => db.put(key, data),
            Backend::Etcd(etcd) => etcd.put(key, data),
        }
    }

    /// Writes `data` at `key` unless something is there already; whether it was written.
    /// (fs: callers hold [`lock`](Self::lock).)
    fn create(&self, key: &str, data: &[u8], mode: u32) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Fs(_) => {
                if self.get(key)?.is_some() {
                    return Ok(false);
                }
                self.put(key, data, mode).map(|()| true)
            }
            Backend::Embedded { db, .. } => db.create(key, data),
            Backend::Etcd(etcd) => etcd.create(key, data),
        }
    }

    /// Writes `value` as JSON at `rel` atomically, 0600.
    pub fn save_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<(), StoreError> {
        let json = encode_json(value, || self.path_of(rel))?;
        self.put(rel, &json, 0o600)
    }

    /// Like [`save_json`](Self::save_json), only while this node holds `claim` (etcd: a
    /// fenced write that fails once the lock was lost; fs: an ordinary write).
    pub fn save_json_claimed<T: serde::Serialize>(
        &self,
        claim: &Claim,
        rel: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        match (&self.backend, claim) {
            (Backend::Etcd(etcd), Claim::Fleet(held)) => {
                let json = encode_json(value, || self.path_of(rel))?;
                etcd.put_fenced(held, rel, &json)
            }
            _ => self.save_json(rel, value),
        }
    }

    /// Removes the entry at `rel` (absent is fine).
    pub fn remove(&self, rel: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Fs(dir) => {
                let path = dir.join(rel);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(StoreError::Write { path, source }),
                }
            }
            Backend::Embedded { db, .. } => db.delete(rel),
            Backend::Etcd(etcd) => etcd.delete(rel),
        }
    }

    /// The key and bytes [`save_json`](Self::save_json) would write.
    pub fn encode_json<T: serde::Serialize>(
        &self,
        rel: &str,
        value: &T,
    ) -> Result<(String, Vec<u8>), StoreError> {
        Ok((rel.to_owned(), encode_json(value, || self.path_of(rel))?))
    }

    /// Writes many entries at once (embedded: one transaction; etcd: one per 128 entries; fs:
    /// one write each):
    /// bulk imports, and the benchmarks' datasets.
    pub fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded { db, .. } => db.put_many(entries),
            Backend::Etcd(etcd) => etcd.put_many(entries),
            Backend::Fs(_) => entries
                .iter()
                .try_for_each(|(key, bytes)| self.put(key, bytes, 0o600)),
        }
    }

    /// Reads and opens the secret at `rel` (relative to `data_dir`); `None` if absent.
    pub fn read_secret(&self, rel: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(bytes) = self.get(rel)? else {
            return Ok(None);
        };
        let sealed = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
        self.master
            .open(rel, sealed.trim())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: self.path_of(rel),
                reason: e.to_string(),
            })
    }

    /// Seals `secret` and writes it atomically at `rel`, 0600.
    pub fn write_secret(&self, rel: &str, secret: &[u8]) -> Result<(), StoreError> {
        let sealed = self.master.seal(rel, secret)?;
        self.put(rel, sealed.as_bytes(), 0o600)
    }

    /// Reads a public entry at `rel`; `None` if absent.
    pub fn read_public(&self, rel: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(rel)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Writes a public entry at `rel` atomically (fs: 0644).
    pub fn write_public(&self, rel: &str, data: &[u8]) -> Result<(), StoreError> {
        self.put(rel, data, 0o644)
    }
}

/// `value` as pretty JSON; `at` names the entry if it cannot be encoded.
fn encode_json<T: serde::Serialize>(
    value: &T,
    at: impl FnOnce() -> PathBuf,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
        path: at(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_opens_agree_on_one_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let stores: Vec<Store> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Store::open(dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sealed = stores[0].master_key().seal("cert-key:a", b"k").unwrap();
        for store in &stores {
            assert_eq!(
                store
                    .master_key()
                    .open("cert-key:a", &sealed)
                    .unwrap()
                    .as_slice(),
                b"k"
            );
        }
    }

    #[test]
    fn secrets_are_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write_secret("acme/x.sealed", b"-----BEGIN PRIVATE KEY-----")
            .unwrap();
        let raw = std::fs::read_to_string(dir.path().join("acme/x.sealed")).unwrap();
        assert!(!raw.contains("PRIVATE KEY"));
        assert_eq!(
            store
                .read_secret("acme/x.sealed")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(store.read_secret("acme/none.sealed").unwrap().is_none());
    }
}
