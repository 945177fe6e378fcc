//! `[[site]]` tables checked into `SiteConfig`: names, origins, the issuer each site gets,
//! certificate files read and verified, no name served twice.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::cert_files::CertFileError;
use super::error::Issues;
use super::file::FileSite;
use super::*;
use crate::certs::{CertBundle, HostName};

/// Certificate files of a site with an uploaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[site]]`.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub hosts: Vec<HostName>,
    pub origins: Vec<OriginUrl>,
    /// Uploaded certificate: its files and what they held when the config was loaded (boxed:
    /// a million registered sites have none, and each site keeps its definition).
    pub cert: Option<Box<(CertFiles, CertBundle)>>,
    /// `Strict-Transport-Security` value; `None` = off.
    pub hsts: Option<String>,
    /// Where a managed certificate comes from (default: internal for local names, else ACME).
    pub issuer: IssuerKind,
    /// Whether the edge obtains and renews the certificate itself; for an uploaded one, it
    /// takes over when the upload enters its renewal window.
    pub managed: bool,
    /// Registered through the admin API by a tenant (not written by the operator): its
    /// origins may only be public addresses, unless `onboarding.allow_private_origins`.
    pub registered: bool,
}

pub(super) fn convert_site(
    index: usize,
    site: FileSite,
    base: &Path,
    (global_hsts, acme, local): (
        Option<&String>,
        &AcmeSettings,
        &crate::certs::local_names::LocalNames,
    ),
    issues: &mut Issues<'_>,
) -> Option<SiteConfig> {
    let before = issues.list.len();
    let key = |k: &str| format!("site[{index}].{k}");
    let host_span = site.host.span();
    let hosts: Vec<HostName> = site
        .host
        .into_inner()
        .into_vec()
        .iter()
        .filter_map(|h| {
            host(
                &Spanned::new(host_span.clone(), h.clone()),
                &key("host"),
                issues,
            )
        })
        .collect();
    if hosts.is_empty() && issues.list.len() == before {
        issues.at(
            host_span.clone(),
            key("host"),
            "a site needs at least one host name",
        );
    }
    let origins_span = site.origins.span();
    let origins: Vec<OriginUrl> = site
        .origins
        .into_inner()
        .into_iter()
        .filter_map(|o| origin(&o, &key("origins"), issues))
        .collect();
    if origins.is_empty() && issues.list.len() == before {
        issues.at(
            origins_span,
            key("origins"),
            "a site needs at least one origin",
        );
    }
    let hsts = hsts(site.hsts, global_hsts.cloned(), &key("hsts"), issues);
    let cert = match (site.cert, site.key) {
        (None, None) => None,
        (Some(cert), Some(key_file)) => load_cert(&cert, &key_file, base, &hosts, index, issues),
        (Some(cert), None) => {
            issues.at(
                cert.span(),
                key("key"),
                "`cert` is set but `key` is missing",
            );
            None
        }
        (None, Some(k)) => {
            issues.at(k.span(), key("cert"), "`key` is set but `cert` is missing");
            None
        }
    };
    let issuer = site_issuer(site.issuer, &hosts, local, &key("issuer"), issues);
    if cert.is_none()
        && issuer == IssuerKind::Acme
        && acme.directory.is_none()
        && issues.list.len() == before
    {
        issues.at(
            host_span,
            key("host"),
            "this site needs a certificate: set `cert` and `key`, configure `[acme] directory`, \
             or upload a certificate",
        );
    }
    (issues.list.len() == before).then_some(SiteConfig {
        hosts,
        origins,
        cert: cert.map(Box::new),
        hsts,
        issuer,
        managed: site.managed.unwrap_or(true),
        registered: false,
    })
}

/// `issuer = "acme" | "internal"`; by default internal when every name is local.
pub(super) fn site_issuer(
    value: Option<Spanned<String>>,
    hosts: &[HostName],
    local: &crate::certs::local_names::LocalNames,
    key: &str,
    issues: &mut Issues<'_>,
) -> IssuerKind {
    match value {
        None if !hosts.is_empty() && hosts.iter().all(|h| local.contains(h)) => {
            IssuerKind::Internal
        }
        None => IssuerKind::Acme,
        Some(v) => match v.get_ref().as_str() {
            "acme" => IssuerKind::Acme,
            "internal" => {
                if let Some(public) = hosts.iter().find(|h| !local.contains(h)) {
                    issues.at(
                        v.span(),
                        key,
                        format!(
                            "the internal CA only issues for local names ({}); `{public}` needs                              `issuer = \"acme\"` or an uploaded certificate",
                            local.suffixes().join(", ")
                        ),
                    );
                }
                IssuerKind::Internal
            }
            other => {
                issues.at(
                    v.span(),
                    key,
                    format!("`{other}` is not one of \"acme\", \"internal\""),
                );
                IssuerKind::Acme
            }
        },
    }
}

pub(super) fn load_cert(
    cert: &Spanned<String>,
    key: &Spanned<String>,
    base: &Path,
    hosts: &[HostName],
    index: usize,
    issues: &mut Issues<'_>,
) -> Option<(CertFiles, CertBundle)> {
    let files = CertFiles {
        cert: base.join(cert.get_ref()),
        key: base.join(key.get_ref()),
    };
    match cert_files::load(&files, hosts) {
        Ok(bundle) => Some((files, bundle)),
        Err(e) => {
            let (span, name) = match &e {
                CertFileError::Read { path, .. } if *path == files.key => (key.span(), "key"),
                _ => (cert.span(), "cert"),
            };
            issues.at(span, format!("site[{index}].{name}"), error_chain(&e));
            None
        }
    }
}

pub(super) fn check_unique_hosts(sites: &[SiteConfig], tls: &TlsSettings, issues: &mut Issues<'_>) {
    let mut seen = std::collections::HashMap::new();
    for (i, site) in sites.iter().enumerate() {
        for h in &site.hosts {
            if let Some(first) = seen.insert(h.clone(), i) {
                issues.at(
                    0..0,
                    format!("site[{i}].host"),
                    format!("`{h}` is already a host of site[{first}]"),
                );
            }
        }
    }
    if let Some(default) = &tls.default_host
        && !seen.contains_key(default)
    {
        issues.at(
            0..0,
            "tls.default_host",
            format!("`{default}` is not a host of any [[site]]"),
        );
    }
}

impl SiteConfig {
    /// The site's first name, used to name it in logs.
    pub fn name(&self) -> &str {
        self.hosts.first().map_or("", HostName::as_str)
    }

    /// Same definition (certificates compared by files, not content).
    pub fn same_definition(&self, other: &Self) -> bool {
        self.hosts == other.hosts
            && self.origins == other.origins
            && self.hsts == other.hsts
            && self.issuer == other.issuer
            && self.managed == other.managed
            && self.registered == other.registered
            && self.cert.as_ref().map(|c| &c.0) == other.cert.as_ref().map(|c| &c.0)
    }
}
