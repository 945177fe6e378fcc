//! Applying a configuration to the running edge: sites whose definition is unchanged keep
//! their object (and its certificate and origin health); new and changed sites are built
//! off to the side (certificates from the store, or issued by the internal CA); the table is
//! published in one swap; replaced sites are retired (their renewal stops), removed ones are
//! retired and their certificate record and key deleted, and new ones get a renewal task.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::Edge;
use crate::certs::HostName;
use crate::config::Config;
use crate::sites::Site;
use crate::tls::Routes;

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} removed, {} unchanged",
            self.added, self.changed, self.removed, self.unchanged
        )
    }
}

impl Edge {
    /// Makes `config`'s sites the ones served. Listener, TLS and proxy settings are read at
    /// start only; a change to them is reported and waits for a restart.
    pub fn apply(&self, config: Config) -> ReloadSummary {
        let _one_at_a_time = self
            .applying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.table.sites();
        // Indexes of the sites in service, so the diff stays linear in the number of sites.
        let old_by_first: HashMap<&HostName, &Arc<Site>> = old
            .iter()
            .filter_map(|s| Some((s.hosts().first()?, s)))
            .collect();
        let old_hosts: HashSet<&HostName> = old.iter().flat_map(|s| s.hosts()).collect();
        let mut summary = ReloadSummary::default();
        let mut sites = Vec::with_capacity(config.sites.len());
        let mut fresh = Vec::new();
        let registered = self.onboarding.site_configs(config.tls.hsts.as_ref());
        let definitions = config
            .sites
            .iter()
            .map(|c| (c, None))
            .chain(registered.iter().map(|(c, gate)| (c, Some(gate))));
        for (site_config, gate) in definitions {
            let same = site_config
                .hosts
                .first()
                .and_then(|first| old_by_first.get(first))
                .filter(|s| s.config().same_definition(site_config));
            if let Some(site) = same {
                summary.unchanged += 1;
                sites.push((*site).clone());
                continue;
            }
            let existed = site_config.hosts.iter().any(|h| old_hosts.contains(h));
            if existed {
                summary.changed += 1;
            } else {
                summary.added += 1;
            }
            let initial = self.certificates.initial_cert(site_config);
            let mut site = Site::build(site_config.clone(), initial, config.proxy.origin_down_for);
            if let Some(gate) = gate {
                site = site.with_gate(gate.clone());
            }
            let site = Arc::new(site);
            fresh.push(site.clone());
            sites.push(site);
        }
        summary.removed = old
            .len()
            .saturating_sub(summary.unchanged + summary.changed);
        self.table
            .publish(Routes::new(sites.clone(), config.tls.default_host.as_ref()));
        let kept: HashSet<*const Site> = sites.iter().map(Arc::as_ptr).collect();
        let names_in_service: HashSet<Vec<&HostName>> =
            sites.iter().map(|s| sorted_names(s.hosts())).collect();
        for site in &old {
            if kept.contains(&Arc::as_ptr(site)) {
                continue;
            }
            let names_kept = names_in_service.contains(&sorted_names(site.hosts()));
            if names_kept {
                // Changed, not removed: the new definition keeps the certificate record.
                site.retire();
                self.certificates.unschedule(site);
            } else {
                self.certificates.forget(site);
            }
        }
        for site in fresh {
            self.certificates.schedule(site);
        }
        self.start_onboarding_tasks();

        let mut current = self.lock_config();
        if current.path.is_some() {
            warn_restart_needed(&current, &config);
        }
        let path = current.path.clone();
        *current = config;
        if current.path.is_none() {
            current.path = path;
        }
        summary
    }
}

impl Edge {
    /// Re-applies the config in force: the registry changed (a site added or removed).
    pub fn republish(&self) -> ReloadSummary {
        let config = self.lock_config().clone();
        self.apply(config)
    }

    /// Queues the DNS checks of every registered site not queued yet.
    fn start_onboarding_tasks(&self) {
        for id in self.onboarding.ids() {
            self.onboarding.schedule(id, self.table.clone());
        }
    }
}

/// A site's names in a canonical order: two sites with the same set of names share a
/// certificate record.
fn sorted_names(names: &[HostName]) -> Vec<&HostName> {
    let mut sorted: Vec<&HostName> = names.iter().collect();
    sorted.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    sorted.dedup();
    sorted
}

fn warn_restart_needed(old: &Config, new: &Config) {
    let changed = [
        ("[server]", old.server != new.server),
        ("[tls]", old.tls != new.tls),
        ("[proxy]", old.proxy != new.proxy),
        ("[log]", old.log != new.log),
        ("[acme]", old.acme != new.acme),
        ("[onboarding]", old.onboarding != new.onboarding),
        ("[events]", old.events != new.events),
        ("[internal_ca]", old.internal_names != new.internal_names),
        ("[storage]", old.storage != new.storage),
    ];
    let parts: Vec<&str> = changed
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(section, _)| *section)
        .collect();
    if !parts.is_empty() {
        tracing::warn!(
            sections = parts.join(" "),
            "these settings changed and take effect at the next restart; sites were reloaded"
        );
    }
}
