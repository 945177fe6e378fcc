//! `[storage]`: where everything persistent lives. `embedded` (the default) keeps it in one
//! transactional file, `server.data_dir/store.redb`; `fs` keeps one file per entry under
//! `server.data_dir` (easy to inspect, fine for a few thousand sites); `etcd` keeps it in an etcd cluster shared by a fleet of edges, under
//! `prefix`, with this node known as `node_id`, over TLS when its endpoints are `https://`
//! (`ca_file` trusted for the members' certificates, `cert_file` + `key_file` for mutual
//! TLS). The TLS files are read and checked here, so a bad one is a config error.

use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::certs::{CertBundle, Chain};

use super::duration;
use super::error::Issues;
use super::file::FileStorage;
pub use crate::store::settings::{ClientIdentity, EtcdSettings, EtcdTls, StorageSettings};
use toml::Spanned;

const DEFAULT_PREFIX: &str = "/onehttps";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// This machine's host name, the default node id.
fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "edge".to_owned()
    } else {
        name
    }
}

pub(super) fn convert(s: FileStorage, base: &Path, issues: &mut Issues<'_>) -> StorageSettings {
    let kind = s.kind.as_ref().map_or("embedded", |k| k.get_ref().as_str());
    match kind {
        "embedded" | "fs" => {
            let spans = [
                (s.endpoints.as_ref().map(Spanned::span), "storage.endpoints"),
                (s.prefix.as_ref().map(Spanned::span), "storage.prefix"),
                (s.node_id.as_ref().map(Spanned::span), "storage.node_id"),
                (s.user.as_ref().map(Spanned::span), "storage.user"),
                (s.ca_file.as_ref().map(Spanned::span), "storage.ca_file"),
                (s.cert_file.as_ref().map(Spanned::span), "storage.cert_file"),
            ];
            for (span, key) in spans {
                if let Some(span) = span {
                    issues.at(span, key, "only applies to kind = \"etcd\"");
                }
            }
            if kind == "fs" {
                StorageSettings::Fs
            } else {
                StorageSettings::Embedded
            }
        }
        "etcd" => StorageSettings::Etcd(Box::new(etcd(s, base, issues))),
        other => {
            if let Some(k) = &s.kind {
                issues.at(
                    k.span(),
                    "storage.kind",
                    format!("`{other}` is not a store: use \"embedded\", \"fs\" or \"etcd\""),
                );
            }
            StorageSettings::Fs
        }
    }
}

fn etcd(s: FileStorage, base: &Path, issues: &mut Issues<'_>) -> EtcdSettings {
    let mut endpoints = Vec::new();
    let mut schemes = Vec::new();
    match &s.endpoints {
        None => issues.at(
            s.kind.as_ref().map_or(0..0, Spanned::span),
            "storage.endpoints",
            "kind = \"etcd\" needs endpoints = [\"http://127.0.0.1:2379\"]",
        ),
        Some(list) => {
            for raw in list.get_ref() {
                match raw.parse::<http::Uri>() {
                    Ok(uri)
                        if matches!(uri.scheme_str(), Some("http" | "https"))
                            && uri.host().is_some()
                            && uri.path_and_query().is_none_or(|p| p.as_str() == "/") =>
                    {
                        schemes.push(uri.scheme_str() == Some("https"));
                        endpoints.push(raw.trim_end_matches('/').to_owned());
                    }
                    _ => issues.at(
                        list.span(),
                        "storage.endpoints",
                        format!(
                            "`{raw}` is not an endpoint like http://127.0.0.1:2379 or https://10.0.0.1:2379"
                        ),
                    ),
                }
            }
            schemes.dedup();
            if schemes.len() > 1 {
                issues.at(
                    list.span(),
                    "storage.endpoints",
                    "mixes http:// and https://: every member is reached the same way",
                );
            }
            if list.get_ref().is_empty() {
                issues.at(
                    list.span(),
                    "storage.endpoints",
                    "needs at least one endpoint",
                );
            }
        }
    }
    let prefix = s
        .prefix
        .map_or_else(|| DEFAULT_PREFIX.to_owned(), |p| p.into_inner());
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let node_id = s.node_id.map_or_else(host_name, |n| {
        let id = n.get_ref().clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            issues.at(
                n.span(),
                "storage.node_id",
                format!("`{id}` must be letters, digits, '-', '_' or '.'"),
            );
        }
        id
    });
    let user = match (s.user, s.password) {
        (Some(user), Some(password)) => Some((user.into_inner(), password.into_inner())),
        (None, None) => None,
        (user, password) => {
            let span = user
                .as_ref()
                .map(Spanned::span)
                .or_else(|| password.as_ref().map(Spanned::span))
                .unwrap_or(0..0);
            issues.at(span, "storage.user", "user and password go together");
            None
        }
    };
    let timeout = duration(s.timeout, DEFAULT_TIMEOUT, "storage.timeout", issues);
    let ttl_span = s.lease_ttl.as_ref().map(Spanned::span);
    let lease_ttl = duration(s.lease_ttl, DEFAULT_LEASE_TTL, "storage.lease_ttl", issues);
    if let Some(span) = ttl_span
        && lease_ttl < Duration::from_secs(2)
    {
        issues.at(span, "storage.lease_ttl", "must be at least 2s");
    }
    let tls = etcd_tls(
        &s.ca_file,
        &s.cert_file,
        &s.key_file,
        schemes == [true],
        base,
        issues,
    );
    EtcdSettings {
        endpoints,
        prefix,
        node_id,
        user,
        tls,
        timeout,
        lease_ttl,
    }
}

/// Reads and checks `ca_file` and the `cert_file` + `key_file` pair; `https` says whether
/// the endpoints ask for TLS (the files are refused without it, and `ca_file` needed with it).
fn etcd_tls(
    ca_file: &Option<Spanned<String>>,
    cert_file: &Option<Spanned<String>>,
    key_file: &Option<Spanned<String>>,
    https: bool,
    base: &Path,
    issues: &mut Issues<'_>,
) -> Option<EtcdTls> {
    if !https {
        for (file, key) in [
            (ca_file, "storage.ca_file"),
            (cert_file, "storage.cert_file"),
            (key_file, "storage.key_file"),
        ] {
            if let Some(file) = file {
                issues.at(file.span(), key, "only applies to https:// endpoints");
            }
        }
        return None;
    }
    let read = |file: &Spanned<String>, key: &str, issues: &mut Issues<'_>| {
        let path = base.join(file.get_ref());
        match std::fs::read(&path) {
            Ok(bytes) => Some(Zeroizing::new(bytes)),
            Err(e) => {
                issues.at(
                    file.span(),
                    key,
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    };
    let Some(ca_file) = ca_file else {
        issues.at(
            0..0,
            "storage.ca_file",
            "https:// endpoints need ca_file = \"/path/to/etcd-ca.pem\" (the CA of the members' certificates)",
        );
        return None;
    };
    let ca_pem = read(ca_file, "storage.ca_file", issues)?;
    let ca_ok = matches!(Chain::from_pem(&ca_pem), Ok(Some(_)))
        && crate::certs::bundle::only_certificates(&ca_pem).is_ok();
    if !ca_ok {
        issues.at(
            ca_file.span(),
            "storage.ca_file",
            "holds no PEM certificate (or something besides certificates)",
        );
        return None;
    }
    let client = match (cert_file, key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert_pem = read(cert, "storage.cert_file", issues)?;
            let key_pem = read(key, "storage.key_file", issues)?;
            if let Err(e) = CertBundle::from_pem(&cert_pem, &key_pem) {
                issues.at(
                    cert.span(),
                    "storage.cert_file",
                    format!("with storage.key_file: {}", super::error_chain(&e)),
                );
                return None;
            }
            Some(ClientIdentity {
                cert_pem: cert_pem.to_vec(),
                key_pem,
            })
        }
        (cert, key) => {
            let span = cert.as_ref().or(key.as_ref()).map_or(0..0, Spanned::span);
            issues.at(
                span,
                "storage.cert_file",
                "cert_file and key_file go together",
            );
            return None;
        }
    };
    Some(EtcdTls {
        ca_pem: ca_pem.to_vec(),
        client,
    })
}
