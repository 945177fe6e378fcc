//! The stored form of a certificate record, owned here and nowhere else: where a record
//! lives in the store (`certs/<id>.json`), the tag that authenticates all of it under the
//! master key, its sealed private key, the once-per-store migration of untagged records.
//! The store beneath only keeps bytes; a record read from it is parsed and authenticated
//! here before anything serves it.

use std::path::PathBuf;

use aws_lc_rs::digest::{SHA256, digest};
use zeroize::Zeroizing;

use super::record_digest;
use crate::certs::record::id as cert_id;
use crate::certs::{CertRecord, HostName, SealedKey};
use crate::store::{Claim, Store, StoreError};

/// The directory (key prefix) of the certificate records, and the ending of a record's name.
pub const CERTS_DIR: &str = "certs";
pub const RECORD_SUFFIX: &str = ".json";

/// Sealed marker: every certificate record carries an authentication tag.
const RECORDS_V2: &str = "records-v2.sealed";

/// What the tag of the record with `id` is sealed for: its slot, so a tag copied to another
/// record fails.
fn record_purpose(id: &str) -> String {
    format!("cert-record:{id}")
}

/// What the private key of the record with `id` is sealed for (its slot: a key copied to
/// another record does not open).
fn cert_key_purpose(id: &str) -> String {
    format!("cert-key:{id}")
}

/// SHA-256 of the JSON of `untagged`, a record whose tag is taken out (serde writes fields
/// in declaration order).
fn record_digest(untagged: &CertRecord) -> Result<Vec<u8>, StoreError> {
    debug_assert!(untagged.auth.is_none());
    let json = serde_json::to_vec(untagged).map_err(|e| StoreError::Corrupt {
        path: PathBuf::from("certificate record"),
        reason: e.to_string(),
    })?;
    Ok(digest(&SHA256, &json).as_ref().to_vec())
}

/// Where the record with `id` lives in the store.
pub fn key_of(id: &str) -> String {
    format!("{CERTS_DIR}/{id}{RECORD_SUFFIX}")
}

/// Whether `key` is where the record with `id` lives (what [`key_of`] gives, compared
/// without making it).
fn is_key_of(key: &str, id: &str) -> bool {
    key.strip_prefix(CERTS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_suffix(RECORD_SUFFIX))
        == Some(id)
}

/// An authenticated certificate record as read from the store, with its parsed names and
/// its id (what [`crate::certs::record::id`] makes of them).
#[derive(Debug)]
pub struct LoadedCert {
    pub id: String,
    pub names: Vec<HostName>,
    pub record: CertRecord,
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

/// The certificate records of one store: read, authenticated, written and sealed.
#[derive(Debug, Clone, Copy)]
pub struct CertRecords<'s> {
    store: &'s Store,
}

impl<'s> CertRecords<'s> {
    /// The records kept in `store`.
    pub fn new(store: &'s Store) -> Self {
        Self { store }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.store.path_of(&key_of(id))
    }

    /// Where the record for `names` lives.
    pub fn path_of(&self, names: &[HostName]) -> PathBuf {
        self.path(&cert_id(names))
    }

    /// Once per data directory: records written before they were authenticated get their
    /// tag (and lose any non-certificate block a chain held: an uploaded chain could carry
    /// its private key in plaintext). After that an untagged record is refused.
    pub fn migrate(&self) -> Result<(), StoreError> {
        if self.store.read_secret(RECORDS_V2)?.is_some() {
            return Ok(());
        }
        for (path, bytes) in self
            .store
            .list(CERTS_DIR, RECORD_SUFFIX)
            .into_iter()
            .flatten()
        {
            let Ok(mut record) = serde_json::from_slice::<CertRecord>(&bytes) else {
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
            self.save(&names, &record)?;
        }
        self.store
            .write_secret(RECORDS_V2, b"records are authenticated")
    }

    /// The stored record for `names`, `None` if there is none. A corrupt record, or one
    /// whose tag does not authenticate it, is an error naming its path; the caller reports
    /// it, sets it aside and carries on as if there were none.
    pub fn load(&self, names: &[HostName]) -> Result<Option<CertRecord>, StoreError> {
        let key = key_of(&cert_id(names));
        match self.store.get(&key)? {
            Some(bytes) => self.parse_at(&key, &bytes).map(|l| Some(l.record)),
            None => Ok(None),
        }
    }

    /// Parses and authenticates the record bytes stored at `key` (a record whose names
    /// belong to another key is refused). The location is only formatted for an error: a
    /// restart reads a million records this way.
    pub fn parse_at(&self, key: &str, bytes: &[u8]) -> Result<LoadedCert, StoreError> {
        let mut record: CertRecord =
            serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                path: self.store.path_of(key),
                reason: e.to_string(),
            })?;
        let tampered = |reason: &str| StoreError::Tampered {
            path: self.store.path_of(key),
            reason: reason.to_owned(),
        };
        let names: Vec<HostName> = record
            .names
            .iter()
            .map(|n| HostName::parse(n))
            .collect::<Result<_, _>>()
            .map_err(|_| tampered("a name is not a host name"))?;
        let id = cert_id(&names);
        if !is_key_of(key, &id) {
            return Err(tampered("its names belong to another record"));
        }
        let tag = record.auth.take().ok_or_else(|| tampered("no tag"))?;
        let expected = self
            .store
            .master_key()
            .open(&record_purpose(&id), &tag)
            .map_err(|_| tampered("the tag does not open"))?;
        // The digest from the stored bytes as they are; only bytes not laid out as the edge
        // writes them are digested again from the parsed record.
        let authentic = record_digest::of_stored(bytes).as_deref() == Some(expected.as_slice())
            || expected.as_slice() == record_digest(&record)?.as_slice();
        if !authentic {
            return Err(tampered("the contents do not match the tag"));
        }
        record.auth = Some(tag);
        Ok(LoadedCert { id, names, record })
    }

    /// Every stored certificate record; corrupt or tampered ones as errors naming their path.
    pub fn load_all(&self) -> Vec<Result<CertRecord, StoreError>> {
        self.store
            .list(CERTS_DIR, RECORD_SUFFIX)
            .into_iter()
            .map(|entry| {
                let (path, bytes) = entry?;
                let key = self.store.key_of(&path).unwrap_or_default();
                self.parse_at(&key, &bytes).map(|loaded| loaded.record)
            })
            .collect()
    }

    /// Removes the record (and so the sealed key) of `names`.
    pub fn remove(&self, names: &[HostName]) -> Result<(), StoreError> {
        self.store.remove(&key_of(&cert_id(names)))
    }

    /// Writes `record` atomically (0600: it holds a sealed key), with a tag that
    /// authenticates all of it (names, source, state, chain, sealed key, dates, failure).
    pub fn save(&self, names: &[HostName], record: &CertRecord) -> Result<(), StoreError> {
        self.save_claimed(&Claim::Local, names, record)
    }

    /// [`save`](Self::save) while this node holds `claim` (see
    /// [`Store::save_json_claimed`]).
    pub fn save_claimed(
        &self,
        claim: &Claim,
        names: &[HostName],
        record: &CertRecord,
    ) -> Result<(), StoreError> {
        let mut record = record.clone();
        self.tag(names, &mut record)?;
        self.store
            .save_json_claimed(claim, &key_of(&cert_id(names)), &record)
    }

    /// Sets `record`'s names to `names` and its tag to one authenticating all of it.
    fn tag(&self, names: &[HostName], record: &mut CertRecord) -> Result<(), StoreError> {
        record.names = names.iter().map(|n| n.as_str().to_owned()).collect();
        record.auth = None;
        let digest = record_digest(record)?;
        record.auth = Some(
            self.store
                .master_key()
                .seal(&record_purpose(&cert_id(names)), &digest)?,
        );
        Ok(())
    }

    /// The key and bytes [`save`](Self::save) would write, for [`Store::put_many`].
    pub fn encode(
        &self,
        names: &[HostName],
        record: &CertRecord,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let mut record = record.clone();
        self.tag(names, &mut record)?;
        self.store.encode_json(&key_of(&cert_id(names)), &record)
    }

    /// Seals the private key (DER) of the certificate for `names`.
    pub fn seal_key(&self, names: &[HostName], key_der: &[u8]) -> Result<String, StoreError> {
        Ok(self
            .store
            .master_key()
            .seal(&cert_key_purpose(&cert_id(names)), key_der)?)
    }

    /// Opens the sealed private key of the record for `names`.
    pub fn open_key(
        &self,
        names: &[HostName],
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.open_key_of(&cert_id(names), sealed)
    }

    /// Opens a sealed private key of the record with `id`.
    pub fn open_key_of(&self, id: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.store
            .master_key()
            .open(&cert_key_purpose(id), sealed)
            .map_err(|e| StoreError::Corrupt {
                path: self.path(id),
                reason: e.to_string(),
            })
    }

    /// The sealed private key of the record with `id`, kept sealed as it was stored (opened
    /// under the master key when a handshake first needs it); an error when it is not a
    /// sealed blob at all.
    pub fn stored_key(&self, id: &str, sealed: &str) -> Result<SealedKey, StoreError> {
        let raw = crate::seal::sealed_bytes(sealed).ok_or_else(|| StoreError::Corrupt {
            path: self.path(id),
            reason: "the sealed key is not a sealed blob".into(),
        })?;
        Ok(SealedKey::stored(
            self.store.master_key().clone(),
            cert_key_purpose(id),
            raw,
        ))
    }
}

#[cfg(test)]
mod tests;
