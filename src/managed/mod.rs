//! The owner of managed certificates: `CertManager` is the one writer of certificate
//! records (`records.rs`: their format, tags and sealed keys) and of what sites serve —
//! renewal outcomes (`outcome.rs`), uploads, changed certificate files (handed in by their
//! watcher, `sites/watch.rs`) and certificates adopted from the fleet's store all go
//! through it.
//! What a site serves when it is built (`first_cert.rs`: the stored certificate, read once at
//! start by `preload.rs` before any CA is contacted; an internal one issued on the spot; or
//! nothing yet while its first ACME order runs), the per-site renewal steps (`renewal.rs`),
//! every record's status in memory (`inventory.rs`) and the self-check of every swap
//! (`self_check.rs`). At most one order per set of names is in flight, and orders across
//! all sites are bounded by `acme.max_concurrent_orders`.

mod first_cert;
pub mod inventory;
mod outcome;
mod preload;
mod record_digest;
pub mod records;
mod renewal;
pub mod self_check;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Semaphore;

use crate::certs::ServedCert;
use crate::certs::names::join;
use crate::certs::record::id as cert_id;
use crate::certs::{CertBundle, CertRecord, CertState, HostName, Source};
use crate::config::{AcmeSettings, IssuerKind, SiteConfig};
use crate::issue::acme::AcmeIssuer;
use crate::issue::internal::{CaError, InternalCa};
use crate::issue::{Challenges, IssueError, Issued, Issuer};
use crate::store::{Claim, Store, StoreError};
use first_cert::{Unreadable, record_id};
use preload::Preloaded;
use records::CertRecords;

/// Owns the store, the issuers and the limits on concurrent orders.
pub struct CertManager {
    store: Arc<Store>,
    internal: Arc<InternalCa>,
    acme: Option<Arc<AcmeIssuer>>,
    settings: AcmeSettings,
    orders: Semaphore,
    in_flight: Mutex<HashSet<String>>,
    /// Held while a site is retired and its record deleted, and while an order's outcome is
    /// written: an order that finishes after its site was removed cannot write it back.
    writing: Mutex<()>,
    pub(crate) events: Arc<crate::events::Events>,
    /// Every record's status, in memory (see `inventory.rs`).
    inventory: inventory::Inventory,
    /// The node's one renewal queue (`schedule.rs`).
    scheduler: Arc<crate::schedule::Scheduler<renewal::RenewalJob>>,
    /// Itself, for the jobs it queues.
    me: std::sync::Weak<Self>,
    /// Certificates read from the store at start, by record id, until the first apply takes
    /// them (one read of each record at restart, see [`CertManager::new`]).
    preloaded: Preloaded,
    /// The names of each site whose certificate [`install`](Self::install) swapped in.
    changes: tokio::sync::broadcast::Sender<CertChange>,
}

/// Changes not yet taken by a slow subscriber (a lagging one is told it missed some).
const CHANGES_BACKLOG: usize = 1024;

/// One change to a certificate, as its subscribers (onboarding, the self-check) see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChange {
    pub names: Vec<HostName>,
    pub source: Source,
    /// The record's state after the change (`issued` for an install).
    pub state: CertState,
    pub serial: Option<String>,
    /// A certificate was swapped into the site (not only a state written).
    pub installed: bool,
}

/// Renewal steps running at once (orders are bounded by `acme.max_concurrent_orders`).
const MAX_RENEWAL_STEPS: usize = 256;

/// Why the certificate machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl CertManager {
    /// Takes the opened store and loads the internal CA.
    pub fn new(
        store: impl Into<Arc<Store>>,
        settings: &AcmeSettings,
        local_names: &crate::issue::LocalNames,
        challenges: Arc<Challenges>,
        events: Arc<crate::events::Events>,
    ) -> Result<Arc<Self>, ManagerError> {
        let store = store.into();
        CertRecords::new(&store).migrate()?;
        let internal = Arc::new(InternalCa::load_or_create(&store, local_names)?);
        let acme = settings.directory.clone().map(|directory| {
            Arc::new(AcmeIssuer::new(
                settings.clone(),
                directory,
                store.clone(),
                challenges,
            ))
        });
        let manager = Arc::new_cyclic(|me| Self {
            store,
            internal,
            acme,
            orders: Semaphore::new(settings.max_concurrent_orders),
            in_flight: Mutex::new(HashSet::new()),
            writing: Mutex::new(()),
            settings: settings.clone(),
            events,
            scheduler: Arc::new(crate::schedule::Scheduler::new(MAX_RENEWAL_STEPS)),
            me: me.clone(),
            inventory: inventory::Inventory::default(),
            preloaded: Preloaded::default(),
            changes: tokio::sync::broadcast::channel(CHANGES_BACKLOG).0,
        });
        manager.preload();
        Ok(manager)
    }

    /// Puts `served` in service for `site` and tells the subscribers
    /// ([`changes`](Self::changes)): every certificate the edge issues, renews, adopts from
    /// the store, takes by upload or finds in changed certificate files goes in through here.
    pub fn install(&self, site: &crate::sites::Site, served: ServedCert) {
        let change = CertChange {
            names: site.hosts().to_vec(),
            source: served.source,
            state: CertState::Issued,
            serial: Some(served.bundle.info.serial.clone()),
            installed: true,
        };
        site.replace_cert(served);
        let _ = self.changes.send(change);
    }

    /// Every change to a certificate from now on: what was swapped in, and every state a
    /// record enters (stored here, or by another node of the fleet).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<CertChange> {
        self.changes.subscribe()
    }

    /// Tells the subscribers that the record for `names` is now `record`.
    fn announce_state(&self, names: Vec<HostName>, record: &CertRecord) {
        let _ = self.changes.send(CertChange {
            names,
            source: record.source,
            state: record.state,
            serial: record.serial.clone(),
            installed: false,
        });
    }

    /// Drops the preloaded certificates no site took (records of names no longer served).
    pub fn preload_done(&self) {
        self.preloaded.clear();
    }

    /// Starts `site`'s renewal work (its first step runs as soon as the queue runs).
    pub fn schedule(&self, site: Arc<crate::sites::Site>) {
        self.scheduler.add(self.renewal_job(site));
    }

    /// [`schedule`](Self::schedule) for many sites at once (one lock, one wake-up).
    /// Each site's first step runs when it can have something to do
    /// ([`renewal::first_step_at`]): a start does not run a million steps at once.
    pub fn schedule_many(&self, sites: Vec<Arc<crate::sites::Site>>) {
        let now = SystemTime::now();
        let jobs = crate::parallel::map_on_every_core(sites, |site| {
            let at = renewal::first_step_at(self, &site, now);
            (self.renewal_job(site), at)
        });
        self.scheduler.add_many_at(jobs);
    }

    fn renewal_job(&self, site: Arc<crate::sites::Site>) -> renewal::RenewalJob {
        renewal::RenewalJob {
            manager: self.me.clone(),
            site,
            state: tokio::sync::Mutex::new(renewal::RenewalState::default()),
        }
    }

    /// Stops `site`'s renewal work (retired).
    pub fn unschedule(&self, site: &Arc<crate::sites::Site>) {
        self.scheduler.remove(&(Arc::as_ptr(site) as usize));
    }

    /// Renews `site`'s certificate now, whatever its window says.
    pub fn force_renewal(&self, site: &Arc<crate::sites::Site>) {
        site.force_renewal();
        self.scheduler.wake(&(Arc::as_ptr(site) as usize));
    }

    /// Runs the renewal queue until `cancel`.
    pub async fn run_scheduler(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        self.scheduler.clone().run(cancel).await;
    }

    /// The ACME issuer, when `[acme] directory` is set.
    pub fn acme(&self) -> Option<&Arc<AcmeIssuer>> {
        self.acme.as_ref()
    }

    pub fn internal_ca(&self) -> &InternalCa {
        &self.internal
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The certificate records in the store.
    pub fn records(&self) -> CertRecords<'_> {
        CertRecords::new(&self.store)
    }

    /// Retires `site` (its renewal stops) and deletes its record and sealed key: the site is
    /// gone from the config or the registry and no other site has the same names.
    pub fn forget(&self, site: &Arc<crate::sites::Site>) {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        site.retire();
        self.unschedule(site);
        if let Some(acme) = &self.acme {
            // A renewal that waited behind a CA limit no longer keeps orders from new sites.
            acme.ledger().forget_waiting(&cert_id(site.hosts()));
        }
        match self.records().remove(site.hosts()) {
            Ok(()) => {
                self.inventory.note_absent(cert_id(site.hosts()));
                tracing::info!(
                    site = site.name(),
                    "site removed: its certificate record and key are deleted"
                );
            }
            Err(e) => {
                tracing::error!(site = site.name(), error = %e, "cannot delete the removed site's certificate record")
            }
        }
    }

    /// Stores an uploaded certificate (its key sealed) as `site`'s record and puts it in
    /// service; `Ok(false)`, with nothing written, when the site was removed meanwhile. The
    /// caller checked the chain and key (they parse, match, are valid now and cover the
    /// site's names).
    pub fn install_upload(
        &self,
        site: &crate::sites::Site,
        chain_pem: String,
        key: &crate::certs::PlainKey,
        bundle: CertBundle,
    ) -> Result<bool, StoreError> {
        let names = site.hosts();
        let sealed = self.records().seal_key(names, key.as_der().secret_der())?;
        let mut record = CertRecord::pending(names, Source::Uploaded);
        record.set_issued(chain_pem, sealed, &bundle.info);
        let written = self.while_current(site, || -> Result<(), StoreError> {
            self.records().save(names, &record)?;
            self.inventory.note(cert_id(names), &record);
            Ok(())
        });
        let Some(written) = written else {
            return Ok(false);
        };
        written?;
        self.install(site, ServedCert::new(bundle, Source::Uploaded));
        Ok(true)
    }

    /// Runs `write` unless `site` was retired (atomically with [`forget`](Self::forget)).
    fn while_current<T>(&self, site: &crate::sites::Site, write: impl FnOnce() -> T) -> Option<T> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (!site.is_retired()).then(write)
    }

    /// The state of the managed certificate record for `names`, if any: from memory, read
    /// from the store only the first time.
    pub fn status(&self, names: &[HostName]) -> Option<Arc<inventory::RecordStatus>> {
        let id = cert_id(names);
        if let Some(known) = self.inventory.get(&id) {
            return known;
        }
        let _ = self.load_record(names);
        self.inventory.get(&id).flatten()
    }

    /// The lifecycle state of `site`'s certificate at `now`, and where the certificate in
    /// service came from (`None` while nothing is served): the one answer the API, the
    /// console and `/metrics` give. A record of the served certificate's own source says
    /// it (failed, replaced…); otherwise its dates and the renewal window do.
    pub fn state(
        &self,
        site: &crate::sites::Site,
        record: Option<&inventory::RecordStatus>,
        now: SystemTime,
    ) -> (CertState, Option<Source>) {
        let Some(cert) = site.served_cert() else {
            return (
                record.map_or(CertState::Pending, |r| r.state),
                record.map(|r| r.source),
            );
        };
        let info = &cert.bundle.info;
        let state = match record {
            Some(r) if r.source == cert.source && r.state != CertState::Pending => r.state,
            _ => state_at(
                info.not_after,
                crate::certs::window::window_start(
                    info.not_before,
                    info.not_after,
                    self.settings.renew_before,
                ),
                now,
            ),
        };
        (state, Some(cert.source))
    }

    /// Takes in a record stored by someone else (another node, the upload handler).
    pub fn note_stored(&self, record: &CertRecord) {
        // Only a state that changed is announced: a fleet's watch replays every record when
        // it (re)starts, and most say what this node already holds.
        let changed = record_id(record).is_some_and(|id| self.inventory.note(id, record));
        if changed && let Some(names) = first_cert::record_names(record) {
            self.announce_state(names, record);
        }
    }

    /// Takes in that the record `id` is gone from the store.
    pub fn note_removed(&self, id: &str) {
        self.inventory.note_absent(id.to_owned());
    }

    fn issuer_for(&self, site: &SiteConfig) -> Option<&dyn Issuer> {
        match site.issuer {
            IssuerKind::Internal => Some(self.internal.as_ref()),
            IssuerKind::Acme => self.acme.as_deref().map(|a| a as &dyn Issuer),
        }
    }

    /// Seals the key and stores the record of a newly issued certificate (only while
    /// `claim` holds).
    fn record_issued(
        &self,
        claim: &Claim,
        names: &[HostName],
        mut record: CertRecord,
        issued: &Issued,
    ) -> Result<(), StoreError> {
        let sealed = self.records().seal_key(names, &issued.key_der)?;
        record.set_issued(issued.chain_pem.clone(), sealed, &issued.bundle.info);
        tracing::debug!(names = %join(names), serial = %issued.bundle.info.serial, "storing the certificate");
        self.records().save_claimed(claim, names, &record)?;
        self.inventory.note(cert_id(names), &record);
        Ok(())
    }

    /// Serves the certificate the store holds for `site` when it is newer than the one in
    /// service (another node of the fleet issued or renewed it). Whether it did.
    pub fn adopt_stored(&self, site: &crate::sites::Site) -> bool {
        match self.records().load(site.hosts()) {
            Ok(Some(record)) => self.adopt(site, &record),
            _ => false,
        }
    }

    /// Serves `record`'s certificate in `site` if it is a different one than in service,
    /// not older, and usable (its key opens and matches). Whether it did.
    pub fn adopt(&self, site: &crate::sites::Site, record: &CertRecord) -> bool {
        if record.chain_pem.is_none() || site.is_retired() {
            return false;
        }
        let current = site.served_cert();
        if let Some(current) = &current {
            let info = &current.bundle.info;
            let same = record.serial.as_deref() == Some(info.serial.as_str());
            let older = record
                .not_before
                .is_some_and(|nb| nb < crate::certs::record::unix(info.not_before));
            if same || older || current.source == Source::Uploaded {
                return false;
            }
        }
        match self.servable(record, site.hosts()) {
            Ok(served) => {
                tracing::info!(
                    site = site.name(),
                    serial = %served.bundle.info.serial,
                    event = "adopted",
                    "certificate from the store swapped in"
                );
                self.install(site, served);
                true
            }
            Err(_) => false,
        }
    }

    /// Updates the stored state of `names` (a record is created if there is none).
    fn set_state(&self, names: &[HostName], source: Source, update: impl FnOnce(&mut CertRecord)) {
        self.set_state_claimed(&Claim::Local, names, source, update);
    }

    /// [`set_state`](Self::set_state) written only while `claim` holds.
    fn set_state_claimed(
        &self,
        claim: &Claim,
        names: &[HostName],
        source: Source,
        update: impl FnOnce(&mut CertRecord),
    ) {
        let mut record = match self.load_record(names) {
            Ok(Some(record)) => record,
            Ok(None) | Err(Unreadable::Rejected(_)) => CertRecord::pending(names, source),
            Err(Unreadable::Unavailable(reason)) => {
                // Never write a fresh record over one that could not be read.
                tracing::warn!(names = %join(names), reason, "the certificate state is not updated: the store is unavailable");
                return;
            }
        };
        update(&mut record);
        record.updated = crate::certs::record::unix(SystemTime::now());
        match self.records().save_claimed(claim, names, &record) {
            Ok(()) => {
                self.inventory.note(cert_id(names), &record);
                self.announce_state(names.to_vec(), &record);
            }
            Err(e) => {
                tracing::error!(names = %join(names), error = %e, "cannot store the certificate state")
            }
        }
    }

    /// Runs one issuance for `names` with `issuer`, holding the per-names slot and (for
    /// ACME) an order permit. `None` when another order for the same names is in flight.
    async fn issue_once(
        &self,
        names: &[HostName],
        issuer: &dyn Issuer,
        renewal: bool,
    ) -> Option<Result<Issued, IssueError>> {
        let id = cert_id(names);
        {
            let mut in_flight = self.in_flight.lock().ok()?;
            if !in_flight.insert(id.clone()) {
                return None;
            }
        }
        let _slot = InFlight {
            set: &self.in_flight,
            id,
        };
        let _permit = match issuer.source() {
            Source::Acme => Some(self.orders.acquire().await.ok()?),
            _ => None,
        };
        let result = issuer.issue(names, self.settings.key_type, renewal).await;
        if result.as_ref().is_err_and(|e| e.held().is_some()) {
            crate::stats::bump(&crate::stats::STATS.issuance_held);
            return Some(result);
        }
        crate::stats::bump(&crate::stats::STATS.issuance_attempts);
        if result.is_err() {
            crate::stats::bump(&crate::stats::STATS.issuance_failures);
        }
        Some(result)
    }
}

/// Frees a names slot when the order ends, however it ends.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.id);
        }
    }
}

/// The state a served certificate is in at `now`, given its renewal moment.
fn state_at(not_after: SystemTime, renew_at: SystemTime, now: SystemTime) -> CertState {
    if now >= not_after {
        CertState::Expired
    } else if now >= renew_at {
        CertState::Expiring
    } else {
        CertState::Issued
    }
}

#[cfg(test)]
mod tests;
