//! `[storage]`: where everything persistent lives. `embedded` (the default) keeps it in one
//! transactional file, `server.data_dir/store.redb`; `fs` keeps one file per entry under
//! `server.data_dir` (easy to inspect, fine for a few thousand sites); `etcd` keeps it in an etcd cluster shared by a fleet of edges, under
//! `prefix`, with this node known as `node_id`.

use std::time::Duration;

use super::duration;
use super::error::Issues;
use super::file::FileStorage;
use toml::Spanned;

const DEFAULT_PREFIX: &str = "/onehttps";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// `[storage]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageSettings {
    /// One file, `server.data_dir/store.redb`.
    #[default]
    Embedded,
    /// One file per entry under `server.data_dir`.
    Fs,
    /// A shared etcd cluster.
    Etcd(EtcdSettings),
}

/// `[storage] kind = "etcd"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:port` of each member; requests go to any that answers.
    pub endpoints: Vec<String>,
    /// Every key of this fleet lives under it (ends with `/`).
    pub prefix: String,
    /// This node's name in the fleet (`GET /api/v1/nodes`, lock holders).
    pub node_id: String,
    /// Optional etcd user and password.
    pub user: Option<(String, String)>,
    /// Longest wait for one store operation before it counts as unavailable.
    pub timeout: Duration,
    /// How long this node's locks outlive it when it dies (its lease's time to live).
    pub lease_ttl: Duration,
}

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

pub(super) fn convert(s: FileStorage, issues: &mut Issues<'_>) -> StorageSettings {
    let kind = s.kind.as_ref().map_or("embedded", |k| k.get_ref().as_str());
    match kind {
        "embedded" | "fs" => {
            let spans = [
                (s.endpoints.as_ref().map(Spanned::span), "storage.endpoints"),
                (s.prefix.as_ref().map(Spanned::span), "storage.prefix"),
                (s.node_id.as_ref().map(Spanned::span), "storage.node_id"),
                (s.user.as_ref().map(Spanned::span), "storage.user"),
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
        "etcd" => StorageSettings::Etcd(etcd(s, issues)),
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

fn etcd(s: FileStorage, issues: &mut Issues<'_>) -> EtcdSettings {
    let mut endpoints = Vec::new();
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
                        if uri.scheme_str() == Some("http")
                            && uri.host().is_some()
                            && uri.path_and_query().is_none_or(|p| p.as_str() == "/") =>
                    {
                        endpoints.push(raw.trim_end_matches('/').to_owned());
                    }
                    Ok(uri) if uri.scheme_str() == Some("https") => issues.at(
                        list.span(),
                        "storage.endpoints",
                        format!("`{raw}`: TLS to etcd is not supported yet; use http:// on a private network"),
                    ),
                    _ => issues.at(
                        list.span(),
                        "storage.endpoints",
                        format!("`{raw}` is not an endpoint like http://127.0.0.1:2379"),
                    ),
                }
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
    EtcdSettings {
        endpoints,
        prefix,
        node_id,
        user,
        timeout,
        lease_ttl,
    }
}
