//! CNAME onboarding: the site registry (`registry.rs`), DNS verification (`dns.rs`), and the
//! per-site steps (a job on the node's queue, `schedule.rs`) that move a site `pending_dns` → `verified` → `issuing` → `active`, watches
//! an active site's DNS (→ `dns_moved`) and opens or closes its issuance gate: a registered
//! site's certificate is only ever requested while its DNS points here (plus a grace period).

pub mod acme_dns;
mod checks;
mod definitions;
pub mod dns;
pub mod policy;
mod read;
pub mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::certs::HostName;
use crate::config::{OnboardingSettings, OriginUrl};
use crate::events::Events;
use crate::schedule::Scheduler;
use crate::sites::gate::Gate;
use crate::store::Store;
use checks::MAX_CHECK_STEPS;
pub use checks::SiteCheck;
pub use definitions::Definitions;
use definitions::gate_open;
use dns::DnsChecker;
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
}

#[cfg(test)]
mod tests;
