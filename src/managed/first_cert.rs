//! What a site serves the moment it is built: its stored certificate (authenticated, its
//! key opening and matching its chain, its names covered), an internal certificate issued
//! on the spot for a local name, or nothing yet while its first ACME order runs; a record
//! that cannot be served is set aside and said why.

use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::PrivateKeyDer;

use super::*;
use crate::certs::ServedCert;
use crate::certs::names::join;
use crate::certs::record::id as cert_id;
use crate::certs::{CertBundle, CertRecord, HostName, Source};
use crate::config::{IssuerKind, SiteConfig};
use crate::store::{Claim, StoreError};

/// The id of `record`'s slot, from its names.
pub(super) fn record_id(record: &CertRecord) -> Option<String> {
    record_names(record).map(|names| cert_id(&names))
}

/// The names of a record, parsed.
pub(super) fn record_names(record: &CertRecord) -> Option<Vec<HostName>> {
    record
        .names
        .iter()
        .map(|n| HostName::parse(n))
        .collect::<Result<_, _>>()
        .ok()
}

/// The leaf's names, dates and serial as an authenticated record of an issued certificate
/// holds them. Only for certificates the edge obtained itself (ACME or its internal CA):
/// they were issued for exactly the record's names. An uploaded leaf may name more, so it
/// is parsed.
pub(super) fn recorded_info(record: &CertRecord) -> Option<crate::certs::CertInfo> {
    if record.source == Source::Uploaded {
        return None;
    }
    Some(crate::certs::CertInfo {
        names: record.names.clone(),
        not_before: crate::certs::record::from_unix(record.not_before?),
        not_after: crate::certs::record::from_unix(record.not_after?),
        serial: record.serial.clone()?,
    })
}

/// Why an authenticated record's certificate cannot be served.
pub(super) enum Undecodable {
    /// Nothing issued yet, expired, or from an earlier internal root.
    Stale,
    /// What is wrong with it.
    Bad(String),
}

/// Why a record could not be read.
pub(super) enum Unreadable {
    /// The store did not answer: the record may be fine.
    Unavailable(String),
    /// It is bad and was set aside; the reason as the API shows it.
    Rejected(String),
}

/// Why a stored record is not served.
pub(super) enum Unservable {
    /// It was fine but no longer fits (expired, names changed, nothing issued yet).
    Stale,
    /// It is bad (key does not open or match): set aside, with the reason.
    Bad(String),
}

impl CertManager {
    /// What `site` serves from the start. Blocking (file reads, maybe an internal issuance).
    pub fn initial_cert(&self, site: &SiteConfig) -> Option<Arc<ServedCert>> {
        if site.cert.is_none()
            && let Some(served) = self.preloaded.remove(&cert_id(&site.hosts))
        {
            return Some(served);
        }
        self.first_cert(site).map(Arc::new)
    }

    /// What [`initial_cert`](Self::initial_cert) serves for a site whose certificate was not
    /// preloaded.
    pub(super) fn first_cert(&self, site: &SiteConfig) -> Option<ServedCert> {
        let (stored, mut rejected) = match self.load_record(&site.hosts) {
            Ok(record) => (record, None),
            Err(Unreadable::Rejected(reason)) => (None, Some(reason)),
            // Not known now: serve what can be served without it, look again later.
            Err(Unreadable::Unavailable(_)) => (None, None),
        };
        if let Some((_, bundle)) = site.cert.as_deref() {
            // An upload is served as it is, unless a managed certificate already took over
            // from this very upload (the takeover survives restarts).
            let took_over = stored.as_ref().and_then(|record| {
                let replaced = record.replaced.as_ref()?;
                (site.managed && replaced.serial == bundle.info.serial)
                    .then(|| self.servable(record, &site.hosts).ok())
                    .flatten()
            });
            return Some(
                took_over.unwrap_or_else(|| ServedCert::new(bundle.clone(), Source::Uploaded)),
            );
        }
        if let Some(record) = &stored {
            match self.servable(record, &site.hosts) {
                Ok(served) => return Some(served),
                Err(Unservable::Stale) => {}
                Err(Unservable::Bad(reason)) => rejected = Some(reason),
            }
        }
        if let Some(reason) = &rejected {
            // Keep the reason where the API shows it until a new certificate is in.
            let source = stored.as_ref().map_or(Source::Acme, |r| r.source);
            self.set_state(&site.hosts, source, |r| r.recovered = Some(reason.clone()));
            self.events.record(
                crate::events::EventKind::CertificateRecordRejected,
                &join(&site.hosts),
                format!("{reason}; a new certificate will be obtained"),
            );
        }
        if site.issuer == IssuerKind::Internal {
            match self.internal.issue_now(&site.hosts, self.settings.key_type) {
                Ok(issued) => {
                    let mut record = CertRecord::pending(&site.hosts, Source::Internal);
                    record.recovered = rejected;
                    match self.record_issued(&Claim::Local, &site.hosts, record, &issued) {
                        Ok(()) => self.log_issued(&site.hosts, Source::Internal, &issued, false),
                        Err(e) => {
                            tracing::error!(site = site.name(), error = %e, "cannot store the internal certificate")
                        }
                    }
                    return Some(ServedCert::new(issued.bundle, Source::Internal));
                }
                Err(e) => {
                    tracing::error!(site = site.name(), error = %e, "internal CA cannot issue")
                }
            }
        }
        None
    }

    /// The stored record for `names`. A corrupt or tampered one is reported with its path,
    /// set aside (kept for inspection, never loaded again) and its reason returned.
    pub(super) fn load_record(&self, names: &[HostName]) -> Result<Option<CertRecord>, Unreadable> {
        let id = cert_id(names);
        match self.records().load(names) {
            Ok(Some(record)) => {
                self.inventory.note(id, &record);
                Ok(Some(record))
            }
            Ok(None) => {
                self.inventory.note_absent(id);
                Ok(None)
            }
            Err(e) if e.is_unavailable() => Err(Unreadable::Unavailable(e.to_string())),
            Err(e) => {
                self.inventory.note_absent(id);
                let path = match &e {
                    StoreError::Corrupt { path, .. } | StoreError::Tampered { path, .. } => {
                        Some(path.clone())
                    }
                    _ => None,
                };
                Err(Unreadable::Rejected(
                    self.reject(path.as_deref(), &e.to_string()),
                ))
            }
        }
    }

    /// Sets a bad record aside and logs it; returns the reason as the API shows it.
    pub(super) fn reject(&self, path: Option<&std::path::Path>, reason: &str) -> String {
        let kept = path.and_then(|p| self.store.set_aside(p));
        let kept = kept.as_deref().map(|p| p.display().to_string());
        tracing::error!(
            reason,
            kept_as = kept.as_deref().unwrap_or(""),
            "certificate record rejected; a new certificate will be obtained"
        );
        match kept {
            Some(kept) => format!("{reason}; set aside as {kept}"),
            None => reason.to_owned(),
        }
    }

    /// The certificate a record holds, if it still serves `names` now; a record that cannot
    /// be served is set aside and reported.
    pub(super) fn servable(
        &self,
        record: &CertRecord,
        names: &[HostName],
    ) -> Result<ServedCert, Unservable> {
        let id = cert_id(names);
        self.servable_trusted(record, names, &id)
            .map_err(|e| match e {
                Undecodable::Stale => Unservable::Stale,
                Undecodable::Bad(what) => {
                    let path = self.records().path_of(names);
                    Unservable::Bad(
                        self.reject(Some(&path), &format!("{}: {what}", path.display())),
                    )
                }
            })
    }

    /// The certificate an authenticated record holds (its tag proves this edge wrote the
    /// chain and the sealed key together, after checking they match: they are not checked
    /// again, so a million records load in seconds), if it still serves `names` now.
    pub(super) fn servable_trusted(
        &self,
        record: &CertRecord,
        names: &[HostName],
        id: &str,
    ) -> Result<ServedCert, Undecodable> {
        let (Some(chain_pem), Some(sealed)) = (&record.chain_pem, &record.sealed_key) else {
            return Err(Undecodable::Stale);
        };
        let bundle =
            match recorded_info(record) {
                // The key stays sealed as stored until a handshake needs it (a million records
                // load without opening and sealing a million keys again).
                Some(info) => {
                    let key = self.records().stored_key(id, sealed).map_err(|e| {
                        Undecodable::Bad(format!("the sealed key is unusable ({e})"))
                    })?;
                    CertBundle::from_stored_with_info(chain_pem.as_bytes(), key, info)
                }
                None => {
                    let key_der = self.records().open_key_of(id, sealed).map_err(|e| {
                        Undecodable::Bad(format!("the sealed key does not open ({e})"))
                    })?;
                    let key = PrivateKeyDer::try_from(key_der.as_slice())
                        .map_err(|e| Undecodable::Bad(format!("the key does not decode ({e})")))?;
                    CertBundle::from_stored(chain_pem.as_bytes(), &key)
                }
            }
            .map_err(|e| Undecodable::Bad(format!("the chain is not usable ({e})")))?;
        if record.source == Source::Internal && !self.internal.issued(&bundle.chain.leaf()) {
            tracing::warn!(names = %join(names), "stored certificate is from an earlier internal CA root; issuing from the current one");
            return Err(Undecodable::Stale);
        }
        if let Err(e) = bundle.check_serves(names, SystemTime::now()) {
            tracing::warn!(names = %join(names), reason = %e, "stored certificate no longer serves its names; a new one will be obtained");
            return Err(Undecodable::Stale);
        }
        Ok(ServedCert::new(bundle, record.source))
    }
}
