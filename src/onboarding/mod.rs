//! CNAME onboarding: the site registry (`registry.rs`), DNS verification (`dns.rs`), and the
//! per-site steps (a job on the node's queue, `schedule.rs`) that move a site `pending_dns` → `verified` → `issuing` → `active`, watches
//! an active site's DNS (→ `dns_moved`) and opens or closes its issuance gate: a registered
//! site's certificate is only ever requested while its DNS points here (plus a grace period).

pub mod acme_dns;
pub mod dns;
pub mod policy;
pub mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::certs::record::unix;
use crate::certs::window::backoff;
use crate::certs::{CertState, HostName};
use crate::config::{IssuerKind, OnboardingSettings, OriginUrl, SiteConfig};
use crate::events::Events;
use crate::schedule::{Job, JobFuture, Scheduler, Wake};
use crate::sites::gate::Gate;
use crate::store::Claim;
use crate::store::Store;
use crate::tls::SiteTable;
use dns::{DnsChecker, Verdict};
pub use registry::{Hosts, HostsError, Registry, SiteRecord, SiteStatus};

/// Why a site cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("onboarding is off: set [onboarding] cname_zone in the config")]
    Disabled,
    #[error("`{host}` is already served by the site `{owner}`")]
    Taken { host: String, owner: String },
    #[error("`{host}` is inside the edge's own zone `{zone}`")]
    OwnZone { host: String, zone: String },
    #[error("a site needs at least one name")]
    NoHosts,
    #[error("cannot make the site's id: {0}")]
    Id(crate::seal::SealError),
    #[error("cannot store the site")]
    Store(#[source] crate::store::StoreError),
}

/// How often an issuing site looks whether its order failed (an installed certificate
/// wakes it at once: `run_scheduler`).
const ISSUING_POLL: Duration = Duration::from_secs(2);
/// How often a node that does not drive a site (another node of the fleet does) looks
/// whether it should take over.
const FOLLOWER_WAIT: Duration = Duration::from_secs(2);
/// Longest wait of a failed site before it looks again (its retry may come sooner by hand).
const FAILED_POLL_MAX: Duration = Duration::from_secs(30);

/// How often the sites' check bookkeeping (changes that keep a site's status) is stored.
const UNSAVED_FLUSH: Duration = Duration::from_secs(1);

/// The registry and its background work.
pub struct Onboarding {
    settings: OnboardingSettings,
    store: Arc<Store>,
    /// Where an order's outcome is read (from memory, not the store).
    certificates: Arc<crate::managed::CertManager>,
    dns: Option<DnsChecker>,
    events: Arc<Events>,
    sites: Mutex<Registry>,
    gates: Mutex<HashMap<String, Gate>>,
    /// Signalled when the set of sites to serve changed (a site verified, or changed by
    /// another node): the edge publishes the sites in `changes`.
    served_changed: Notify,
    changes: Mutex<ServedChanges>,
    /// Names the internal CA serves: registered sites made only of them use it.
    local_names: crate::issue::LocalNames,
    /// The node's queue of DNS checks, one entry per registered site (`schedule.rs`).
    checks: Arc<Scheduler<SiteCheck>>,
    /// Itself, for the jobs it queues.
    me: Weak<Self>,
}

/// A registered site's DNS checks and status, on the node's queue.
pub struct SiteCheck {
    onboarding: Weak<Onboarding>,
    /// Shared with the queue's two indexes: one allocation per site, not three.
    id: Arc<str>,
    table: Arc<SiteTable>,
    /// This node's claim on driving the site (fleet), kept between steps.
    claim: tokio::sync::Mutex<Option<Claim>>,
}

impl Job for SiteCheck {
    type Key = Arc<str>;

    fn key(&self) -> Arc<str> {
        self.id.clone()
    }

    fn step(self: Arc<Self>, cancel: CancellationToken) -> JobFuture<Wake> {
        Box::pin(async move {
            let Some(onboarding) = self.onboarding.upgrade() else {
                return Wake::Never;
            };
            let mut claim = self.claim.lock().await;
            onboarding
                .check_step(&self.id, &self.table, &mut claim, &cancel)
                .await
        })
    }
}

/// Registered sites whose serving changed since the edge last looked.
#[derive(Debug, Default)]
pub struct ServedChanges {
    /// Everything: republish every site.
    pub all: bool,
    /// Site id → its names.
    pub sites: HashMap<String, Vec<String>>,
}

/// The longest a site's DNS check sleeps past a change of its record nobody woke it for
/// (changes through this node and the fleet's store wake it at once).
const UNTOLD_CHANGE_WAIT: Duration = Duration::from_secs(3600);

/// Moves a site record that does not parse out of the way (kept for inspection, never read
/// again), with an ERROR and a `site.record_rejected` event naming where it is now.
fn set_aside_record(store: &Store, events: &Events, key: &str, error: &serde_json::Error) {
    let path = store.path_of(key);
    let kept = store.set_aside(&path);
    let kept_at = kept.as_deref().unwrap_or(&path).display().to_string();
    tracing::error!(path = %path.display(), kept = %kept_at, error = %error, "set aside an unreadable site record");
    events.record(
        crate::events::EventKind::SiteRecordRejected,
        key,
        format!("unreadable site record ({error}); kept at {kept_at}"),
    );
}

/// DNS check steps running at once.
const MAX_CHECK_STEPS: usize = 64;

impl Onboarding {
    /// Loads the registry from the store (corrupt entries are reported and set aside).
    pub fn new(
        settings: OnboardingSettings,
        local_names: crate::issue::LocalNames,
        certificates: Arc<crate::managed::CertManager>,
        events: Arc<Events>,
    ) -> Arc<Self> {
        let registry = Self::read_registry(certificates.store(), &events);
        Self::with_registry(settings, local_names, certificates, events, registry)
    }

    /// Every registered site in `store` (corrupt records are reported and skipped). A start
    /// reads it beside the certificate records (`edge::Edge::build`).
    pub fn read_registry(store: &Store, events: &Events) -> Registry {
        let started = std::time::Instant::now();
        let (records, failure) = store.scan_map("sites", ".json", |key, bytes| {
            serde_json::from_slice::<SiteRecord>(bytes)
                .map_err(|e| set_aside_record(store, events, key, &e))
                .ok()
        });
        if let Some(e) = failure {
            tracing::error!(error = %e, "cannot read every site record");
        }
        let registry = Registry::from_records(records.into_iter().flatten());
        tracing::info!(
            sites = registry.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "registered sites read from the store"
        );
        registry
    }

    /// Onboarding over `registry`, as [`read_registry`](Self::read_registry) read it.
    pub fn with_registry(
        settings: OnboardingSettings,
        local_names: crate::issue::LocalNames,
        certificates: Arc<crate::managed::CertManager>,
        events: Arc<Events>,
        registry: Registry,
    ) -> Arc<Self> {
        let store = certificates.store().clone();
        let dns = settings.cname_zone.as_ref().and_then(|_| {
            DnsChecker::new(&settings.nameservers)
                .map_err(|e| tracing::error!(error = %e, "onboarding DNS checks are off"))
                .ok()
        });
        let sites = Mutex::new(registry);
        Arc::new_cyclic(|me| Self {
            settings,
            store,
            certificates,
            dns,
            events,
            sites,
            gates: Mutex::new(HashMap::new()),
            served_changed: Notify::new(),
            changes: Mutex::new(ServedChanges::default()),
            local_names,
            checks: Arc::new(Scheduler::new(MAX_CHECK_STEPS)),
            me: me.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many registered sites are in each status (under the lock, no record copied: a
    /// `/metrics` scrape at a million sites).
    pub fn count_by_status(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for record in self.lock().values() {
            *counts.entry(record.status.to_string()).or_default() += 1;
        }
        counts
    }

    /// Up to `limit` registered sites in id order, after the site `after` (from the first
    /// when `None`), and how many sites there are.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<SiteRecord>, usize) {
        use std::ops::Bound;
        let sites = self.lock();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let page = sites
            .range::<str, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, record)| record.clone())
            .collect();
        (page, sites.len())
    }

    /// How many sites are registered.
    pub fn site_count(&self) -> usize {
        self.lock().len()
    }

    /// Like [`page`](Self::page), of the sites `keep` accepts, and how many it accepts
    /// (one pass over every site, under the lock).
    pub fn page_matching(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&SiteRecord) -> bool,
    ) -> (Vec<SiteRecord>, usize) {
        let sites = self.lock();
        let mut page = Vec::new();
        let mut matching = 0;
        for (id, record) in sites.iter() {
            if !keep(record) {
                continue;
            }
            matching += 1;
            if page.len() < limit && after.is_none_or(|after| id.as_str() > after) {
                page.push(record.clone());
            }
        }
        (page, matching)
    }

    /// The site one of whose names is `host`.
    pub fn find(&self, host: &str) -> Option<SiteRecord> {
        self.lock().by_name(host).cloned()
    }

    pub fn get(&self, id: &str) -> Option<SiteRecord> {
        self.lock().get(id).cloned()
    }

    /// Registers a site (hosts and origins already validated); `owner` names the site that
    /// already serves a name, exactly or through a wildcard (configured, uploaded or
    /// registered and verified). Names in the edge's own zone and names of other registered
    /// sites (verified or not) are refused too.
    pub fn add(
        &self,
        hosts: &[HostName],
        origins: &[OriginUrl],
        owner: impl Fn(&HostName) -> Option<String>,
    ) -> Result<SiteRecord, AddError> {
        let zone = self
            .settings
            .cname_zone
            .as_ref()
            .ok_or(AddError::Disabled)?;
        let mut sites = self.lock();
        for host in hosts {
            if policy::in_zone(host, zone) {
                return Err(AddError::OwnZone {
                    host: host.to_string(),
                    zone: zone.to_string(),
                });
            }
            let registered = sites
                .by_name(host.as_str())
                .map(|s| s.hosts.primary().to_owned());
            if let Some(owner) = registered.or_else(|| owner(host)) {
                return Err(AddError::Taken {
                    host: host.to_string(),
                    owner,
                });
            }
        }
        let record = SiteRecord::new(
            Hosts::of(hosts).ok_or(AddError::NoHosts)?,
            origins.iter().map(ToString::to_string).collect(),
            zone.as_str(),
        )
        .map_err(AddError::Id)?;
        self.store
            .save_json(&SiteRecord::path(&record.id), &record)
            .map_err(AddError::Store)?;
        sites.insert(record.clone());
        drop(sites);
        self.events.record(
            crate::events::EventKind::SiteAdded,
            record.hosts.primary(),
            format!("point the name at {}", record.cname_target),
        );
        Ok(record)
    }

    /// Waits until the set of sites to serve changed, then takes what changed.
    pub async fn served_changed(&self) -> ServedChanges {
        self.served_changed.notified().await;
        std::mem::take(&mut *self.lock_changes())
    }

    /// Makes the edge publish registered site `id` (whose names are `hosts`) anew.
    pub fn notify_served_changed(&self, id: &str, hosts: &[String]) {
        self.lock_changes()
            .sites
            .insert(id.to_owned(), hosts.to_vec());
        self.served_changed.notify_one();
    }

    /// Makes the edge republish every site (the whole registry was read again).
    pub fn notify_all_served_changed(&self) {
        self.lock_changes().all = true;
        self.served_changed.notify_one();
    }

    fn lock_changes(&self) -> std::sync::MutexGuard<'_, ServedChanges> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes in a record another node stored; whether the sites to serve may have changed.
    pub fn sync(&self, record: SiteRecord) -> bool {
        let open = gate_open(&record, &self.settings, SystemTime::now());
        let id = record.id.clone();
        let previous = self.lock().insert(record.clone());
        self.set_gate(&id, open);
        if previous
            .as_ref()
            .is_some_and(|old| old.next_check != record.next_check || old.status != record.status)
        {
            // Its next check moved: the queue looks again (a step that is not due yet only
            // reads the new time).
            self.checks.wake(&Arc::from(id.as_str()));
        }
        previous.is_none_or(|old| {
            old.hosts != record.hosts
                || old.origins != record.origins
                || (old.status == SiteStatus::PendingDns)
                    != (record.status == SiteStatus::PendingDns)
        })
    }

    /// Forgets a site another node removed; its record, if it was known here.
    pub fn sync_removed(&self, id: &str) -> Option<SiteRecord> {
        let removed = self.lock().remove(id);
        if let Ok(mut gates) = self.gates.lock() {
            gates.remove(id);
        }
        removed
    }

    /// Takes in the whole registry as stored (after a watch started or was interrupted).
    pub fn sync_all(&self, records: Vec<SiteRecord>) -> bool {
        let ids: std::collections::HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        let mut changed = false;
        for record in records {
            changed |= self.sync(record);
        }
        let gone: Vec<String> = self
            .lock()
            .keys()
            .filter(|id| !ids.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            changed |= self.sync_removed(&id).is_some();
        }
        changed
    }

    /// Names of registered sites that `hosts` would take: the same name, or a wildcard of
    /// `hosts` covering a registered name. Config sites must not overlap registered ones.
    pub fn overlaps<'a>(&self, hosts: impl Iterator<Item = &'a HostName>) -> Vec<String> {
        let mut hosts = hosts.peekable();
        if hosts.peek().is_none() {
            // No configured site: nothing to compare the registry with.
            return Vec::new();
        }
        let sites = self.lock();
        // One pass over the registry: name → owner, and parent → owners (what a wildcard
        // of the config would cover), so a reload stays linear in the number of sites.
        let mut exact: HashMap<&str, &str> = HashMap::new();
        let mut by_parent: HashMap<&str, Vec<&str>> = HashMap::new();
        for record in sites.values() {
            for name in &record.hosts {
                exact.insert(name, record.hosts.primary());
                if let Some(parent) = crate::certs::names::parent_of(name) {
                    by_parent
                        .entry(parent)
                        .or_default()
                        .push(record.hosts.primary());
                }
            }
        }
        let mut found = Vec::new();
        for host in hosts {
            let mut owners: Vec<&str> = match host.wildcard_suffix() {
                Some(suffix) => by_parent.get(suffix).cloned().unwrap_or_default(),
                None => exact.get(host.as_str()).copied().into_iter().collect(),
            };
            owners.dedup();
            for owner in owners {
                found.push(format!("`{host}` (registered site `{owner}`)"));
            }
        }
        found
    }

    /// Forgets a site; its renewal stops when the edge republishes without it. Nothing
    /// changes when the store cannot delete its record.
    pub fn remove(&self, id: &str) -> Result<Option<SiteRecord>, crate::store::StoreError> {
        let mut sites = self.lock();
        if !sites.contains_key(id) {
            return Ok(None);
        }
        self.store.remove(&SiteRecord::path(id))?;
        let Some(record) = sites.remove(id) else {
            return Ok(None);
        };
        drop(sites);
        if let Ok(mut gates) = self.gates.lock() {
            gates.remove(id);
        }
        self.events.record(
            crate::events::EventKind::SiteRemoved,
            record.hosts.primary(),
            "site removed",
        );
        Ok(Some(record))
    }

    /// Every registered site whose DNS has been verified, as a site definition with its
    /// issuance gate. A site still waiting for its DNS is not served at all: it receives no
    /// traffic and changes how no name is answered.
    pub fn site_configs(&self, hsts: Option<&String>) -> Vec<(SiteConfig, Gate)> {
        // Under the registry's lock, without copying the records: a restart builds a million
        // definitions here (or beforehand, `Definitions::of`). Gates a site already has are
        // reused; new ones are made alongside and kept afterwards.
        let sites = self.lock();
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Definitions::build(&sites, &self.settings, &self.local_names, hsts, &gates)
            .keeping_gates_in(&mut gates)
    }

    /// The definitions [`Definitions::of`] made of this node's registry before it was handed
    /// to [`with_registry`](Self::with_registry) (nothing changed it since): their gates are
    /// kept as this node's.
    pub fn adopt(&self, definitions: Definitions) -> Vec<(SiteConfig, Gate)> {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        definitions.keeping_gates_in(&mut gates)
    }

    /// The site definition of registered site `id` with its issuance gate; `None` when it is
    /// not served (unknown, removed, or waiting for its DNS).
    pub fn site_config(&self, id: &str, hsts: Option<&String>) -> Option<(SiteConfig, Gate)> {
        let sites = self.lock();
        let record = sites.get(id)?;
        let config = served_definition(&self.local_names, record, hsts)?;
        let open = gate_open(record, &self.settings, SystemTime::now());
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gate = gates
            .entry(record.id.clone())
            .or_insert_with(|| Gate::new(open));
        gate.set(open);
        Some((config, gate.clone()))
    }

    /// Changes site `id`'s record. A new status is stored at once (one commit, durable when
    /// this returns); a change that keeps the status — when to check next, the check
    /// counter, the reason's wording — is bookkeeping, stored with the others by the next
    /// [`store_unsaved`](Self::store_unsaved) (within [`UNSAVED_FLUSH`]): a million active
    /// sites' periodic DNS checks then cost a commit a second, not one each, and a
    /// registration does not queue behind them. A crash loses at most that second of
    /// bookkeeping (those sites are checked again sooner).
    fn update(&self, id: &str, change: impl FnOnce(&mut SiteRecord)) -> Option<SiteRecord> {
        let mut sites = self.lock();
        let record = sites.get_mut(id)?;
        let status = record.status;
        change(record);
        let record = record.clone();
        if record.status == status {
            sites.mark_unsaved(id);
        } else {
            if let Err(e) = self.store.save_json(&SiteRecord::path(id), &record) {
                tracing::error!(site = %record.hosts.primary(), error = %e, "cannot store the site status");
            }
            sites.mark_saved(id);
        }
        Some(record)
    }

    /// Stores, in one write, every record changed in memory only since the last time. Under
    /// the registry's lock, so no newer change of a record can be overwritten by this one.
    pub fn store_unsaved(&self) {
        let mut sites = self.lock();
        let ids = sites.take_unsaved();
        if ids.is_empty() {
            return;
        }
        let entries: Vec<(String, Vec<u8>)> = ids
            .iter()
            .filter_map(|id| {
                let record = sites.get(id)?;
                self.store
                    .encode_json(&SiteRecord::path(id), record)
                    .map_err(|e| tracing::error!(site = %record.hosts.primary(), error = %e, "cannot encode the site status"))
                    .ok()
            })
            .collect();
        if let Err(e) = self.store.put_many(&entries) {
            tracing::warn!(sites = entries.len(), error = %e, "cannot store the sites' check bookkeeping; will retry");
            for id in &ids {
                sites.mark_unsaved(id);
            }
        }
    }

    fn set_gate(&self, id: &str, open: bool) {
        if let Ok(gates) = self.gates.lock()
            && let Some(gate) = gates.get(id)
        {
            gate.set(open);
        }
    }

    /// What DNS says about every name of `record`: verified only if all are.
    async fn verify(&self, record: &SiteRecord) -> Verdict {
        let Some(dns) = &self.dns else {
            return Verdict::Unavailable {
                reason: "no DNS resolver".into(),
            };
        };
        // A wildcard is proven by its DNS-01 delegation (no record of a wildcard name can be
        // looked up); traffic for it follows the owner's wildcard CNAME.
        if let Some((name, target)) = self.dns01_record(record) {
            return dns.check_cname(&name, &target).await;
        }
        for host in &record.hosts {
            let mut verdict = dns.check_cname(host, &record.cname_target).await;
            if verdict == Verdict::Missing && !self.settings.edge_addresses.is_empty() {
                let delegation = self.delegation_target(record);
                verdict = dns
                    .check_apex(
                        host,
                        &self.settings.edge_addresses,
                        &record.txt_token,
                        delegation.as_deref(),
                    )
                    .await;
            }
            if verdict != Verdict::Verified {
                return verdict;
            }
        }
        Verdict::Verified
    }

    /// Whether this edge answers DNS-01 (`acme_zone` is set): wildcard sites can be added.
    pub fn answers_dns01(&self) -> bool {
        self.settings.acme_zone.is_some()
    }

    /// Where a site's `_acme-challenge` CNAMEs point when the edge answers DNS-01:
    /// `<site-id>.<acme_zone>`.
    pub fn delegation_target(&self, record: &SiteRecord) -> Option<String> {
        let zone = self.settings.acme_zone.as_ref()?;
        Some(format!("{}.{zone}", record.id))
    }

    /// For a site with a wildcard name: the record its owner creates so that the edge answers
    /// its DNS-01 challenges, `_acme-challenge.<base> CNAME <site-id>.<acme_zone>`.
    pub fn dns01_record(&self, record: &SiteRecord) -> Option<(String, String)> {
        let base = record.hosts.iter().find_map(|h| h.strip_prefix("*."))?;
        Some((
            format!("_acme-challenge.{base}"),
            self.delegation_target(record)?,
        ))
    }

    /// The DNS-01 values to serve at `<id>.<acme_zone>`: those of the orders in flight for
    /// the names of the site `id`.
    pub fn dns01_values(&self, id: &str, challenges: &crate::issue::Challenges) -> Vec<String> {
        let Some(record) = self.lock().get(id).map(|r| r.hosts.clone()) else {
            return Vec::new();
        };
        let mut values: Vec<String> = record
            .iter()
            .flat_map(|host| challenges.dns01(host.trim_start_matches("*.")))
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// Starts the DNS checks of the registered site `id` (a site already queued stays).
    pub fn schedule(&self, id: String, table: Arc<SiteTable>) {
        self.checks.add(self.check_of(id.into(), table));
    }

    /// Starts the DNS checks of every registered site not queued yet, each first due at
    /// its record's next check (a restart with a million sites steps none of them early).
    pub fn schedule_all(&self, table: &Arc<SiteTable>) {
        let due: Vec<(Arc<str>, SystemTime)> = self
            .lock()
            .values()
            .map(|r| {
                (
                    Arc::from(r.id.as_str()),
                    crate::certs::record::from_unix(r.next_check),
                )
            })
            .collect();
        let checks = due
            .into_iter()
            .map(|(id, at)| (self.check_of(id, table.clone()), at));
        self.checks.add_many_at(checks);
    }

    fn check_of(&self, id: Arc<str>, table: Arc<SiteTable>) -> SiteCheck {
        SiteCheck {
            onboarding: self.me.clone(),
            id,
            table,
            claim: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs the queue of DNS checks until `cancel`; a site waiting for its certificate is
    /// looked at again as soon as one is installed for it (`installs`, from the certificate
    /// manager), not at its next poll.
    pub async fn run_scheduler(
        self: Arc<Self>,
        mut installs: tokio::sync::broadcast::Receiver<Vec<HostName>>,
        cancel: CancellationToken,
    ) {
        let wake_installed = async {
            loop {
                match installs.recv().await {
                    Ok(hosts) => {
                        if let Some(record) = hosts.first().and_then(|h| self.find(h.as_str())) {
                            self.checks.wake(&Arc::from(record.id.as_str()));
                        }
                    }
                    // Missed some: their sites' polls still find them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let store_unsaved = async {
            let mut every = tokio::time::interval(UNSAVED_FLUSH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                self.store_unsaved();
            }
        };
        tokio::select! {
            () = self.checks.clone().run(cancel) => {}
            () = wake_installed => {}
            () = store_unsaved => {}
        }
        // Stopping: what the last second changed goes to the store before it closes.
        self.store_unsaved();
    }

    /// One step of a site's lifecycle; returns when to take the next. `Never` once the
    /// site is removed.
    async fn check_step(
        &self,
        id: &str,
        table: &SiteTable,
        claim: &mut Option<Claim>,
        cancel: &CancellationToken,
    ) -> Wake {
        // Most steps find nothing due: they read one number, not a copy of the record.
        let next_check = self.lock().get(id).map(|r| r.next_check);
        let Some(next_check) = next_check else {
            return self.site_gone(claim).await;
        };
        let now = SystemTime::now();
        let wait = crate::certs::record::from_unix(next_check)
            .duration_since(now)
            .unwrap_or_default();
        if !wait.is_zero() {
            // Nothing to do yet: no claim, no store round trip (a fleet of 100k sites would
            // otherwise ask etcd for 100k locks every few seconds).
            return Wake::At(now + wait.min(UNTOLD_CHANGE_WAIT));
        }
        let Some(record) = self.get(id) else {
            return self.site_gone(claim).await;
        };
        // In a fleet one node drives each site; the others follow it through the store. A
        // claim taken once is kept while this node's lease lives.
        if !claim.as_ref().is_some_and(|held| self.store.holds(held)) {
            match self.store.claim(&format!("site/{id}")).await {
                Ok(Some(held)) => *claim = Some(held),
                Ok(None) => return Wake::At(now + FOLLOWER_WAIT),
                Err(e) => {
                    tracing::warn!(site = %record.hosts.primary(), error = %e, "cannot claim the site's onboarding; will retry");
                    return Wake::At(now + FOLLOWER_WAIT);
                }
            }
        }
        match record.status {
            // Waiting for the renewal side: look again without touching the store or DNS
            // (a failed order is retried by renewal at its own next attempt).
            SiteStatus::Issuing
            | SiteStatus::Verified
            | SiteStatus::Failed
            | SiteStatus::Queued => Wake::At(now + self.await_certificate(&record, table)),
            _ => {
                let verdict = tokio::select! {
                    () = cancel.cancelled() => return Wake::Never,
                    verdict = self.verify(&record) => verdict,
                };
                match self.after_check(&record, verdict) {
                    Some(delay) => {
                        let next = SystemTime::now() + delay;
                        self.update(id, |r| r.next_check = unix(next));
                        Wake::At(next)
                    }
                    None => Wake::At(SystemTime::now()),
                }
            }
        }
    }

    /// A removed site's check ends; its claim is given up.
    async fn site_gone(&self, claim: &mut Option<Claim>) -> Wake {
        if let Some(held) = claim.take() {
            self.store.release(held).await;
        }
        Wake::Never
    }

    /// Applies a DNS verdict to a site; returns when to look again.
    fn after_check(&self, record: &SiteRecord, verdict: Verdict) -> Option<Duration> {
        let subject = record.hosts.primary().to_owned();
        let s = &self.settings;
        match (record.status, verdict) {
            (SiteStatus::Active, Verdict::Verified) => Some(s.active_recheck),
            (SiteStatus::DnsMoved, Verdict::Verified) => {
                self.update(&record.id, |r| {
                    r.status = SiteStatus::Active;
                    r.moved_since = None;
                    r.reason = None;
                });
                self.set_gate(&record.id, true);
                self.events.record(
                    crate::events::EventKind::SiteActive,
                    &subject,
                    "DNS points here again",
                );
                Some(s.active_recheck)
            }
            (_, Verdict::Verified) => {
                self.update(&record.id, |r| {
                    r.status = SiteStatus::Issuing;
                    r.reason = Some("obtaining a certificate".into());
                    r.checks = 0;
                });
                self.events.record(
                    crate::events::EventKind::SiteVerified,
                    &subject,
                    format!("CNAME reaches {}", record.cname_target),
                );
                tracing::info!(site = %subject, "site verified: DNS points here");
                self.set_gate(&record.id, true);
                self.notify_served_changed(&record.id, &record.hosts);
                Some(Duration::ZERO)
            }
            (SiteStatus::Active, Verdict::Elsewhere { found }) => {
                self.moved(record, &format!("the name now points to {found}"))
            }
            (SiteStatus::Active, Verdict::Missing) => {
                self.moved(record, "the name no longer points here")
            }
            (SiteStatus::DnsMoved, _) => {
                let since = record.moved_since.unwrap_or(unix(SystemTime::now()));
                if unix(SystemTime::now()) >= since + s.moved_grace.as_secs() {
                    self.set_gate(&record.id, false);
                }
                Some(s.active_recheck)
            }
            (_, Verdict::Unavailable { reason }) => {
                tracing::warn!(site = %subject, %reason, "DNS check failed; will retry");
                Some(s.recheck_min)
            }
            (_, Verdict::Elsewhere { found }) => {
                let reason = match self.dns01_record(record) {
                    Some((name, target)) => format!("{name} points to {found}, not {target}"),
                    None => format!("the name points to {found}, not {}", record.cname_target),
                };
                Some(self.pending(record, reason))
            }
            (_, Verdict::Missing) => {
                let reason = match self.dns01_record(record) {
                    Some((name, target)) => format!("no CNAME {name} → {target} yet"),
                    None => format!("no CNAME to {} yet", record.cname_target),
                };
                Some(self.pending(record, reason))
            }
        }
    }

    fn pending(&self, record: &SiteRecord, reason: String) -> Duration {
        let checks = record.checks + 1;
        let delay = backoff(
            checks,
            self.settings.recheck_min,
            self.settings.recheck_max,
            0.5,
        );
        self.update(&record.id, |r| {
            r.status = SiteStatus::PendingDns;
            r.reason = Some(reason);
            r.checks = checks;
        });
        delay
    }

    fn moved(&self, record: &SiteRecord, reason: &str) -> Option<Duration> {
        self.update(&record.id, |r| {
            r.status = SiteStatus::DnsMoved;
            r.moved_since = Some(unix(SystemTime::now()));
            r.reason = Some(reason.to_owned());
        });
        self.events.record(
            crate::events::EventKind::SiteDnsMoved,
            record.hosts.primary(),
            reason,
        );
        tracing::warn!(site = %record.hosts.primary(), reason, "site DNS moved away; renewals stop after the grace period");
        Some(self.settings.active_recheck)
    }

    /// While issuing (or failed): the site is active once its certificate is in the table.
    /// Returns how long to wait before looking again.
    fn await_certificate(&self, record: &SiteRecord, table: &SiteTable) -> Duration {
        let served = table
            .lookup(Some(record.hosts.primary()))
            .is_some_and(|site| site.served_cert().is_some());
        if served {
            self.update(&record.id, |r| {
                r.status = SiteStatus::Active;
                r.reason = None;
                r.next_attempt_at = None;
                r.checks = 0;
                r.next_check = unix(SystemTime::now() + self.settings.active_recheck);
            });
            self.events.record(
                crate::events::EventKind::SiteActive,
                record.hosts.primary(),
                "served over HTTPS",
            );
            tracing::info!(site = %record.hosts.primary(), "site active");
            return Duration::ZERO;
        }
        if let Some(next_attempt) = self.note_queued(record) {
            return next_attempt
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .clamp(ISSUING_POLL, FAILED_POLL_MAX);
        }
        match self.note_issuance_failure(record) {
            // Nothing changes before the renewal task's next attempt.
            Some(next_retry) => next_retry
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .clamp(ISSUING_POLL, FAILED_POLL_MAX),
            None => ISSUING_POLL,
        }
    }

    /// While issuing: an order held back by a CA limit makes the site `queued`, with the
    /// limit and when the next attempt is (one `site.queued` event per new moment). Returns
    /// that moment.
    fn note_queued(&self, record: &SiteRecord) -> Option<SystemTime> {
        let status = self.certificates.status(&site_names(record))?;
        let queued = status
            .queued
            .clone()
            .filter(|_| status.state == CertState::Queued)?;
        let next = crate::certs::record::from_unix(queued.next_attempt_at);
        if record.status != SiteStatus::Queued
            || record.next_attempt_at != Some(queued.next_attempt_at)
        {
            let at = humantime::format_rfc3339_seconds(next);
            let reason = format!(
                "the certificate order waits for the CA's limits: {}",
                queued.reason
            );
            self.update(&record.id, |r| {
                r.status = SiteStatus::Queued;
                r.reason = Some(reason.clone());
                r.next_attempt_at = Some(queued.next_attempt_at);
            });
            self.events.record(
                crate::events::EventKind::SiteQueued,
                record.hosts.primary(),
                format!("{reason}; next attempt at {at}"),
            );
        }
        Some(next)
    }

    /// While issuing: a failed order makes the site `failed`, with the CA's reason and when
    /// the next attempt is (the renewal task retries by itself). One `site.failed` event per
    /// failed attempt. Returns the next attempt's time when the last one failed.
    fn note_issuance_failure(&self, record: &SiteRecord) -> Option<SystemTime> {
        let failure = self
            .certificates
            .status(&site_names(record))?
            .failure
            .clone()?;
        let next_retry = crate::certs::record::from_unix(failure.next_retry);
        if record.status != SiteStatus::Failed || record.failures != failure.attempts {
            let reason = format!("certificate order failed: {}", failure.reason);
            self.update(&record.id, |r| {
                r.status = SiteStatus::Failed;
                r.next_attempt_at = None;
                r.reason = Some(reason.clone());
                r.failures = failure.attempts;
            });
            self.events.record(
                crate::events::EventKind::SiteFailed,
                record.hosts.primary(),
                format!(
                    "{reason}; retrying at {}",
                    humantime::format_rfc3339_seconds(next_retry)
                ),
            );
        }
        Some(next_retry)
    }
}

/// A site's names, parsed (stored names were checked when the site was added).
fn site_names(record: &SiteRecord) -> Vec<HostName> {
    record
        .hosts
        .iter()
        .filter_map(|h| HostName::parse(h).ok())
        .collect()
}

/// What `record` is served as, if it is served at all (`local_names` decide the issuer).
fn served_definition(
    local_names: &crate::issue::LocalNames,
    record: &SiteRecord,
    hsts: Option<&String>,
) -> Option<SiteConfig> {
    if record.status == SiteStatus::PendingDns {
        return None;
    }
    let hosts: Vec<HostName> = record
        .hosts
        .iter()
        .filter_map(|h| HostName::parse(h).ok())
        .collect();
    let origins: Vec<OriginUrl> = record
        .origins
        .iter()
        .filter_map(|o| {
            o.strip_prefix("http://")?
                .parse()
                .ok()
                .map(|authority| OriginUrl { authority })
        })
        .collect();
    if hosts.is_empty() || origins.is_empty() {
        return None;
    }
    let issuer = if hosts.iter().all(|h| local_names.contains(h)) {
        IssuerKind::Internal
    } else {
        IssuerKind::Acme
    };
    Some(SiteConfig {
        hosts,
        origins,
        cert: None,
        hsts: hsts.cloned(),
        issuer,
        managed: true,
        registered: true,
    })
}

/// The served definitions of registered sites with their issuance gates.
pub struct Definitions {
    configs: Vec<(SiteConfig, Gate)>,
    /// The gates made for sites that had none, by site id.
    new_gates: Vec<(String, Gate)>,
}

impl Definitions {
    /// The definitions of every site of `registry` (on every core), before any node's
    /// onboarding holds it: a start builds them on the thread that read the registry while
    /// the certificate records are still being read.
    pub fn of(
        registry: &Registry,
        settings: &OnboardingSettings,
        local_names: &crate::issue::LocalNames,
        hsts: Option<&String>,
    ) -> Self {
        Self::build(registry, settings, local_names, hsts, &HashMap::new())
    }

    /// The definitions of `registry`'s served sites; a site with a gate in `known` keeps it
    /// (set to what its record says now), the others get new ones.
    fn build(
        registry: &Registry,
        settings: &OnboardingSettings,
        local_names: &crate::issue::LocalNames,
        hsts: Option<&String>,
        known: &HashMap<String, Gate>,
    ) -> Self {
        let now = SystemTime::now();
        let records: Vec<&SiteRecord> = registry.values().collect();
        let built = crate::parallel::map_on_every_core(records, |record| {
            let config = served_definition(local_names, record, hsts)?;
            let open = gate_open(record, settings, now);
            Some(match known.get(&record.id) {
                Some(gate) => {
                    gate.set(open);
                    (config, gate.clone(), None)
                }
                None => {
                    let gate = Gate::new(open);
                    (config, gate.clone(), Some((record.id.clone(), gate)))
                }
            })
        });
        let mut configs = Vec::with_capacity(built.len());
        let mut new_gates = Vec::new();
        for (config, gate, new_gate) in built.into_iter().flatten() {
            new_gates.extend(new_gate);
            configs.push((config, gate));
        }
        Self { configs, new_gates }
    }

    /// The definitions, the gates made for them kept in `gates` (a node's gates by site id).
    fn keeping_gates_in(self, gates: &mut HashMap<String, Gate>) -> Vec<(SiteConfig, Gate)> {
        gates.reserve(self.new_gates.len());
        gates.extend(self.new_gates);
        self.configs
    }
}

/// Whether a site's certificate may be requested: DNS verified, or moved less than the grace.
fn gate_open(record: &SiteRecord, settings: &OnboardingSettings, now: SystemTime) -> bool {
    match record.status {
        SiteStatus::Verified | SiteStatus::Issuing | SiteStatus::Active | SiteStatus::Queued => {
            true
        }
        SiteStatus::DnsMoved => record
            .moved_since
            .is_some_and(|since| unix(now) < since + settings.moved_grace.as_secs()),
        // Failed is only reached after DNS verified: the renewal task keeps retrying.
        SiteStatus::Failed => true,
        SiteStatus::PendingDns => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry of a fresh fs store with onboarding on (`edge.test`), and its events.
    fn onboarding() -> (tempfile::TempDir, Arc<Onboarding>, Arc<Events>) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse(
            "[onboarding]\ncname_zone = \"edge.test\"\nnameservers = [\"127.0.0.1:9\"]\nmoved_grace = \"1h\"\n",
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        let store = crate::store::Store::open_with(
            &crate::config::StorageSettings::Fs,
            &dir.path().join("data"),
        )
        .unwrap();
        let events = Arc::new(Events::default());
        let certificates = crate::managed::CertManager::new(
            store,
            &config.acme,
            &config.internal_names,
            Arc::new(crate::issue::Challenges::default()),
            events.clone(),
        )
        .unwrap();
        let onboarding = Onboarding::new(
            config.onboarding.clone(),
            config.internal_names.clone(),
            certificates,
            events.clone(),
        );
        (dir, onboarding, events)
    }

    #[test]
    fn a_stored_site_record_whose_names_do_not_parse_is_set_aside_with_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(&crate::config::StorageSettings::Fs, dir.path()).unwrap();
        let good = SiteRecord::new(
            Hosts::try_from(vec!["shop.example.com".to_owned()]).unwrap(),
            vec!["http://192.0.2.1".into()],
            "edge.test",
        )
        .unwrap();
        store.save_json(&SiteRecord::path(&good.id), &good).unwrap();
        let mut json = serde_json::to_value(&good).unwrap();
        for (id, hosts) in [
            ("nohosts", serde_json::json!([])),
            ("badhost", serde_json::json!(["not a host!"])),
        ] {
            json["id"] = serde_json::json!(id);
            json["hosts"] = hosts;
            store.save_json(&SiteRecord::path(id), &json).unwrap();
        }
        let events = Events::default();
        let registry = Onboarding::read_registry(&store, &events);
        assert_eq!(registry.len(), 1);
        assert!(registry.by_name("shop.example.com").is_some());
        let rejected: Vec<crate::events::Event> = events
            .since(0)
            .into_iter()
            .filter(|e| e.kind == "site.record_rejected")
            .collect();
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        let kept: Vec<String> = std::fs::read_dir(dir.path().join("sites"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            kept.iter().filter(|n| n.contains(".json.corrupt-")).count(),
            2,
            "{kept:?}"
        );
        // Read again: the set-aside records are not read, nothing more is rejected.
        let again = Events::default();
        assert_eq!(Onboarding::read_registry(&store, &again).len(), 1);
        assert!(again.since(0).is_empty());
    }

    /// A registered site for `host` in `status`.
    fn site(onboarding: &Onboarding, host: &str, status: SiteStatus) -> SiteRecord {
        let mut record = SiteRecord::new(
            Hosts::try_from(vec![host.to_owned()]).unwrap(),
            vec!["http://192.0.2.1".into()],
            "edge.test",
        )
        .unwrap();
        record.status = status;
        onboarding.sync(record.clone());
        record
    }

    fn kinds(events: &Events) -> Vec<String> {
        events.since(0).into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_pending_site_waits_with_the_reason_and_backs_off_until_its_cname_is_seen() {
        let (_dir, onboarding, events) = onboarding();
        let record = site(&onboarding, "a.example.com", SiteStatus::PendingDns);
        let first = onboarding.after_check(&record, Verdict::Missing).unwrap();
        let now = onboarding.get(&record.id).unwrap();
        assert_eq!(now.status, SiteStatus::PendingDns);
        assert_eq!(
            now.reason.as_deref(),
            Some(&*format!("no CNAME to {} yet", record.cname_target))
        );
        assert_eq!(now.checks, 1);
        let found = Verdict::Elsewhere {
            found: "elsewhere.test".into(),
        };
        let second = onboarding.after_check(&now, found).unwrap();
        let now = onboarding.get(&record.id).unwrap();
        assert!(
            now.reason
                .as_deref()
                .unwrap()
                .starts_with("the name points to elsewhere.test, not ")
        );
        assert_eq!(now.checks, 2);
        assert!(second >= first, "backs off: {first:?} then {second:?}");
        // A resolver that cannot be asked changes nothing but the wait.
        let unavailable = Verdict::Unavailable {
            reason: "timeout".into(),
        };
        let wait = onboarding.after_check(&now, unavailable);
        assert_eq!(wait, Some(onboarding.settings.recheck_min));
        assert_eq!(onboarding.get(&record.id).unwrap().checks, 2);
        // Seen: issuing at once, the site is served (its gate opens) and it is said.
        let now = onboarding.get(&record.id).unwrap();
        assert_eq!(
            onboarding.after_check(&now, Verdict::Verified),
            Some(Duration::ZERO)
        );
        let now = onboarding.get(&record.id).unwrap();
        assert_eq!(now.status, SiteStatus::Issuing);
        assert_eq!(now.checks, 0);
        let (_, gate) = onboarding.site_config(&record.id, None).unwrap();
        assert!(gate.is_open());
        assert_eq!(kinds(&events), ["site.verified"]);
    }

    #[test]
    fn an_active_site_whose_dns_moves_keeps_its_gate_for_the_grace_then_comes_back() {
        let (_dir, onboarding, events) = onboarding();
        let record = site(&onboarding, "b.example.com", SiteStatus::Active);
        let (_, gate) = onboarding.site_config(&record.id, None).unwrap();
        let active_recheck = Some(onboarding.settings.active_recheck);
        assert_eq!(
            onboarding.after_check(&record, Verdict::Verified),
            active_recheck
        );
        assert_eq!(
            onboarding.get(&record.id).unwrap().status,
            SiteStatus::Active
        );
        // Moved away: dns_moved, said once, still served within the grace period.
        assert_eq!(
            onboarding.after_check(&record, Verdict::Missing),
            active_recheck
        );
        let moved = onboarding.get(&record.id).unwrap();
        assert_eq!(moved.status, SiteStatus::DnsMoved);
        assert!(moved.moved_since.is_some());
        assert!(gate.is_open(), "within the grace period the site renews");
        // Past the grace period the gate closes (renewals stop); the site stays served.
        let mut long_ago = moved.clone();
        long_ago.moved_since = Some(unix(SystemTime::now()) - 2 * 3600);
        assert_eq!(
            onboarding.after_check(&long_ago, Verdict::Missing),
            active_recheck
        );
        assert!(!gate.is_open(), "past the grace period renewals stop");
        // Back: active again, the gate opens.
        assert_eq!(
            onboarding.after_check(&moved, Verdict::Verified),
            active_recheck
        );
        let back = onboarding.get(&record.id).unwrap();
        assert_eq!(back.status, SiteStatus::Active);
        assert_eq!(back.moved_since, None);
        assert!(gate.is_open());
        assert_eq!(kinds(&events), ["site.dns_moved", "site.active"]);
    }

    /// The record of site `id` as the store holds it.
    fn stored(onboarding: &Onboarding, id: &str) -> SiteRecord {
        onboarding
            .store
            .load_json_dir::<SiteRecord>("sites")
            .into_iter()
            .map(Result::unwrap)
            .find(|r| r.id == id)
            .unwrap()
    }

    #[test]
    fn a_new_status_is_stored_at_once_and_check_bookkeeping_with_the_next_flush() {
        let (_dir, onboarding, _events) = onboarding();
        let record = site(&onboarding, "c.example.com", SiteStatus::PendingDns);
        onboarding
            .store
            .save_json(&SiteRecord::path(&record.id), &record)
            .unwrap();
        // A failed check keeps the status: counter and reason wait for the flush.
        onboarding.after_check(&record, Verdict::Missing).unwrap();
        assert_eq!(onboarding.get(&record.id).unwrap().checks, 1);
        assert_eq!(stored(&onboarding, &record.id).checks, 0);
        onboarding.store_unsaved();
        let flushed = stored(&onboarding, &record.id);
        assert_eq!(flushed.checks, 1);
        assert!(flushed.reason.is_some());
        // A verified name changes the status: stored before after_check returns.
        let now = onboarding.get(&record.id).unwrap();
        onboarding.after_check(&now, Verdict::Verified).unwrap();
        assert_eq!(stored(&onboarding, &record.id).status, SiteStatus::Issuing);
        // A removed site's unsaved bookkeeping is not written back.
        onboarding.update(&record.id, |r| r.next_check += 60);
        onboarding.remove(&record.id).unwrap();
        onboarding.store_unsaved();
        assert!(
            onboarding
                .store
                .load_json_dir::<SiteRecord>("sites")
                .is_empty()
        );
    }
}
