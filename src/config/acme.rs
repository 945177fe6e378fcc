//! `[acme]`: the ACME CA, its account, challenges, key type, renewal window and retry
//! policy — checked into `AcmeSettings`. The renewal settings also apply to the internal CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::Issues;
use super::file::{FileAcme, FileLimits};
use super::{duration, positive};
use crate::certs::HostName;
use crate::certs::KeyType;

/// The limits of one ACME directory; `None` = not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaLimits {
    /// New orders per account per 3 hours.
    pub new_orders_per_3h: Option<u32>,
    /// Certificates per registered domain per 7 days.
    pub certificates_per_domain_per_week: Option<u32>,
    /// Certificates for the exact same set of names per 7 days.
    pub duplicates_per_week: Option<u32>,
    /// Failed validations per name (per account) per hour.
    pub failed_validations_per_hour: Option<u32>,
    /// Requests to the CA per second (every request, nonces and polls included).
    pub requests_per_second: Option<u32>,
    /// Names in one certificate.
    pub names_per_certificate: Option<u32>,
}

impl CaLimits {
    /// Let's Encrypt's published limits (letsencrypt.org/docs/rate-limits, 2025).
    pub const LETS_ENCRYPT: Self = Self {
        new_orders_per_3h: Some(300),
        certificates_per_domain_per_week: Some(50),
        duplicates_per_week: Some(5),
        failed_validations_per_hour: Some(5),
        requests_per_second: Some(20),
        names_per_certificate: Some(100),
    };

    /// The default for `directory`: Let's Encrypt's limits for its directories (production
    /// and staging), none for any other CA.
    pub fn default_for(directory: &str) -> Self {
        let host = directory
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if host == "api.letsencrypt.org" || host.ends_with(".api.letsencrypt.org") {
            Self::LETS_ENCRYPT
        } else {
            Self::default()
        }
    }
}

const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;
const DEFAULT_MAX_CONCURRENT_ORDERS: u32 = 4;
const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(6 * 3600);

/// An ACME challenge type the edge answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
    /// Answered by the edge's DNS server for `onboarding.acme_zone`; used for wildcard names
    /// (never listed in `acme.challenges`).
    Dns01,
}

/// Which issuer a managed site's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKind {
    Acme,
    Internal,
}

/// `[acme]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// Directory URL; `None` = no ACME CA (only uploaded and internal certificates).
    pub directory: Option<String>,
    pub contact: Vec<String>,
    /// Extra root to trust for the directory's own HTTPS (private or test CA).
    pub ca_roots: Option<PathBuf>,
    /// External account binding: key id and HMAC key.
    pub eab: Option<(String, Vec<u8>)>,
    /// Challenge types in order of preference.
    pub challenges: Vec<ChallengeKind>,
    /// Renew when remaining validity ≤ min(this, a third of the lifetime).
    pub renew_before: Duration,
    pub key_type: KeyType,
    /// Orders in flight at once across all sites.
    pub max_concurrent_orders: usize,
    /// First retry delay after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// The CA's limits: the directory's defaults (`CaLimits::default_for`) with the
    /// operator's `[acme.limits]` over them.
    pub limits: CaLimits,
    /// How the CA is named in CAA records; empty = the directory's `caaIdentities`.
    pub caa_identities: Vec<String>,
    /// Where pre-flight checks ask: `acme.nameservers`, else `onboarding.nameservers`.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// The addresses names must resolve to before an order: `onboarding.edge_addresses`
    /// (empty = not checked).
    pub edge_addresses: Vec<std::net::IpAddr>,
    /// Where the CA connects for HTTP-01 (80) and TLS-ALPN-01 (443); only a test CA
    /// (Pebble's `httpPort`/`tlsPort`) uses others.
    pub http01_port: u16,
    pub tls_alpn01_port: u16,
    /// Whether a probe answer is fetched through each name before an order.
    pub probe: bool,
    /// Whether DNS-01 is answered (`onboarding.acme_zone` is set): wildcards can be issued.
    pub dns01: bool,
}

/// The limits for `directory`: its defaults, each key of `[acme.limits]` over its own (0
/// turns a limit off).
fn limits(directory: Option<&str>, file: Option<FileLimits>) -> CaLimits {
    let mut limits = directory.map_or_else(CaLimits::default, CaLimits::default_for);
    let Some(file) = file else { return limits };
    let set = |slot: &mut Option<u32>, value: Option<u32>| {
        if let Some(value) = value {
            *slot = Some(value).filter(|v| *v > 0);
        }
    };
    set(&mut limits.new_orders_per_3h, file.new_orders_per_3h);
    set(
        &mut limits.certificates_per_domain_per_week,
        file.certificates_per_domain_per_week,
    );
    set(&mut limits.duplicates_per_week, file.duplicates_per_week);
    set(
        &mut limits.failed_validations_per_hour,
        file.failed_validations_per_hour,
    );
    set(&mut limits.requests_per_second, file.requests_per_second);
    set(
        &mut limits.names_per_certificate,
        file.names_per_certificate,
    );
    limits
}

pub(super) fn convert(a: FileAcme, base: &Path, issues: &mut Issues<'_>) -> AcmeSettings {
    let directory = a.directory.and_then(|d| {
        let url = d.get_ref();
        match url.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
                Some(url.clone())
            }
            _ => {
                issues.at(
                    d.span(),
                    "acme.directory",
                    format!("`{url}` is not an https:// URL"),
                );
                None
            }
        }
    });
    let contact = a.contact.map_or_else(Vec::new, |c| {
        for item in c.get_ref() {
            if !item.starts_with("mailto:") || !item.contains('@') {
                issues.at(
                    c.span(),
                    "acme.contact",
                    format!("`{item}` is not a mailto: URL like \"mailto:ops@example.com\""),
                );
            }
        }
        c.into_inner()
    });
    let ca_roots = a.ca_roots.and_then(|r| {
        let path = base.join(r.get_ref());
        match std::fs::read(&path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(path),
            Ok(_) => {
                issues.at(
                    r.span(),
                    "acme.ca_roots",
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
            Err(e) => {
                issues.at(
                    r.span(),
                    "acme.ca_roots",
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    });
    let eab = match (a.eab_kid, a.eab_hmac_key) {
        (None, None) => None,
        (Some(kid), Some(key)) => match URL_SAFE_NO_PAD.decode(key.get_ref().trim_end_matches('='))
        {
            Ok(bytes) if !bytes.is_empty() => Some((kid.into_inner(), bytes)),
            _ => {
                issues.at(
                    key.span(),
                    "acme.eab_hmac_key",
                    "must be the base64url HMAC key your CA gave you",
                );
                None
            }
        },
        (Some(kid), None) => {
            issues.at(
                kid.span(),
                "acme.eab_hmac_key",
                "`eab_kid` needs `eab_hmac_key`",
            );
            None
        }
        (None, Some(key)) => {
            issues.at(key.span(), "acme.eab_kid", "`eab_hmac_key` needs `eab_kid`");
            None
        }
    };
    let challenges = match a.challenges {
        None => vec![ChallengeKind::TlsAlpn01, ChallengeKind::Http01],
        Some(list) => {
            let mut kinds = Vec::new();
            for name in list.get_ref() {
                match name.as_str() {
                    "http-01" => kinds.push(ChallengeKind::Http01),
                    "tls-alpn-01" => kinds.push(ChallengeKind::TlsAlpn01),
                    other => issues.at(
                        list.span(),
                        "acme.challenges",
                        format!("`{other}` is not one of \"tls-alpn-01\", \"http-01\""),
                    ),
                }
            }
            if list.get_ref().is_empty() {
                issues.at(
                    list.span(),
                    "acme.challenges",
                    "name at least one challenge",
                );
            }
            kinds
        }
    };
    let key_type = a.key_type.map_or(KeyType::EcdsaP256, |k| {
        k.get_ref().parse().unwrap_or_else(|()| {
            issues.at(
                k.span(),
                "acme.key_type",
                format!(
                    "`{}` is not one of \"ecdsa-p256\", \"rsa2048\"",
                    k.get_ref()
                ),
            );
            KeyType::EcdsaP256
        })
    });
    let days = positive(
        a.renew_before_days,
        DEFAULT_RENEW_BEFORE_DAYS,
        "acme.renew_before_days",
        issues,
    );
    let retry_min = duration(a.retry_min, DEFAULT_RETRY_MIN, "acme.retry_min", issues);
    let retry_max = duration(a.retry_max, DEFAULT_RETRY_MAX, "acme.retry_max", issues);
    let caa_identities = a.caa_identities.map_or_else(Vec::new, |list| {
        for identity in list.get_ref() {
            if HostName::parse(identity).is_err() || identity.contains('*') {
                issues.at(
                    list.span(),
                    "acme.caa_identities",
                    format!("`{identity}` is not a domain name like \"letsencrypt.org\""),
                );
            }
        }
        list.into_inner()
    });
    AcmeSettings {
        limits: limits(directory.as_deref(), a.limits),
        caa_identities,
        edge_addresses: Vec::new(),
        http01_port: a.http01_port.unwrap_or(80),
        tls_alpn01_port: a.tls_alpn01_port.unwrap_or(443),
        probe: a.probe.unwrap_or(true),
        dns01: false,
        nameservers: a.nameservers.map_or_else(Vec::new, |list| {
            super::onboarding::nameservers(list, "acme.nameservers", issues)
        }),
        directory,
        contact,
        ca_roots,
        eab,
        challenges,
        renew_before: Duration::from_secs(86_400 * days as u64),
        key_type,
        max_concurrent_orders: positive(
            a.max_concurrent_orders,
            DEFAULT_MAX_CONCURRENT_ORDERS,
            "acme.max_concurrent_orders",
            issues,
        ),
        retry_min,
        retry_max: retry_max.max(retry_min),
    }
}
