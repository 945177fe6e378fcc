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
use crate::config::{Config, SiteConfig};
use crate::sites::Site;
use crate::tls::Routes;

/// A registered site's issuance gate (open while its DNS points here).
use crate::sites::gate::Gate;

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
        let _one_at_a_time = self.lock_applying();
        let (summary, fresh) = self.publish_config(config, None);
        self.queue_work(fresh);
        summary
    }

    /// Serialises changes to the table (a SIGHUP reload and an API change may come at once).
    pub(super) fn lock_applying(&self) -> std::sync::MutexGuard<'_, ()> {
        self.applying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues the renewals of the sites `apply` built and the DNS checks of every
    /// registered site (those queued already stay as they are).
    pub(super) fn queue_work(&self, fresh: Vec<Arc<Site>>) {
        self.certificates.schedule_many(fresh);
        self.onboarding.schedule_all(&self.table);
    }

    /// [`apply`](Self::apply) up to the table: publishes the sites and retires the ones it
    /// replaced; returns the sites it built, for [`queue_work`](Self::queue_work). The
    /// caller holds [`lock_applying`](Self::lock_applying).
    /// `registered`: the registered sites' definitions when they were built beforehand (the
    /// start builds them beside the certificate pass); else they are built here.
    pub(super) fn publish_config(
        &self,
        config: Config,
        registered: Option<Vec<(SiteConfig, Gate)>>,
    ) -> (ReloadSummary, Vec<Arc<Site>>) {
        let old = self.table.sites();
        // Indexes of the sites in service, so the diff stays linear in the number of sites.
        let old_by_first: HashMap<&HostName, &Arc<Site>> = old
            .iter()
            .filter_map(|s| Some((s.hosts().first()?, s)))
            .collect();
        let old_hosts: HashSet<&HostName> = old.iter().flat_map(|s| s.hosts()).collect();
        let mut summary = ReloadSummary::default();
        let registered =
            registered.unwrap_or_else(|| self.onboarding.site_configs(config.tls.hsts.as_ref()));
        let defined = config.sites.len() + registered.len();
        let definitions = config
            .sites
            .iter()
            .map(|c| (c.clone(), None))
            .chain(registered.into_iter().map(|(c, gate)| (c, Some(gate))));
        // Sites kept as they are, in order; `None` where a site is to be built.
        let mut sites: Vec<Option<Arc<Site>>> = Vec::with_capacity(defined);
        let mut to_build = Vec::with_capacity(if old.is_empty() { defined } else { 0 });
        for (site_config, gate) in definitions {
            let same = site_config
                .hosts
                .first()
                .and_then(|first| old_by_first.get(first))
                .filter(|s| s.config().same_definition(&site_config));
            if let Some(site) = same {
                summary.unchanged += 1;
                sites.push(Some((*site).clone()));
                continue;
            }
            if site_config.hosts.iter().any(|h| old_hosts.contains(h)) {
                summary.changed += 1;
            } else {
                summary.added += 1;
            }
            to_build.push((sites.len(), site_config, gate));
            sites.push(None);
        }
        let fresh = self.build_sites(to_build, config.proxy.origin_down_for);
        for (index, site) in &fresh {
            sites[*index] = Some(site.clone());
        }
        let sites: Vec<Arc<Site>> = sites.into_iter().flatten().collect();
        let fresh: Vec<Arc<Site>> = fresh.into_iter().map(|(_, site)| site).collect();
        summary.removed = old
            .len()
            .saturating_sub(summary.unchanged + summary.changed);
        self.table
            .publish(Routes::new(sites.clone(), config.tls.default_host.as_ref()));
        let (kept, names_in_service): (HashSet<*const Site>, HashSet<Vec<&HostName>>) =
            if old.is_empty() {
                Default::default()
            } else {
                (
                    sites.iter().map(Arc::as_ptr).collect(),
                    sites.iter().map(|s| sorted_names(s.hosts())).collect(),
                )
            };
        for site in &old {
            if kept.contains(&Arc::as_ptr(site)) {
                continue;
            }
            let names_kept = names_in_service.contains(&sorted_names(site.hosts()));
            self.take_out_of_service(site, names_kept);
        }
        let mut current = self.lock_config();
        let path = current.path.clone();
        *current = config;
        if current.path.is_none() {
            current.path = path;
        }
        (summary, fresh)
    }
}

impl Edge {
    /// Builds sites (their certificates from the store, or issued by the internal CA) on
    /// every core; each keeps the index it was given.
    fn build_sites(
        &self,
        definitions: Vec<(usize, SiteConfig, Option<Gate>)>,
        origin_down_for: std::time::Duration,
    ) -> Vec<(usize, Arc<Site>)> {
        let build = |(index, config, gate): (usize, SiteConfig, Option<Gate>)| {
            let initial = self.certificates.initial_cert(&config);
            let mut site = Site::build(config, initial, origin_down_for);
            if let Some(gate) = gate {
                site = site.with_gate(gate);
            }
            (index, Arc::new(site))
        };
        crate::parallel::map_on_every_core(definitions, build)
    }

    /// Serves registered site `id` (named `hosts`) as the registry now says: built and put
    /// in the table once its DNS is verified, taken out (record and key deleted) once it is
    /// removed. Only its names are touched, so this costs the same with a million sites as
    /// with ten; a full [`apply`](Self::apply) is for configuration changes.
    pub fn publish_registered(&self, id: &str, hosts: &[String]) {
        let _one_at_a_time = self.lock_applying();
        let (hsts, origin_down_for) = {
            let config = self.lock_config();
            (config.tls.hsts.clone(), config.proxy.origin_down_for)
        };
        let names: Vec<HostName> = hosts
            .iter()
            .filter_map(|h| HostName::parse(h).ok())
            .collect();
        let old = names
            .first()
            .and_then(|first| self.table.lookup(Some(first.as_str())))
            .filter(|site| site.config().registered && site.hosts() == names.as_slice());
        let wanted = self.onboarding.site_config(id, hsts.as_ref());
        match (&old, &wanted) {
            (None, None) => {}
            (Some(site), Some((config, _))) if site.config().same_definition(config) => {}
            _ => {
                let fresh = wanted.map(|(config, gate)| {
                    let initial = self.certificates.initial_cert(&config);
                    Arc::new(Site::build(config, initial, origin_down_for).with_gate(gate))
                });
                self.table.change(old.as_slice(), fresh.as_slice());
                if let Some(site) = &old {
                    self.take_out_of_service(site, fresh.is_some());
                }
                if let Some(site) = fresh {
                    self.certificates.schedule(site);
                }
            }
        }
        if self.onboarding.get(id).is_some() {
            self.onboarding.schedule(id.to_owned(), self.table.clone());
        }
    }

    /// Stops a site that left the table: changed (`names_kept`: the new definition keeps its
    /// certificate record) or removed (its record and key are deleted).
    fn take_out_of_service(&self, site: &Arc<Site>, names_kept: bool) {
        if names_kept {
            site.retire();
            self.certificates.unschedule(site);
        } else {
            self.certificates.forget(site);
        }
    }

    /// Re-applies the config in force: every registered site is compared and published.
    pub fn republish(&self) -> ReloadSummary {
        let config = self.lock_config().clone();
        self.apply(config)
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

/// The sections whose settings differ between `old` and `new` in what is read only at
/// start: everything but the sites and the site-level settings an apply takes (`[tls]`
/// `hsts` and `default_host`, `[proxy]` `origin_down_for`).
pub(super) fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut tls = new.tls.clone();
    tls.hsts.clone_from(&old.tls.hsts);
    tls.default_host.clone_from(&old.tls.default_host);
    let mut proxy = new.proxy.clone();
    proxy.origin_down_for = old.proxy.origin_down_for;
    [
        ("[server]", old.server != new.server),
        ("[tls]", old.tls != tls),
        ("[proxy]", old.proxy != proxy),
        ("[log]", old.log != new.log),
        ("[acme]", old.acme != new.acme),
        ("[onboarding]", old.onboarding != new.onboarding),
        ("[events]", old.events != new.events),
        ("[internal_ca]", old.internal_names != new.internal_names),
        ("[storage]", old.storage != new.storage),
    ]
    .into_iter()
    .filter_map(|(section, differs)| differs.then_some(section))
    .collect()
}

impl crate::admin::Publish for Edge {
    fn publish_registered(&self, id: &str, hosts: &[String]) {
        Self::publish_registered(self, id, hosts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[[site]]\nhost = \"a.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n{extra}"
        );
        Config::parse(&text, std::path::Path::new("/nonexistent")).unwrap()
    }

    #[test]
    fn only_settings_read_at_start_need_a_restart() {
        let old = config("");
        assert!(restart_only_changes(&old, &config("")).is_empty());
        // What an apply takes: sites, HSTS, the default host, origin health.
        let applied = config(
            "[[site]]\nhost = \"b.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n[tls]\nhsts = \"max-age=60\"\ndefault_host = \"a.localhost\"\n[proxy]\norigin_down_for = \"3s\"\n",
        );
        assert!(restart_only_changes(&old, &applied).is_empty());
        let restart = config(
            "[acme]\nretry_min = \"2s\"\n[events]\nwebhook_timeout = \"3s\"\n[tls]\nsession_tickets = false\n",
        );
        assert_eq!(
            restart_only_changes(&old, &restart),
            ["[tls]", "[acme]", "[events]"]
        );
    }
}
