//! DNS verification of a site's names with a real resolver (hickory) against the configured
//! nameservers: a name verifies when its CNAME chain reaches *this site's* target; an apex name
//! (which cannot carry a CNAME) verifies with A/AAAA records equal to the edge's addresses and
//! a TXT record `_onehttps.<host>` holding the site's token.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};

/// Longest CNAME chain followed.
const MAX_CHAIN: usize = 8;

/// What DNS says about a name, relative to the site's expectations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The CNAME chain reaches the target (or the apex A/AAAA + TXT match).
    Verified,
    /// The name resolves, but not to us: `found` says where it points.
    Elsewhere { found: String },
    /// No CNAME (and for apex names, no matching A/TXT) yet.
    Missing,
    /// The nameservers could not be asked.
    Unavailable { reason: String },
}

/// A resolver bound to the onboarding nameservers.
pub struct DnsChecker {
    resolver: TokioResolver,
}

impl DnsChecker {
    /// A resolver that asks only `nameservers` (see [`crate::resolver::build`]).
    pub fn new(nameservers: &[SocketAddr]) -> Result<Self, crate::resolver::ResolverError> {
        Ok(Self {
            resolver: crate::resolver::build(nameservers)?,
        })
    }

    /// Follows `host`'s CNAME chain; the names it passes through, lowercase, without dots.
    pub async fn cname_chain(&self, host: &str) -> Result<Vec<String>, NetError> {
        let mut chain = Vec::new();
        let mut current = host.trim_end_matches('.').to_ascii_lowercase();
        for _ in 0..MAX_CHAIN {
            let next = match self
                .resolver
                .lookup(format!("{current}."), RecordType::CNAME)
                .await
            {
                Ok(lookup) => lookup.answers().iter().find_map(|r| match &r.data {
                    RData::CNAME(target) => Some(
                        target
                            .0
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    ),
                    _ => None,
                }),
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => None,
                Err(e) => return Err(e),
            };
            match next {
                Some(target) if !chain.contains(&target) => {
                    chain.push(target.clone());
                    current = target;
                }
                _ => break,
            }
        }
        Ok(chain)
    }

    /// Whether `host`'s CNAME chain reaches `target`.
    pub async fn check_cname(&self, host: &str, target: &str) -> Verdict {
        match self.cname_chain(host).await {
            Ok(chain) if chain.iter().any(|n| n == target) => Verdict::Verified,
            Ok(chain) => match chain.last() {
                Some(last) => Verdict::Elsewhere {
                    found: last.clone(),
                },
                None => Verdict::Missing,
            },
            Err(e) => Verdict::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    /// Apex verification: every A/AAAA of `host` is one of `edge`, there is at least one,
    /// and `_onehttps.<host>` has a TXT record equal to `token` — or, when the edge answers
    /// DNS-01, `_acme-challenge.<host>` is a CNAME to the site's `delegation` target instead.
    pub async fn check_apex(
        &self,
        host: &str,
        edge: &[IpAddr],
        token: &str,
        delegation: Option<&str>,
    ) -> Verdict {
        let ips: BTreeSet<IpAddr> = match self.resolver.lookup_ip(format!("{host}.")).await {
            Ok(lookup) => lookup.iter().collect(),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => BTreeSet::new(),
            Err(e) => {
                return Verdict::Unavailable {
                    reason: e.to_string(),
                };
            }
        };
        if ips.is_empty() {
            return Verdict::Missing;
        }
        if let Some(other) = ips.iter().find(|ip| !edge.contains(ip)) {
            return Verdict::Elsewhere {
                found: other.to_string(),
            };
        }
        let txt = match self
            .resolver
            .lookup(format!("_onehttps.{host}."), RecordType::TXT)
            .await
        {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(txt.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
            Err(e) => {
                return Verdict::Unavailable {
                    reason: e.to_string(),
                };
            }
        };
        if txt.iter().any(|t| t == token) {
            return Verdict::Verified;
        }
        match delegation {
            Some(target) => {
                match self
                    .check_cname(&format!("_acme-challenge.{host}"), target)
                    .await
                {
                    Verdict::Verified => Verdict::Verified,
                    _ => Verdict::Missing,
                }
            }
            None => Verdict::Missing,
        }
    }
}
