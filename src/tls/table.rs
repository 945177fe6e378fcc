//! The certificate table: host name → site (which carries its current certificate).
//! Readers take one lock-free `ArcSwap` load and a hash lookup; writers build a whole new
//! table off to the side and publish it in one swap. Certificate renewals do not touch the
//! table at all: they swap the certificate inside the site.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::certs::HostName;
use crate::certs::names::parent_of;
use crate::sites::Site;

/// Name → site, exact names and one-label wildcards, plus the site for clients without SNI.
#[derive(Default)]
pub struct Routes {
    exact: HashMap<String, Arc<Site>>,
    /// Keyed by the wildcard's suffix: `*.example.com` → `example.com`.
    wildcard: HashMap<String, Arc<Site>>,
    default: Option<Arc<Site>>,
    sites: Vec<Arc<Site>>,
}

impl Routes {
    /// Builds routes for `sites`; `default_host` names the site for clients without SNI.
    /// Host names are unique across sites (the config checks it); on a duplicate the later
    /// site wins.
    pub fn new(sites: Vec<Arc<Site>>, default_host: Option<&HostName>) -> Self {
        let exact_names = sites
            .iter()
            .flat_map(|s| s.hosts())
            .filter(|h| !h.is_wildcard())
            .count();
        let mut routes = Self {
            exact: HashMap::with_capacity(exact_names),
            ..Self::default()
        };
        for site in &sites {
            for host in site.hosts() {
                match host.wildcard_suffix() {
                    Some(suffix) => routes.wildcard.insert(suffix.to_owned(), site.clone()),
                    None => routes.exact.insert(host.to_string(), site.clone()),
                };
            }
        }
        routes.default = default_host.and_then(|h| routes.find(h.as_str()).cloned());
        routes.sites = sites;
        routes
    }

    /// Exact name first, then the wildcard one label up. `name` must be lowercase.
    fn find(&self, name: &str) -> Option<&Arc<Site>> {
        self.exact
            .get(name)
            .or_else(|| parent_of(name).and_then(|parent| self.wildcard.get(parent)))
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

    /// The sites currently published.
    pub fn sites(&self) -> Vec<Arc<Site>> {
        self.routes.load().sites.clone()
    }
}
