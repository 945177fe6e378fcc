//! What a registered site serves: its definition (a `SiteConfig` built from its record) and
//! its gate (open once its DNS is verified, shut after the grace of a DNS move).

use std::collections::HashMap;
use std::time::SystemTime;

use super::*;
use crate::certs::HostName;
use crate::certs::record::unix;
use crate::config::{IssuerKind, OnboardingSettings, SiteConfig};
use crate::sites::gate::Gate;

/// A site's names, parsed (stored names were checked when the site was added).
pub(super) fn site_names(record: &SiteRecord) -> Vec<HostName> {
    record
        .hosts
        .iter()
        .filter_map(|h| HostName::parse(h).ok())
        .collect()
}

/// What `record` is served as, if it is served at all (`local_names` decide the issuer).
pub(super) fn served_definition(
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

/// Whether a site's certificate may be requested: DNS verified, or moved less than the grace.
pub(super) fn gate_open(
    record: &SiteRecord,
    settings: &OnboardingSettings,
    now: SystemTime,
) -> bool {
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

impl Onboarding {
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

    pub(super) fn set_gate(&self, id: &str, open: bool) {
        if let Ok(gates) = self.gates.lock()
            && let Some(gate) = gates.get(id)
        {
            gate.set(open);
        }
    }
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
    pub(super) fn build(
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
    pub(super) fn keeping_gates_in(
        self,
        gates: &mut HashMap<String, Gate>,
    ) -> Vec<(SiteConfig, Gate)> {
        gates.reserve(self.new_gates.len());
        gates.extend(self.new_gates);
        self.configs
    }
}
