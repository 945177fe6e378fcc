//! `[onboarding]`: the zone CNAME targets live in, the nameservers CNAMEs are checked with,
//! the edge's public addresses (for apex names), and how often DNS is re-checked.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::duration;
use super::error::Issues;
use super::file::FileOnboarding;
use crate::certs::HostName;

const DEFAULT_NAMESERVER: &str = "1.1.1.1:53";
const DEFAULT_RECHECK_MIN: Duration = Duration::from_secs(10);
const DEFAULT_RECHECK_MAX: Duration = Duration::from_secs(600);
const DEFAULT_ACTIVE_RECHECK: Duration = Duration::from_secs(3600);
const DEFAULT_MOVED_GRACE: Duration = Duration::from_secs(3 * 86_400);

/// `[onboarding]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingSettings {
    /// Sites get `<site-id>.<cname_zone>`; `None` = onboarding through the API is off.
    pub cname_zone: Option<HostName>,
    pub nameservers: Vec<SocketAddr>,
    /// A/AAAA an apex name must resolve to.
    pub edge_addresses: Vec<IpAddr>,
    /// First re-check of a pending site; doubles up to `recheck_max`.
    pub recheck_min: Duration,
    pub recheck_max: Duration,
    /// How often an active site's DNS is checked again.
    pub active_recheck: Duration,
    /// How long a site whose CNAME moved away keeps renewing before renewals stop.
    pub moved_grace: Duration,
    /// Whether API-registered sites and the webhook may point at loopback, private or
    /// link-local addresses (off: a tenant cannot make the edge reach its own network).
    pub allow_private_origins: bool,
    /// The zone delegated to the edge's own DNS server for DNS-01: a site owner adds
    /// `_acme-challenge.<name> CNAME <site-id>.<acme_zone>`; `None` = DNS-01 off.
    pub acme_zone: Option<HostName>,
    /// Where that DNS server listens (UDP and TCP).
    pub acme_dns: SocketAddr,
}

/// Where the ACME zone's DNS server listens unless `onboarding.acme_dns` says.
const DEFAULT_ACME_DNS: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 53);

pub(super) fn convert(o: FileOnboarding, issues: &mut Issues<'_>) -> OnboardingSettings {
    let cname_zone = o
        .cname_zone
        .and_then(|z| match HostName::parse(z.get_ref()) {
            Ok(zone) if !zone.is_wildcard() => Some(zone),
            _ => {
                issues.at(
                    z.span(),
                    "onboarding.cname_zone",
                    format!("`{}` is not a DNS zone name", z.get_ref()),
                );
                None
            }
        });
    let nameservers = o.nameservers.map_or_else(
        || {
            vec![
                DEFAULT_NAMESERVER
                    .parse()
                    .unwrap_or(SocketAddr::from(([1, 1, 1, 1], 53))),
            ]
        },
        |list| nameservers(list, "onboarding.nameservers", issues),
    );
    let edge_addresses = o.edge_addresses.map_or_else(Vec::new, |list| {
        list.get_ref()
            .iter()
            .filter_map(|a| {
                a.parse::<IpAddr>()
                    .map_err(|_| {
                        issues.at(
                            list.span(),
                            "onboarding.edge_addresses",
                            format!("`{a}` is not an IP address"),
                        );
                    })
                    .ok()
            })
            .collect()
    });
    let recheck_min = duration(
        o.recheck_min,
        DEFAULT_RECHECK_MIN,
        "onboarding.recheck_min",
        issues,
    );
    let recheck_max = duration(
        o.recheck_max,
        DEFAULT_RECHECK_MAX,
        "onboarding.recheck_max",
        issues,
    );
    let acme_zone = o
        .acme_zone
        .and_then(|z| match HostName::parse(z.get_ref()) {
            Ok(zone) if !zone.is_wildcard() && zone.as_str().contains('.') => Some(zone),
            _ => {
                issues.at(
                    z.span(),
                    "onboarding.acme_zone",
                    format!(
                        "`{}` is not a DNS zone name like \"acme.edge.example.net\"",
                        z.get_ref()
                    ),
                );
                None
            }
        });
    let acme_dns = o.acme_dns.map_or(DEFAULT_ACME_DNS, |a| {
        a.get_ref().parse().unwrap_or_else(|_| {
            issues.at(
                a.span(),
                "onboarding.acme_dns",
                format!("`{}` is not an address like 0.0.0.0:53", a.get_ref()),
            );
            DEFAULT_ACME_DNS
        })
    });
    OnboardingSettings {
        cname_zone,
        nameservers,
        edge_addresses,
        recheck_min,
        recheck_max: recheck_max.max(recheck_min),
        active_recheck: duration(
            o.active_recheck,
            DEFAULT_ACTIVE_RECHECK,
            "onboarding.active_recheck",
            issues,
        ),
        moved_grace: duration(
            o.moved_grace,
            DEFAULT_MOVED_GRACE,
            "onboarding.moved_grace",
            issues,
        ),
        allow_private_origins: o.allow_private_origins.unwrap_or(false),
        acme_zone,
        acme_dns,
    }
}

/// A list of DNS servers (`1.1.1.1:53`, or an address for port 53) under `key`.
pub(super) fn nameservers(
    list: toml::Spanned<Vec<String>>,
    key: &str,
    issues: &mut Issues<'_>,
) -> Vec<SocketAddr> {
    list.get_ref()
        .iter()
        .filter_map(|ns| {
            ns.parse::<SocketAddr>()
                .or_else(|_| ns.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    issues.at(
                        list.span(),
                        key,
                        format!("`{ns}` is not an address like 1.1.1.1:53"),
                    );
                })
                .ok()
        })
        .collect()
}
