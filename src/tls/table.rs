//! The certificate table: host name → site (which carries its current certificate).
//! Readers take one lock-free `ArcSwap` load and a hash lookup; writers publish a new table
//! in one swap. The names are spread over [`SHARDS`] shards, so a change to a few sites (one
//! site verified, added or removed among a million) copies only the shards it touches, not
//! the whole table. Certificate renewals do not touch the table at all: they swap the
//! certificate inside the site.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::certs::HostName;
use crate::certs::names::parent_of;
use crate::sites::Site;

/// How many shards the names are spread over.
const SHARDS: usize = 256;

/// The shard of a (lowercase) name: FNV-1a, cheap and stable.
fn shard_of(name: &str) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash as usize % SHARDS
}

/// What `host` is keyed by: the name itself, or a wildcard's suffix (`*.example.com` →
/// `example.com`).
fn key_of(host: &HostName) -> &str {
    host.wildcard_suffix().unwrap_or(host.as_str())
}

/// The names that fall in one shard, and the sites whose first name does.
#[derive(Default, Clone)]
struct Shard {
    exact: HashMap<String, Arc<Site>>,
    /// Keyed by the wildcard's suffix: `*.example.com` → `example.com`.
    wildcard: HashMap<String, Arc<Site>>,
    sites: Vec<Arc<Site>>,
}

/// One of a site's names (or, as [`FIRST_NAME`], the site itself) sorted into a shard while
/// [`Routes::new`] builds the shards.
struct Placed {
    site: u32,
    host: u32,
}

/// [`Placed::host`] of the entry that lists the site in its first name's shard.
const FIRST_NAME: u32 = u32::MAX;

impl Shard {
    /// The shard holding `placed`, each map sized once.
    fn from_placed(sites: &[Arc<Site>], placed: &[Placed]) -> Self {
        let name = |p: &Placed| &sites[p.site as usize].hosts()[p.host as usize];
        let listed = placed.iter().filter(|p| p.host == FIRST_NAME).count();
        let wildcards = placed
            .iter()
            .filter(|p| p.host != FIRST_NAME && name(p).is_wildcard())
            .count();
        let mut shard = Self {
            exact: HashMap::with_capacity(placed.len() - listed - wildcards),
            wildcard: HashMap::with_capacity(wildcards),
            sites: Vec::with_capacity(listed),
        };
        for p in placed {
            let site = &sites[p.site as usize];
            if p.host == FIRST_NAME {
                shard.sites.push(site.clone());
                continue;
            }
            shard.route(name(p), site);
        }
        shard
    }

    /// Routes `host` (which falls in this shard) to `site`.
    fn route(&mut self, host: &HostName, site: &Arc<Site>) {
        match host.wildcard_suffix() {
            Some(suffix) => self.wildcard.insert(suffix.to_owned(), site.clone()),
            None => self.exact.insert(host.to_string(), site.clone()),
        };
    }
}

/// Name → site, exact names and one-label wildcards, plus the site for clients without SNI.
pub struct Routes {
    shards: Box<[Arc<Shard>]>,
    default_host: Option<HostName>,
    default: Option<Arc<Site>>,
    /// The sites served from certificate files (few: the file watcher's list).
    with_files: Arc<[Arc<Site>]>,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
            default_host: None,
            default: None,
            with_files: Arc::new([]),
        }
    }
}

impl Routes {
    /// Builds routes for `sites`; `default_host` names the site for clients without SNI.
    /// Host names are unique across sites (the config checks it); on a duplicate the later
    /// site wins.
    pub fn new(sites: Vec<Arc<Site>>, default_host: Option<&HostName>) -> Self {
        // Each site's names are first sorted into their shards (in the sites' order, so the
        // later site still wins); then every shard is built at its final size, the shards
        // spread over every core (a million sites at a restart).
        let mut placed: Vec<Vec<Placed>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for (index, site) in sites.iter().enumerate() {
            for (host, name) in site.hosts().iter().enumerate() {
                placed[shard_of(key_of(name))].push(Placed {
                    site: index as u32,
                    host: host as u32,
                });
            }
            if let Some(first) = site.hosts().first() {
                placed[shard_of(first.as_str())].push(Placed {
                    site: index as u32,
                    host: FIRST_NAME,
                });
            }
        }
        let shards = crate::parallel::map_each_on_every_core(placed, |placed| {
            Arc::new(Shard::from_placed(&sites, &placed))
        });
        let mut routes = Self {
            shards: shards.into(),
            default_host: default_host.cloned(),
            default: None,
            with_files: sites
                .iter()
                .filter(|s| s.cert_files().is_some())
                .cloned()
                .collect(),
        };
        routes.default = routes.find_default();
        routes
    }

    /// These routes with `removed` taken out and `added` put in; only the shards their names
    /// fall in are copied.
    pub fn changed(&self, removed: &[Arc<Site>], added: &[Arc<Site>]) -> Self {
        let mut shards = self.shards.clone();
        for site in removed {
            for host in site.hosts() {
                let (key, wildcard) = match host.wildcard_suffix() {
                    Some(suffix) => (suffix, true),
                    None => (host.as_str(), false),
                };
                let shard = Arc::make_mut(&mut shards[shard_of(key)]);
                let map = if wildcard {
                    &mut shard.wildcard
                } else {
                    &mut shard.exact
                };
                if map.get(key).is_some_and(|s| Arc::ptr_eq(s, site)) {
                    map.remove(key);
                }
            }
            if let Some(first) = site.hosts().first() {
                let shard = Arc::make_mut(&mut shards[shard_of(first.as_str())]);
                shard.sites.retain(|s| !Arc::ptr_eq(s, site));
            }
        }
        for site in added {
            for host in site.hosts() {
                Arc::make_mut(&mut shards[shard_of(key_of(host))]).route(host, site);
            }
            if let Some(first) = site.hosts().first() {
                Arc::make_mut(&mut shards[shard_of(first.as_str())])
                    .sites
                    .push(site.clone());
            }
        }
        let files_changed = removed
            .iter()
            .chain(added)
            .any(|s| s.cert_files().is_some());
        let with_files = if files_changed {
            self.with_files
                .iter()
                .filter(|s| !removed.iter().any(|r| Arc::ptr_eq(r, s)))
                .chain(added.iter().filter(|s| s.cert_files().is_some()))
                .cloned()
                .collect()
        } else {
            self.with_files.clone()
        };
        let mut routes = Self {
            shards,
            default_host: self.default_host.clone(),
            default: None,
            with_files,
        };
        routes.default = routes.find_default();
        routes
    }

    fn find_default(&self) -> Option<Arc<Site>> {
        self.default_host
            .as_ref()
            .and_then(|h| self.find(h.as_str()).cloned())
    }

    /// Exact name first, then the wildcard one label up. `name` must be lowercase.
    fn find(&self, name: &str) -> Option<&Arc<Site>> {
        self.shards[shard_of(name)].exact.get(name).or_else(|| {
            parent_of(name).and_then(|parent| self.shards[shard_of(parent)].wildcard.get(parent))
        })
    }
}

/// The live table shared by the handshake path and every writer.
#[derive(Default)]
pub struct SiteTable {
    routes: ArcSwap<Routes>,
}

impl SiteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The site serving `sni`, or the default site when the client sent no SNI.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<Site>> {
        let routes = self.routes.load();
        match sni {
            None => routes.default.clone(),
            Some(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                routes.find(&name.to_ascii_lowercase()).cloned()
            }
            Some(name) => routes.find(name).cloned(),
        }
    }

    /// Replaces every route at once.
    pub fn publish(&self, routes: Routes) {
        self.routes.store(Arc::new(routes));
    }

    /// Takes `removed` out and puts `added` in, in one swap. Writers take turns (the edge
    /// applies one change at a time).
    pub fn change(&self, removed: &[Arc<Site>], added: &[Arc<Site>]) {
        let changed = self.routes.load().changed(removed, added);
        self.routes.store(Arc::new(changed));
    }

    /// The published sites served from certificate files.
    pub fn sites_with_files(&self) -> Arc<[Arc<Site>]> {
        self.routes.load().with_files.clone()
    }

    /// Up to `limit` sites in order of their first name, after the name `after` (from the
    /// first when `None`): one pass over the table keeping the `limit` smallest, so a page
    /// costs no sort of a million sites.
    pub fn first_after(&self, after: Option<&str>, limit: usize) -> Vec<Arc<Site>> {
        self.first_after_matching(after, limit, |_| true).0
    }

    /// Like [`first_after`](Self::first_after), of the sites `keep` accepts, and how many
    /// it accepts in the whole table.
    pub fn first_after_matching(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Site) -> bool,
    ) -> (Vec<Arc<Site>>, usize) {
        let routes = self.routes.load();
        let mut smallest: std::collections::BTreeMap<&str, &Arc<Site>> = Default::default();
        let mut matching = 0;
        for site in routes.shards.iter().flat_map(|shard| shard.sites.iter()) {
            if !keep(site) {
                continue;
            }
            matching += 1;
            let name = site.name();
            if after.is_some_and(|after| name <= after) || limit == 0 {
                continue;
            }
            if smallest.len() == limit {
                match smallest.last_key_value() {
                    Some((largest, _)) if name < *largest => {
                        smallest.pop_last();
                    }
                    _ => continue,
                }
            }
            smallest.insert(name, site);
        }
        (smallest.into_values().cloned().collect(), matching)
    }

    /// The sites currently published.
    pub fn sites(&self) -> Vec<Arc<Site>> {
        let routes = self.routes.load();
        let mut sites = Vec::with_capacity(routes.shards.iter().map(|s| s.sites.len()).sum());
        for shard in routes.shards.iter() {
            sites.extend(shard.sites.iter().cloned());
        }
        sites
    }

    /// How many sites are published.
    pub fn len(&self) -> usize {
        self.routes
            .load()
            .shards
            .iter()
            .map(|s| s.sites.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
