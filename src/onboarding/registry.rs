//! The site registry: sites added through the admin API, persisted in the store
//! (`data_dir/sites/<id>.json`), each with its stable, unguessable CNAME target and status.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::certs::record::unix;
use crate::certs::{HostName, HostNameError};

/// A site's names as stored: at least one, each a host name, checked when a record is read
/// (a record whose names do not parse is refused as a whole, never served half-read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Hosts(Vec<String>);

/// Why a stored list of names is not a site's names.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("a site has at least one name")]
    Empty,
    #[error("`{name}`: {cause}")]
    NotAHost { name: String, cause: HostNameError },
}

impl TryFrom<Vec<String>> for Hosts {
    type Error = HostsError;

    fn try_from(names: Vec<String>) -> Result<Self, HostsError> {
        if names.is_empty() {
            return Err(HostsError::Empty);
        }
        for name in &names {
            HostName::parse(name).map_err(|cause| HostsError::NotAHost {
                name: name.clone(),
                cause,
            })?;
        }
        Ok(Self(names))
    }
}

impl Serialize for Hosts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Hosts {
    /// The names of `hosts`, already checked; `None` when there are none.
    pub fn of(hosts: &[HostName]) -> Option<Self> {
        (!hosts.is_empty()).then(|| Self(hosts.iter().map(|h| h.as_str().to_owned()).collect()))
    }

    /// The site's first name: what it is known by in logs, events and the API.
    pub fn primary(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }
}

impl<'a> IntoIterator for &'a Hosts {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::ops::Deref for Hosts {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

/// Where a site is in onboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    /// Waiting for the CNAME (or apex A + TXT) to point at us.
    PendingDns,
    /// DNS points here; issuance is about to start.
    Verified,
    /// DNS verified, certificate being obtained.
    Issuing,
    /// Served over HTTPS with its own certificate.
    Active,
    /// The last step failed; see `reason` and `next_check`.
    Failed,
    /// Was active, DNS no longer points here; renewals stop after the grace period.
    DnsMoved,
    /// DNS verified; the certificate order waits behind a CA limit until `next_attempt_at`.
    Queued,
}

impl std::fmt::Display for SiteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&text)
    }
}

/// One registered site, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRecord {
    pub id: String,
    pub hosts: Hosts,
    pub origins: Vec<String>,
    pub status: SiteStatus,
    /// What the owner must point their name at: `<id>.<cname_zone>`.
    pub cname_target: String,
    /// For apex names: the TXT value expected at `_onehttps.<host>`.
    pub txt_token: String,
    /// Why the site is not active yet (or failed), in words.
    pub reason: Option<String>,
    /// DNS checks made since the last change of status.
    pub checks: u32,
    /// Unix seconds of the next DNS check.
    pub next_check: u64,
    pub created: u64,
    /// Unix seconds since DNS stopped pointing here.
    pub moved_since: Option<u64>,
    /// Failed certificate attempts already reported (one `site.failed` event each).
    #[serde(default)]
    pub failures: u32,
    /// While `queued`: Unix seconds of the next order attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
}

impl SiteRecord {
    pub fn new(
        hosts: Hosts,
        origins: Vec<String>,
        zone: &str,
    ) -> Result<Self, crate::seal::SealError> {
        let id = random_id(16)?;
        Ok(Self {
            cname_target: format!("{id}.{zone}"),
            txt_token: random_id(20)?,
            id,
            hosts,
            origins,
            status: SiteStatus::PendingDns,
            reason: Some("waiting for the CNAME".into()),
            checks: 0,
            next_check: 0,
            created: unix(SystemTime::now()),
            moved_since: None,
            failures: 0,
            next_attempt_at: None,
        })
    }

    /// Where the record lives in the store.
    pub fn path(id: &str) -> String {
        format!("sites/{id}.json")
    }
}

/// `bytes` random bytes as lowercase base32 (a DNS label: letters and digits only).
fn random_id(bytes: usize) -> Result<String, crate::seal::SealError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut raw = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| crate::seal::SealError::Random)?;
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in raw {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    Ok(out)
}

/// The registered sites by id, with an index of their names (so a new registration checks
/// its names in constant time, not by scanning every site).
#[derive(Debug, Default)]
pub struct Registry {
    sites: std::collections::BTreeMap<String, SiteRecord>,
    by_name: std::collections::HashMap<String, String>,
    /// Sites whose record changed in memory since it was last stored (bookkeeping only: see
    /// `Onboarding::update`).
    unsaved: std::collections::HashSet<String>,
}

impl Registry {
    /// The registry of `records` (as the store lists them at start, ordered by id, so the
    /// map is built in one pass). Of two records with one id the later is kept.
    pub fn from_records(records: impl Iterator<Item = SiteRecord>) -> Self {
        // Sized up front: the map is built from one vector without copying it as it grows
        // (a million records are a quarter of a gigabyte).
        let mut pairs = Vec::with_capacity(records.size_hint().1.unwrap_or(0));
        pairs.extend(records.map(|record| (record.id.clone(), record)));
        let sites: std::collections::BTreeMap<String, SiteRecord> = pairs.into_iter().collect();
        let mut by_name = std::collections::HashMap::with_capacity(sites.len());
        for record in sites.values() {
            for host in &record.hosts {
                by_name.insert(host.clone(), record.id.clone());
            }
        }
        Self {
            sites,
            by_name,
            unsaved: std::collections::HashSet::new(),
        }
    }

    /// Adds or replaces the site `record.id`; returns the record it replaced.
    pub fn insert(&mut self, record: SiteRecord) -> Option<SiteRecord> {
        let previous = self.remove(&record.id);
        for host in &record.hosts {
            self.by_name.insert(host.clone(), record.id.clone());
        }
        self.sites.insert(record.id.clone(), record);
        previous
    }

    /// Removes the site `id` (with any unsaved change: a replacement is stored by whoever
    /// inserts it).
    pub fn remove(&mut self, id: &str) -> Option<SiteRecord> {
        self.unsaved.remove(id);
        let record = self.sites.remove(id)?;
        for host in &record.hosts {
            if self.by_name.get(host).is_some_and(|owner| owner == id) {
                self.by_name.remove(host);
            }
        }
        Some(record)
    }

    /// The site one of whose names is `host`.
    pub fn by_name(&self, host: &str) -> Option<&SiteRecord> {
        self.sites.get(self.by_name.get(host)?)
    }

    /// The site `id`, to change its status (never its names: `insert` a new record for that).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut SiteRecord> {
        self.sites.get_mut(id)
    }

    /// Notes that site `id`'s record changed in memory only.
    pub fn mark_unsaved(&mut self, id: &str) {
        if !self.unsaved.contains(id) {
            self.unsaved.insert(id.to_owned());
        }
    }

    /// Notes that site `id`'s record was just stored whole.
    pub fn mark_saved(&mut self, id: &str) {
        self.unsaved.remove(id);
    }

    /// The ids of the sites changed in memory only, forgetting them (the caller stores them,
    /// or marks them unsaved again).
    pub fn take_unsaved(&mut self) -> Vec<String> {
        self.unsaved.drain().collect()
    }
}

impl std::ops::Deref for Registry {
    type Target = std::collections::BTreeMap<String, SiteRecord>;

    fn deref(&self) -> &Self::Target {
        &self.sites
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Hosts {
        Hosts::try_from(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn targets_are_unguessable_dns_labels() {
        let a = SiteRecord::new(hosts(&["a.example"]), vec![], "edge.test").unwrap();
        let b = SiteRecord::new(hosts(&["a.example"]), vec![], "edge.test").unwrap();
        assert_ne!(a.cname_target, b.cname_target);
        assert_eq!(a.id.len(), 26);
        assert!(
            a.id.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert!(a.cname_target.ends_with(".edge.test"));
        assert_eq!(SiteStatus::DnsMoved.to_string(), "dns_moved");
    }

    #[test]
    fn the_name_index_follows_inserts_replacements_and_removals() {
        let mut registry = Registry::default();
        let mut a = SiteRecord::new(hosts(&["a.example", "www.a.example"]), vec![], "z").unwrap();
        registry.insert(a.clone());
        assert_eq!(
            registry.by_name("www.a.example").map(|r| &r.id),
            Some(&a.id)
        );
        // A record replaced with other names (through the fleet's store) moves the index.
        a.hosts = hosts(&["a.example"]);
        assert!(registry.insert(a.clone()).is_some());
        assert!(registry.by_name("www.a.example").is_none());
        assert!(registry.by_name("a.example").is_some());
        assert!(registry.remove(&a.id).is_some());
        assert!(registry.by_name("a.example").is_none());
        assert!(registry.is_empty());
    }

    #[test]
    fn a_registry_built_from_records_indexes_every_name() {
        let a = SiteRecord::new(hosts(&["a.example", "www.a.example"]), vec![], "z");
        let b = SiteRecord::new(hosts(&["b.example"]), vec![], "z");
        let (a, b) = (a.unwrap(), b.unwrap());
        let registry = Registry::from_records([b.clone(), a.clone()].into_iter());
        assert_eq!(registry.len(), 2);
        for (host, id) in [
            ("a.example", &a.id),
            ("www.a.example", &a.id),
            ("b.example", &b.id),
        ] {
            assert_eq!(registry.by_name(host).map(|r| &r.id), Some(id), "{host}");
        }
    }
}
