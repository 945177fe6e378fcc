//! The site registry: sites added through the admin API, persisted in the store
//! (`data_dir/sites/<id>.json`), each with its stable, unguessable CNAME target and status.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::certs::record::unix;

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
    pub hosts: Vec<String>,
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
}

impl SiteRecord {
    pub fn new(hosts: Vec<String>, origins: Vec<String>, zone: &str) -> Result<Self, String> {
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
        })
    }

    /// Where the record lives in the store.
    pub fn path(id: &str) -> String {
        format!("sites/{id}.json")
    }
}

/// `bytes` random bytes as lowercase base32 (a DNS label: letters and digits only).
fn random_id(bytes: usize) -> Result<String, String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut raw = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| "the system random generator failed".to_owned())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_unguessable_dns_labels() {
        let a = SiteRecord::new(vec!["a.example".into()], vec![], "edge.test").unwrap();
        let b = SiteRecord::new(vec!["a.example".into()], vec![], "edge.test").unwrap();
        assert_ne!(a.cname_target, b.cname_target);
        assert_eq!(a.id.len(), 26);
        assert!(
            a.id.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert!(a.cname_target.ends_with(".edge.test"));
        assert_eq!(SiteStatus::DnsMoved.to_string(), "dns_moved");
    }
}
