//! Managed certificates, and the one writer of certificate records and of what sites serve
//! (renewal outcomes, uploads, certificates adopted from the fleet's store all go through
//! `CertManager`; only configured sites' certificate files are swapped by their watcher):
//! what a site serves at start (the stored certificate, loaded before
//! any CA is contacted; an internal one issued on the spot; or nothing yet while its first
//! ACME order runs), and the per-site renewal task (`renewal.rs`) that obtains, renews and
//! takes over expiring uploads. At most one order per set of names is in flight, and orders
//! across all sites are bounded by `acme.max_concurrent_orders`.

pub mod inventory;
mod outcome;
mod record_digest;
pub mod records;
mod renewal;
pub mod self_check;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls_pki_types::PrivateKeyDer;
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
    installed: tokio::sync::broadcast::Sender<Vec<HostName>>,
}

/// Installs not yet taken by a slow subscriber (a lagging one is told it missed some).
const INSTALLED_BACKLOG: usize = 1024;

/// The certificates read at start, waiting for their sites: one map by record id, built
/// once the scan is done (sized once, never rehashed), each certificate taken once by the
/// thread that builds its site — a lookup is one probe, where the build's order (by site)
/// would make a search of the scan's order (by record) miss the cache at every step.
#[derive(Default)]
struct Preloaded {
    by_id: std::sync::RwLock<PreloadedMap>,
}

type PreloadedMap = HashMap<String, Mutex<Option<Arc<ServedCert>>>, foldhash::fast::RandomState>;

/// A record read at start: its id, its status (for the inventory) and, when it can be
/// served as it is, its certificate.
type ReadRecord = (
    String,
    Arc<inventory::RecordStatus>,
    Option<Arc<ServedCert>>,
);

impl Preloaded {
    /// Puts the servable certificates of `read` in place of what was there.
    fn set(&self, read: Vec<ReadRecord>) {
        let mut map = PreloadedMap::with_capacity_and_hasher(
            read.iter()
                .filter(|(_, _, served)| served.is_some())
                .count(),
            foldhash::fast::RandomState::default(),
        );
        map.extend(
            read.into_iter()
                .filter_map(|(id, _, served)| Some((id, Mutex::new(Some(served?))))),
        );
        *self.by_id.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    fn remove(&self, id: &str) -> Option<Arc<ServedCert>> {
        let map = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        map.get(id)?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn len(&self) -> usize {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn clear(&self) {
        *self.by_id.write().unwrap_or_else(|e| e.into_inner()) = PreloadedMap::default();
    }
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
            installed: tokio::sync::broadcast::channel(INSTALLED_BACKLOG).0,
        });
        manager.preload();
        Ok(manager)
    }

    /// Reads every stored record once, on every core: its status goes into the inventory,
    /// and a certificate that can be served as it is waits in `preloaded` for its site. A bad
    /// record is left for [`initial_cert`](Self::initial_cert) to report and set aside.
    fn preload(&self) {
        let started = std::time::Instant::now();
        let (read, failure) = self.store.scan_map(
            records::CERTS_DIR,
            records::RECORD_SUFFIX,
            |key, bytes| {
            let records::LoadedCert { id, names, record } =
                match self.records().parse_at(key, bytes) {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        tracing::error!(error = %e, "an unreadable certificate record; its site will report it");
                        return None;
                    }
                };
            let status = Arc::new(inventory::RecordStatus::from(&record));
            let served = self.servable_trusted(&record, &names, &id).ok().map(Arc::new);
            Some((id, status, served))
        });
        let read: Vec<ReadRecord> = read.into_iter().flatten().collect();
        self.inventory.note_all(
            read.iter()
                .map(|(id, status, _)| (id.clone(), status.clone())),
        );
        self.preloaded.set(read);
        if let Some(e) = failure {
            tracing::error!(error = %e, "cannot read every certificate record; the rest are read per site");
        }
        tracing::info!(
            certificates = self.preloaded.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "certificates read from the store"
        );
    }

    /// Puts `served` in service for `site` and tells the subscribers
    /// ([`installs`](Self::installs)): every certificate the edge issues, renews, adopts from
    /// the store or takes by upload goes in through here. (Certificate files of configured
    /// sites are swapped by their watcher, `sites/watch.rs`: no registered site has files.)
    pub fn install(&self, site: &crate::sites::Site, served: ServedCert) {
        site.replace_cert(served);
        self.announce_swap(site);
    }

    /// Tells the subscribers (onboarding, the self-check) that `site` serves a new
    /// certificate: [`install`](Self::install) does, and so does the file watcher.
    pub fn announce_swap(&self, site: &crate::sites::Site) {
        let _ = self.installed.send(site.hosts().to_vec());
    }

    /// The names of each site whose certificate is installed from now on.
    pub fn installs(&self) -> tokio::sync::broadcast::Receiver<Vec<HostName>> {
        self.installed.subscribe()
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
        if let Some(id) = record_id(record) {
            self.inventory.note(id, record);
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
    fn first_cert(&self, site: &SiteConfig) -> Option<ServedCert> {
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
    fn load_record(&self, names: &[HostName]) -> Result<Option<CertRecord>, Unreadable> {
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
    fn reject(&self, path: Option<&std::path::Path>, reason: &str) -> String {
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
    fn servable(&self, record: &CertRecord, names: &[HostName]) -> Result<ServedCert, Unservable> {
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
    fn servable_trusted(
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
            Ok(()) => self.inventory.note(cert_id(names), &record),
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

/// The id of `record`'s slot, from its names.
fn record_id(record: &CertRecord) -> Option<String> {
    record_names(record).map(|names| cert_id(&names))
}

/// The names of a record, parsed.
fn record_names(record: &CertRecord) -> Option<Vec<HostName>> {
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
fn recorded_info(record: &CertRecord) -> Option<crate::certs::CertInfo> {
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
enum Undecodable {
    /// Nothing issued yet, expired, or from an earlier internal root.
    Stale,
    /// What is wrong with it.
    Bad(String),
}

/// Why a record could not be read.
enum Unreadable {
    /// The store did not answer: the record may be fine.
    Unavailable(String),
    /// It is bad and was set aside; the reason as the API shows it.
    Rejected(String),
}

/// Why a stored record is not served.
enum Unservable {
    /// It was fine but no longer fits (expired, names changed, nothing issued yet).
    Stale,
    /// It is bad (key does not open or match): set aside, with the reason.
    Bad(String),
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

impl CertManager {
    fn log_issued(&self, names: &[HostName], source: Source, issued: &Issued, renewal: bool) {
        let info = &issued.bundle.info;
        self.events.record(
            if renewal {
                crate::events::EventKind::CertificateRenewed
            } else {
                crate::events::EventKind::CertificateIssued
            },
            &join(names),
            format!(
                "{source} certificate, serial {}, valid until {}",
                info.serial,
                humantime::format_rfc3339_seconds(info.not_after)
            ),
        );
        log_issued(names, source, info, renewal);
    }
}

fn log_issued(names: &[HostName], source: Source, info: &crate::certs::CertInfo, renewal: bool) {
    tracing::info!(
        names = %join(names),
        %source,
        serial = %info.serial,
        not_after = %humantime::format_rfc3339_seconds(info.not_after),
        event = if renewal { "renewed" } else { "issued" },
        "{}",
        if renewal { "certificate renewed" } else { "certificate issued" }
    );
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
mod tests {
    use super::*;

    /// A manager on a fresh fs store and its one site, `app.localhost`, served by the
    /// internal CA (renewal window: `acme.renew_before`, 30 days by default).
    fn manager_and_site() -> (tempfile::TempDir, Arc<CertManager>, crate::sites::Site) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse(
            "[[site]]\nhost = \"app.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n",
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        let store = Store::open_with(
            &crate::config::StorageSettings::Fs,
            &dir.path().join("data"),
        )
        .unwrap();
        let manager = CertManager::new(
            store,
            &config.acme,
            &config.internal_names,
            Arc::new(Challenges::default()),
            Arc::new(crate::events::Events::default()),
        )
        .unwrap();
        let site_config = config.sites[0].clone();
        let first = manager.initial_cert(&site_config);
        let site = crate::sites::Site::build(site_config, first, std::time::Duration::from_secs(1));
        (dir, manager, site)
    }

    #[test]
    fn a_certificate_state_comes_from_its_own_record_or_else_from_its_dates() {
        let (_dir, manager, site) = manager_and_site();
        let info = site.served_cert().unwrap().bundle.info.clone();
        let record = |source, state| inventory::RecordStatus {
            source,
            state,
            failure: None,
            recovered: None,
            replaced: None,
            queued: None,
        };
        let fresh = info.not_before + std::time::Duration::from_secs(60);
        let internal = Some(Source::Internal);
        assert_eq!(
            manager.state(&site, None, fresh),
            (CertState::Issued, internal)
        );
        // Inside the renewal window, and past the end.
        let late = info.not_after - std::time::Duration::from_secs(3600);
        assert_eq!(
            manager.state(&site, None, late),
            (CertState::Expiring, internal)
        );
        assert_eq!(
            manager.state(&site, None, info.not_after),
            (CertState::Expired, internal)
        );
        // The record of the served certificate says more (a failed renewal)…
        let failed = record(Source::Internal, CertState::Failed);
        assert_eq!(
            manager.state(&site, Some(&failed), fresh),
            (CertState::Failed, internal)
        );
        // …but a record of another source (an order pending for an upload) does not.
        let other = record(Source::Acme, CertState::Failed);
        assert_eq!(
            manager.state(&site, Some(&other), fresh),
            (CertState::Issued, internal)
        );
        let pending = record(Source::Internal, CertState::Pending);
        assert_eq!(
            manager.state(&site, Some(&pending), fresh),
            (CertState::Issued, internal)
        );
        // Nothing served: the record's state, or pending.
        let unserved = crate::sites::Site::build(
            site.config().clone(),
            None,
            std::time::Duration::from_secs(1),
        );
        assert_eq!(
            manager.state(&unserved, None, fresh),
            (CertState::Pending, None)
        );
        assert_eq!(
            manager.state(&unserved, Some(&other), fresh),
            (CertState::Failed, Some(Source::Acme))
        );
    }

    #[test]
    fn a_first_step_is_queued_for_when_it_has_something_to_do() {
        let (_dir, manager, site) = manager_and_site();
        let info = site.served_cert().unwrap().bundle.info.clone();
        let hour = std::time::Duration::from_secs(3600);
        // Just issued: not due for a long time, so the first look comes within the hour,
        // spread by the serial (not all million sites in the same second).
        let fresh = info.not_before;
        let at = renewal::first_step_at(&manager, &site, fresh);
        assert!(at > fresh && at <= fresh + hour, "{at:?}");
        // Due, expired, forced, or nothing served: at once.
        assert_eq!(
            renewal::first_step_at(&manager, &site, info.not_after),
            info.not_after
        );
        let unserved = crate::sites::Site::build(
            site.config().clone(),
            None,
            std::time::Duration::from_secs(1),
        );
        assert_eq!(renewal::first_step_at(&manager, &unserved, fresh), fresh);
        site.force_renewal();
        assert_eq!(renewal::first_step_at(&manager, &site, fresh), fresh);
    }

    #[test]
    fn an_install_serves_the_certificate_and_tells_the_subscribers_whose_it_is() {
        let (_dir, manager, site) = manager_and_site();
        let mut installs = manager.installs();
        let bundle = site.served_cert().unwrap().bundle.clone();
        manager.install(&site, ServedCert::new(bundle, Source::Uploaded));
        assert_eq!(site.served_cert().unwrap().source, Source::Uploaded);
        assert_eq!(installs.try_recv().unwrap(), site.hosts().to_vec());
        assert!(installs.try_recv().is_err(), "one notice per install");
    }

    #[test]
    fn a_record_of_an_issued_certificate_holds_what_parsing_its_leaf_finds() {
        let hosts = ["b.example", "a.example"].map(|h| HostName::parse(h).unwrap());
        let pair = crate::certs::selfsigned::generate(&hosts, 30).unwrap();
        let bundle = CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes());
        let parsed = bundle.unwrap().info;
        let mut record = CertRecord::pending(&hosts, Source::Acme);
        record.set_issued(pair.chain_pem.clone(), "sealed".into(), &parsed);
        let recorded = recorded_info(&record).unwrap();
        assert_eq!(recorded.serial, parsed.serial);
        assert_eq!(recorded.not_before, parsed.not_before);
        assert_eq!(recorded.not_after, parsed.not_after);
        let sorted = |names: &[String]| {
            let mut names = names.to_vec();
            names.sort();
            names
        };
        assert_eq!(sorted(&recorded.names), sorted(&parsed.names));
        // An upload may name more than its site: its leaf is parsed.
        record.source = Source::Uploaded;
        assert!(recorded_info(&record).is_none());
        // Nothing issued yet: nothing to take.
        assert!(recorded_info(&CertRecord::pending(&hosts, Source::Acme)).is_none());
    }
}
