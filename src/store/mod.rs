//! Persistence: the `fs` store under `data_dir`. Every write is atomic (`atomic.rs`); every
//! private key is sealed under the master key (`seal.rs`) and every file holding a secret is
//! 0600. A corrupt file is reported with its path and skipped, never fatal for the rest.
//!
//! Layout:
//! ```text
//! data_dir/            0700
//!   master.key         0600  the master key (unless ONEHTTPS_MASTER_KEY is set)
//!   master.check       0600  proves the master key is the one the directory was sealed with
//!   certs/<id>.json    0600  one managed certificate: names, state, chain, sealed key, and
//!                            a tag authenticating all of it under the master key
//!   records-v2.sealed  0600  marks that every record carries a tag (untagged = tampered)
//!   ca/root.pem        0644  the internal CA's root certificate (trust this)
//!   ca/root.key.sealed 0600  its key
//!   acme/<id>.sealed   0600  ACME account credentials, one per directory URL
//! ```

pub mod atomic;
pub mod seal;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use zeroize::Zeroizing;

use crate::certs::{CertRecord, HostName};
pub use atomic::write_atomic;
pub use seal::{MasterKey, SealError};

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
}

/// Sealed marker: every certificate record carries an authentication tag.
const RECORDS_V2: &str = "records-v2.sealed";

/// What a record's tag is sealed for: its slot, so a tag copied to another record fails.
fn record_purpose(names: &[HostName]) -> String {
    format!("cert-record:{}", Store::cert_id(names))
}

/// SHA-256 of the record's JSON without its tag (serde writes fields in declaration order).
fn record_digest(record: &CertRecord) -> Result<Vec<u8>, StoreError> {
    let mut untagged = record.clone();
    untagged.auth = None;
    let json = serde_json::to_vec(&untagged).map_err(|e| StoreError::Corrupt {
        path: PathBuf::from("certificate record"),
        reason: e.to_string(),
    })?;
    Ok(digest(&SHA256, &json).as_ref().to_vec())
}

/// The text of the file at `path`.
fn read_text(path: &Path) -> Result<String, StoreError> {
    std::fs::read_to_string(path).map_err(|source| StoreError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Only the `CERTIFICATE` blocks of a PEM text.
fn certificate_blocks(pem: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in pem.lines() {
        if line.trim() == "-----BEGIN CERTIFICATE-----" {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.trim() == "-----END CERTIFICATE-----" {
            inside = false;
        }
    }
    out
}

/// The `fs` store.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    master: MasterKey,
}

impl Store {
    /// Opens (creating on first use) the store in `dir`; refuses a wrong master key.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let data_dir = |source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(data_dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(data_dir)?;
        let _lock = atomic::lock_dir(dir).map_err(data_dir)?;
        let master = MasterKey::load_or_create(dir)?;
        for sub in ["certs", "ca", "acme", "sites"] {
            atomic::clean_temporaries(&dir.join(sub));
        }
        let store = Self {
            dir: dir.to_owned(),
            master,
        };
        store.migrate_records()?;
        Ok(store)
    }

    /// Once per data directory: records written before they were authenticated get their
    /// tag (and lose any non-certificate block a chain held: an uploaded chain could carry
    /// its private key in plaintext). After that an untagged record is refused.
    fn migrate_records(&self) -> Result<(), StoreError> {
        if self.read_secret(RECORDS_V2)?.is_some() {
            return Ok(());
        }
        for path in self.json_files("certs") {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(mut record) = serde_json::from_str::<CertRecord>(&text) else {
                continue;
            };
            if record.auth.is_some() {
                continue;
            }
            if let Some(chain) = &record.chain_pem
                && crate::certs::bundle::only_certificates(chain.as_bytes()).is_err()
            {
                record.chain_pem = Some(certificate_blocks(chain));
                tracing::warn!(path = %path.display(), "removed non-certificate blocks (a plaintext key?) from a stored chain");
            }
            let names: Vec<HostName> = record
                .names
                .iter()
                .filter_map(|n| HostName::parse(n).ok())
                .collect();
            self.save_cert(&names, &record)?;
        }
        self.write_secret(RECORDS_V2, b"records are authenticated")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Exclusive lock for first-use creation of shared things (see `atomic::lock_dir`).
    pub fn lock(&self) -> Result<std::fs::File, StoreError> {
        atomic::lock_dir(&self.dir).map_err(|source| StoreError::DataDir {
            path: self.dir.clone(),
            source,
        })
    }

    /// The file name stem of the record for `names`: the first name, readable, plus a hash
    /// of all of them, so two sites sharing a first name never collide.
    pub fn cert_id(names: &[HostName]) -> String {
        let mut sorted: Vec<&str> = names.iter().map(HostName::as_str).collect();
        sorted.sort_unstable();
        let hash = digest(&SHA256, sorted.join(",").as_bytes());
        let first = names.first().map_or("site", HostName::as_str);
        let readable: String = first
            .chars()
            .map(|c| if c == '*' { '_' } else { c })
            .collect();
        format!("{readable}-{}", seal::to_hex(&hash.as_ref()[..6]))
    }

    /// Where the record with `id` lives, relative to `data_dir`.
    fn cert_rel(id: &str) -> String {
        format!("certs/{id}.json")
    }

    fn cert_path(&self, id: &str) -> PathBuf {
        self.dir.join(Self::cert_rel(id))
    }

    /// Where the record for `names` lives.
    pub fn cert_path_of(&self, names: &[HostName]) -> PathBuf {
        self.cert_path(&Self::cert_id(names))
    }

    /// The stored record for `names`, `None` if there is none. A corrupt record, or one
    /// whose tag does not authenticate it, is an error naming its path; the caller reports
    /// it, sets it aside and carries on as if there were none.
    pub fn load_cert(&self, names: &[HostName]) -> Result<Option<CertRecord>, StoreError> {
        let path = self.cert_path(&Self::cert_id(names));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        self.parse_cert(path, &text).map(Some)
    }

    /// Parses and authenticates the record text read from `path`.
    fn parse_cert(&self, path: PathBuf, text: &str) -> Result<CertRecord, StoreError> {
        let record: CertRecord = serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tampered = |reason: &str| StoreError::Tampered {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let names: Vec<HostName> = record
            .names
            .iter()
            .map(|n| HostName::parse(n))
            .collect::<Result<_, _>>()
            .map_err(|_| tampered("a name is not a host name"))?;
        if path != self.cert_path(&Self::cert_id(&names)) {
            return Err(tampered("its names belong to another record"));
        }
        let tag = record.auth.as_deref().ok_or_else(|| tampered("no tag"))?;
        let expected = self
            .master
            .open(&record_purpose(&names), tag)
            .map_err(|_| tampered("the tag does not open"))?;
        if expected.as_slice() != record_digest(&record)?.as_slice() {
            return Err(tampered("the contents do not match the tag"));
        }
        Ok(record)
    }

    /// Every stored certificate record; corrupt or tampered ones as errors naming their path.
    pub fn load_all_certs(&self) -> Vec<Result<CertRecord, StoreError>> {
        self.json_files("certs")
            .into_iter()
            .map(|path| {
                let text = read_text(&path)?;
                self.parse_cert(path, &text)
            })
            .collect()
    }

    /// The `*.json` files of `dir` (relative to `data_dir`).
    fn json_files(&self, dir: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(dir)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect()
    }

    /// Every `*.json` file of `dir` (relative to `data_dir`), parsed.
    pub fn load_json_dir<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
    ) -> Vec<Result<T, StoreError>> {
        self.json_files(dir)
            .into_iter()
            .map(|path| {
                let text = read_text(&path)?;
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    path,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Writes `value` as JSON at `rel` atomically, 0600.
    pub fn save_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<(), StoreError> {
        let path = self.dir.join(rel);
        let json = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json, 0o600).map_err(|source| StoreError::Write { path, source })
    }

    /// Removes the file at `rel` (absent is fine).
    pub fn remove(&self, rel: &str) -> Result<(), StoreError> {
        let path = self.dir.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Write { path, source }),
        }
    }

    /// Removes the managed certificate record (and so its sealed key) of `names`.
    pub fn remove_cert(&self, names: &[HostName]) -> Result<(), StoreError> {
        self.remove(&Self::cert_rel(&Self::cert_id(names)))
    }

    /// Writes `record` atomically (0600: it holds a sealed key), with a tag that
    /// authenticates all of it (names, source, state, chain, sealed key, dates, failure).
    pub fn save_cert(&self, names: &[HostName], record: &CertRecord) -> Result<(), StoreError> {
        let mut record = record.clone();
        record.names = names.iter().map(|n| n.as_str().to_owned()).collect();
        let digest = record_digest(&record)?;
        record.auth = Some(self.master.seal(&record_purpose(names), &digest)?);
        self.save_json(&Self::cert_rel(&Self::cert_id(names)), &record)
    }

    /// Renames a corrupt file out of the way (kept for inspection, never loaded again) and
    /// returns its new path.
    pub fn set_aside(&self, path: &Path) -> Option<PathBuf> {
        let stamp = crate::certs::record::unix(std::time::SystemTime::now());
        let mut name = path.file_name()?.to_os_string();
        name.push(format!(".corrupt-{stamp}"));
        let kept = path.with_file_name(name);
        std::fs::rename(path, &kept).ok()?;
        Some(kept)
    }

    /// Seals the private key (DER) of the certificate for `names`.
    pub fn seal_cert_key(&self, names: &[HostName], key_der: &[u8]) -> Result<String, StoreError> {
        Ok(self
            .master
            .seal(&format!("cert-key:{}", Self::cert_id(names)), key_der)?)
    }

    /// Opens the sealed private key of `record`.
    pub fn open_cert_key(
        &self,
        names: &[HostName],
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let id = Self::cert_id(names);
        self.master
            .open(&format!("cert-key:{id}"), sealed)
            .map_err(|e| StoreError::Corrupt {
                path: self.cert_path(&id),
                reason: e.to_string(),
            })
    }

    /// Reads and opens the secret at `rel` (relative to `data_dir`); `None` if absent.
    pub fn read_secret(&self, rel: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let path = self.dir.join(rel);
        let sealed = match std::fs::read_to_string(&path) {
            Ok(text) => Zeroizing::new(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        self.master
            .open(rel, sealed.trim())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Seals `secret` and writes it atomically at `rel`, 0600.
    pub fn write_secret(&self, rel: &str, secret: &[u8]) -> Result<(), StoreError> {
        let sealed = self.master.seal(rel, secret)?;
        let path = self.dir.join(rel);
        write_atomic(&path, sealed.as_bytes(), 0o600)
            .map_err(|source| StoreError::Write { path, source })
    }

    /// Reads a public file at `rel`; `None` if absent.
    pub fn read_public(&self, rel: &str) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Writes a public file at `rel` atomically, 0644.
    pub fn write_public(&self, rel: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(rel);
        write_atomic(&path, data, 0o644).map_err(|source| StoreError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Source;

    fn names(list: &[&str]) -> Vec<HostName> {
        list.iter().map(|n| HostName::parse(n).unwrap()).collect()
    }

    #[test]
    fn cert_ids_are_readable_stable_and_distinct() {
        let a = Store::cert_id(&names(&["shop.example.com", "example.com"]));
        let b = Store::cert_id(&names(&["shop.example.com"]));
        assert!(a.starts_with("shop.example.com-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(
            a,
            Store::cert_id(&names(&["shop.example.com", "example.com"]))
        );
        assert!(Store::cert_id(&names(&["*.example.com"])).starts_with("_.example.com-"));
    }

    #[test]
    fn records_round_trip_and_corrupt_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let site = names(&["a.test"]);
        assert!(store.load_cert(&site).unwrap().is_none());
        let mut record = CertRecord::pending(&site, Source::Internal);
        record.sealed_key = Some(store.seal_cert_key(&site, b"key bytes").unwrap());
        store.save_cert(&site, &record).unwrap();
        let loaded = store.load_cert(&site).unwrap().unwrap();
        assert_eq!(
            CertRecord {
                auth: None,
                ..loaded.clone()
            },
            record
        );
        let sealed = loaded.sealed_key.unwrap();
        assert_eq!(
            store.open_cert_key(&site, &sealed).unwrap().as_slice(),
            b"key bytes"
        );
        // The key sealed for one site does not open as another's.
        assert!(store.open_cert_key(&names(&["b.test"]), &sealed).is_err());

        let other = names(&["b.test"]);
        let path = dir
            .path()
            .join("certs")
            .join(format!("{}.json", Store::cert_id(&other)));
        std::fs::write(&path, "{ not json").unwrap();
        let err = store.load_cert(&other).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        let all = store.load_all_certs();
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1);
    }

    #[test]
    fn any_change_to_a_record_fails_its_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let site = names(&["a.test"]);
        let mut record = CertRecord::pending(&site, Source::Acme);
        record.chain_pem =
            Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
        record.sealed_key = Some(store.seal_cert_key(&site, b"key").unwrap());
        store.save_cert(&site, &record).unwrap();
        let path = dir
            .path()
            .join("certs")
            .join(format!("{}.json", Store::cert_id(&site)));
        let original = std::fs::read_to_string(&path).unwrap();
        for (from, to) in [
            ("AAAA", "AAAB"),
            ("\"pending\"", "\"issued\""),
            ("\"acme\"", "\"uploaded\""),
        ] {
            std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
            let err = store.load_cert(&site).unwrap_err();
            assert!(matches!(err, StoreError::Tampered { .. }), "{from}: {err}");
        }
        // A tag removed, or a whole record copied over another's slot.
        let mut untagged: serde_json::Value = serde_json::from_str(&original).unwrap();
        untagged.as_object_mut().unwrap().remove("auth");
        std::fs::write(&path, untagged.to_string()).unwrap();
        assert!(matches!(
            store.load_cert(&site),
            Err(StoreError::Tampered { .. })
        ));
        let other = names(&["b.test"]);
        let other_path = dir
            .path()
            .join("certs")
            .join(format!("{}.json", Store::cert_id(&other)));
        std::fs::write(&other_path, &original).unwrap();
        assert!(matches!(
            store.load_cert(&other),
            Err(StoreError::Tampered { .. })
        ));
        std::fs::write(&path, &original).unwrap();
        assert!(store.load_cert(&site).unwrap().is_some());
    }

    #[test]
    fn legacy_records_are_tagged_once_and_lose_plaintext_keys() {
        let dir = tempfile::tempdir().unwrap();
        let site = names(&["a.test"]);
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n";
        {
            let store = Store::open(dir.path()).unwrap();
            std::fs::remove_file(dir.path().join(RECORDS_V2)).unwrap();
            let mut record = CertRecord::pending(&site, Source::Uploaded);
            record.chain_pem = Some(format!("{cert}{key}"));
            store
                .save_json(&Store::cert_rel(&Store::cert_id(&site)), &record)
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let migrated = store.load_cert(&site).unwrap().unwrap();
        assert_eq!(migrated.chain_pem.as_deref(), Some(cert));
        let raw = std::fs::read_to_string(store.cert_path(&Store::cert_id(&site))).unwrap();
        assert!(!raw.contains("PRIVATE KEY"), "{raw}");
    }

    #[test]
    fn concurrent_first_opens_agree_on_one_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let stores: Vec<Store> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Store::open(dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sealed = stores[0].seal_cert_key(&names(&["a.test"]), b"k").unwrap();
        for store in &stores {
            assert_eq!(
                store
                    .open_cert_key(&names(&["a.test"]), &sealed)
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
