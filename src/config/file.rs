//! The config file exactly as written: serde structs that reject unknown keys and keep the
//! span of every value that is checked later, so errors can point at file:line:column.

use serde::Deserialize;
use toml::Spanned;

/// The whole TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) server: FileServer,
    #[serde(default)]
    pub(crate) tls: FileTls,
    #[serde(default)]
    pub(crate) proxy: FileProxy,
    #[serde(default)]
    pub(crate) log: FileLog,
    #[serde(default)]
    pub(crate) acme: FileAcme,
    #[serde(default)]
    pub(crate) onboarding: FileOnboarding,
    #[serde(default)]
    pub(crate) events: FileEvents,
    #[serde(default)]
    pub(crate) internal_ca: FileInternalCa,
    #[serde(default)]
    pub(crate) storage: FileStorage,
    #[serde(default)]
    pub(crate) site: Vec<FileSite>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileServer {
    pub(crate) https: Option<Spanned<String>>,
    pub(crate) http: Option<Spanned<String>>,
    pub(crate) admin: Option<Spanned<String>>,
    pub(crate) data_dir: Option<Spanned<String>>,
    pub(crate) https_public_port: Option<Spanned<u16>>,
    pub(crate) self_check_address: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<u32>>,
    pub(crate) handshake_timeout: Option<Spanned<String>>,
    pub(crate) header_timeout: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
    pub(crate) max_header_bytes: Option<Spanned<u32>>,
    pub(crate) shutdown_grace: Option<Spanned<String>>,
    pub(crate) welcome_page: Option<Spanned<String>>,
    pub(crate) admin_token: Option<Spanned<String>>,
    pub(crate) transfer_timeout: Option<Spanned<String>>,
    pub(crate) min_transfer_bytes: Option<Spanned<u32>>,
    pub(crate) max_connections_per_ip: Option<Spanned<u32>>,
    pub(crate) handshakes_per_ip: Option<Spanned<u32>>,
    pub(crate) workers: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    pub(crate) min_version: Option<Spanned<String>>,
    pub(crate) hsts: Option<Spanned<Hsts>>,
    pub(crate) session_tickets: Option<bool>,
    pub(crate) session_cache: Option<Spanned<u32>>,
    pub(crate) key_cache: Option<Spanned<u32>>,
    pub(crate) default_host: Option<Spanned<String>>,
    pub(crate) watch_interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileProxy {
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) response_timeout: Option<Spanned<String>>,
    pub(crate) origin_down_for: Option<Spanned<String>>,
    pub(crate) pool_idle_timeout: Option<Spanned<String>>,
    pub(crate) pool_max_idle_per_origin: Option<Spanned<u32>>,
    pub(crate) trusted_proxies: Option<Spanned<Vec<String>>>,
    pub(crate) tunnel_idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLog {
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) level: Option<Spanned<String>>,
    pub(crate) access: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAcme {
    pub(crate) directory: Option<Spanned<String>>,
    pub(crate) contact: Option<Spanned<Vec<String>>>,
    pub(crate) ca_roots: Option<Spanned<String>>,
    pub(crate) eab_kid: Option<Spanned<String>>,
    pub(crate) eab_hmac_key: Option<Spanned<String>>,
    pub(crate) challenges: Option<Spanned<Vec<String>>>,
    pub(crate) renew_before_days: Option<Spanned<u32>>,
    pub(crate) key_type: Option<Spanned<String>>,
    pub(crate) max_concurrent_orders: Option<Spanned<u32>>,
    pub(crate) retry_min: Option<Spanned<String>>,
    pub(crate) retry_max: Option<Spanned<String>>,
    pub(crate) limits: Option<FileLimits>,
    pub(crate) caa_identities: Option<Spanned<Vec<String>>>,
    pub(crate) nameservers: Option<Spanned<Vec<String>>>,
    pub(crate) http01_port: Option<u16>,
    pub(crate) tls_alpn01_port: Option<u16>,
    pub(crate) probe: Option<bool>,
}

/// `[acme.limits]`: the CA's published limits (0 turns one off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub(crate) new_orders_per_3h: Option<u32>,
    pub(crate) certificates_per_domain_per_week: Option<u32>,
    pub(crate) duplicates_per_week: Option<u32>,
    pub(crate) failed_validations_per_hour: Option<u32>,
    pub(crate) requests_per_second: Option<u32>,
    pub(crate) names_per_certificate: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOnboarding {
    pub(crate) cname_zone: Option<Spanned<String>>,
    pub(crate) nameservers: Option<Spanned<Vec<String>>>,
    pub(crate) edge_addresses: Option<Spanned<Vec<String>>>,
    pub(crate) recheck_min: Option<Spanned<String>>,
    pub(crate) recheck_max: Option<Spanned<String>>,
    pub(crate) active_recheck: Option<Spanned<String>>,
    pub(crate) moved_grace: Option<Spanned<String>>,
    pub(crate) allow_private_origins: Option<bool>,
    pub(crate) acme_zone: Option<Spanned<String>>,
    pub(crate) acme_dns: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileInternalCa {
    pub(crate) names: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEvents {
    pub(crate) webhook: Option<Spanned<String>>,
    pub(crate) webhook_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileStorage {
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) endpoints: Option<Spanned<Vec<String>>>,
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) node_id: Option<Spanned<String>>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) password: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) lease_ttl: Option<Spanned<String>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) cert_file: Option<Spanned<String>>,
    pub(crate) key_file: Option<Spanned<String>>,
}

/// One `[[site]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSite {
    pub(crate) host: Spanned<OneOrMany>,
    pub(crate) origins: Spanned<Vec<Spanned<String>>>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) hsts: Option<Spanned<Hsts>>,
    pub(crate) issuer: Option<Spanned<String>>,
    pub(crate) managed: Option<bool>,
}

/// `host = "a"` or `host = ["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// `hsts = "max-age=…"` or `hsts = false`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Hsts {
    Enabled(bool),
    Value(String),
}
