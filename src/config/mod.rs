//! Configuration: the TOML file parsed once into checked types. Every problem of a file is
//! reported at once with file:line:column; code after `load` never re-checks.

mod acme;
pub mod cert_files;
mod error;
mod file;
mod onboarding;
mod origin;
mod server;
mod sites;
mod storage;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::certs::HostName;
pub use acme::{AcmeSettings, CaLimits, ChallengeKind, IssuerKind};
use error::Issues;
pub use error::{ConfigError, ConfigIssue};
use file::FileConfig;
pub use onboarding::OnboardingSettings;
use origin::webhook_url;
pub use origin::{OriginUrl, OriginUrlError, OriginUrlProblem, WebhookUrlError};
pub use server::ServerSettings;
pub use sites::{CertFiles, SiteConfig};
use sites::{check_unique_hosts, convert_site};
pub use storage::{ClientIdentity, EtcdSettings, EtcdTls, StorageSettings};
use values::*;
pub(crate) use values::{duration, positive};

/// The demo configuration compiled into the binary: `onehttps run` with no `--config`.
pub const EMBEDDED_DEMO: &str = include_str!("../../config/demo.toml");

pub const DEFAULT_HSTS: &str = "max-age=31536000";
const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_MAX_HEADER_BYTES: u32 = 64 * 1024;
const MIN_HEADER_BYTES: u32 = 8 * 1024;
const DEFAULT_SESSION_CACHE_ENTRIES: u32 = 20_000;
const DEFAULT_KEY_CACHE_ENTRIES: u32 = 50_000;
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_ORIGIN_DOWN_FOR: Duration = Duration::from_secs(10);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const DEFAULT_POOL_MAX_IDLE_PER_ORIGIN: u32 = 256;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the embedded demo.
    pub path: Option<PathBuf>,
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub proxy: ProxySettings,
    pub log: LogSettings,
    pub acme: AcmeSettings,
    pub onboarding: OnboardingSettings,
    pub events: EventSettings,
    /// `[internal_ca] names`: what the internal CA may issue for, besides the built-in local
    /// suffixes (its root is name-constrained to them).
    pub internal_names: crate::certs::local_names::LocalNames,
    pub storage: StorageSettings,
    pub sites: Vec<SiteConfig>,
}

/// `[events]`: where lifecycle events are POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// `http://` URL receiving each event as JSON; `None` = no webhook.
    pub webhook: Option<http::Uri>,
    /// Per attempt; three attempts per event.
    pub webhook_timeout: Duration,
}

/// TLS protocol versions the edge accepts at the lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTlsVersion {
    Tls12,
    Tls13,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub min_version: MinTlsVersion,
    /// `Strict-Transport-Security` value for sites that do not set their own; `None` = off.
    pub hsts: Option<String>,
    pub session_tickets: bool,
    pub session_cache_entries: usize,
    /// How many decoded signing keys are kept; the others stay sealed until a handshake.
    pub key_cache_entries: usize,
    /// Site served to clients that send no SNI; without it they are refused.
    pub default_host: Option<HostName>,
    /// How often certificate files are checked for changes.
    pub watch_interval: Duration,
}

/// `[proxy]`: how the edge talks to origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub connect_timeout: Duration,
    /// Time from sending a request to the origin's response head.
    pub response_timeout: Duration,
    /// How long an origin that refused a connection is skipped.
    pub origin_down_for: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_origin: usize,
    /// Peers whose `X-Forwarded-For`, `Forwarded` and `X-Real-IP` are kept (appended to);
    /// from anyone else they are replaced by what the edge saw.
    pub trusted_proxies: Vec<crate::net::Cidr>,
    /// An upgraded tunnel (WebSocket) with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `onehttps=debug`.
    pub level: String,
    pub access: bool,
}

impl Config {
    /// Reads and checks the file at `path`, including the certificate files it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::parse(&source, base).map_err(|issues| ConfigError::Invalid {
            path: path.to_owned(),
            issues,
        })?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// The embedded demo configuration, with relative paths under the working directory.
    pub fn embedded_demo() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_DEMO, Path::new(".")).map_err(|issues| ConfigError::Invalid {
            path: PathBuf::from("<embedded config/demo.toml>"),
            issues,
        })
    }

    /// Parses TOML `source`; relative paths are taken from `base`.
    pub fn parse(source: &str, base: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let file: FileConfig = match toml::from_str(source) {
            Ok(file) => file,
            Err(e) => {
                let mut issues = Issues::new(source);
                let span = e.span().unwrap_or(0..0);
                let key = error::key_at(source, span.start);
                issues.at(span, key, e.message().trim().to_owned());
                return Err(issues.list);
            }
        };
        let mut issues = Issues::new(source);
        let config = convert(file, base, &mut issues);
        if issues.list.is_empty() {
            Ok(config)
        } else {
            Err(issues.list)
        }
    }
}

fn convert(file: FileConfig, base: &Path, issues: &mut Issues<'_>) -> Config {
    let server = server::convert(file.server, base, issues);
    let t = file.tls;
    let min_version = match t.min_version {
        None => MinTlsVersion::Tls12,
        Some(v) => match v.get_ref().as_str() {
            "1.2" => MinTlsVersion::Tls12,
            "1.3" => MinTlsVersion::Tls13,
            other => {
                issues.at(
                    v.span(),
                    "tls.min_version",
                    format!("`{other}` is not one of \"1.2\", \"1.3\""),
                );
                MinTlsVersion::Tls12
            }
        },
    };
    let global_hsts = hsts(t.hsts, Some(DEFAULT_HSTS.to_owned()), "tls.hsts", issues);
    let tls = TlsSettings {
        min_version,
        hsts: global_hsts.clone(),
        session_tickets: t.session_tickets.unwrap_or(true),
        session_cache_entries: positive(
            t.session_cache,
            DEFAULT_SESSION_CACHE_ENTRIES,
            "tls.session_cache",
            issues,
        ),
        key_cache_entries: positive(
            t.key_cache,
            DEFAULT_KEY_CACHE_ENTRIES,
            "tls.key_cache",
            issues,
        ),
        default_host: t
            .default_host
            .and_then(|h| host(&h, "tls.default_host", issues)),
        watch_interval: duration(
            t.watch_interval,
            DEFAULT_WATCH_INTERVAL,
            "tls.watch_interval",
            issues,
        ),
    };
    let p = file.proxy;
    let proxy = ProxySettings {
        connect_timeout: duration(
            p.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
            "proxy.connect_timeout",
            issues,
        ),
        response_timeout: duration(
            p.response_timeout,
            DEFAULT_RESPONSE_TIMEOUT,
            "proxy.response_timeout",
            issues,
        ),
        origin_down_for: duration(
            p.origin_down_for,
            DEFAULT_ORIGIN_DOWN_FOR,
            "proxy.origin_down_for",
            issues,
        ),
        pool_idle_timeout: duration(
            p.pool_idle_timeout,
            DEFAULT_POOL_IDLE_TIMEOUT,
            "proxy.pool_idle_timeout",
            issues,
        ),
        pool_max_idle_per_origin: positive(
            p.pool_max_idle_per_origin,
            DEFAULT_POOL_MAX_IDLE_PER_ORIGIN,
            "proxy.pool_max_idle_per_origin",
            issues,
        ),
        tunnel_idle_timeout: duration(
            p.tunnel_idle_timeout,
            DEFAULT_TUNNEL_IDLE_TIMEOUT,
            "proxy.tunnel_idle_timeout",
            issues,
        ),
        trusted_proxies: p.trusted_proxies.map_or_else(Vec::new, |list| {
            let span = list.span();
            list.into_inner()
                .iter()
                .filter_map(|raw| {
                    raw.parse()
                        .map_err(|why: crate::net::CidrError| {
                            issues.at(span.clone(), "proxy.trusted_proxies", why.to_string());
                        })
                        .ok()
                })
                .collect()
        }),
    };
    let l = file.log;
    let format = match l.format {
        None => LogFormat::Human,
        Some(f) => match f.get_ref().as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                issues.at(
                    f.span(),
                    "log.format",
                    format!("`{other}` is not one of \"human\", \"json\""),
                );
                LogFormat::Human
            }
        },
    };
    let level = match l.level {
        None => "info".to_owned(),
        Some(level) => {
            if let Err(e) = level.get_ref().parse::<tracing_subscriber::EnvFilter>() {
                issues.at(level.span(), "log.level", format!("not a log filter: {e}"));
            }
            level.into_inner()
        }
    };
    let log = LogSettings {
        format,
        level,
        access: l.access.unwrap_or(true),
    };
    let mut acme = acme::convert(file.acme, base, issues);
    let onboarding = onboarding::convert(file.onboarding, issues);
    if acme.nameservers.is_empty() {
        acme.nameservers.clone_from(&onboarding.nameservers);
    }
    acme.edge_addresses.clone_from(&onboarding.edge_addresses);
    acme.dns01 = onboarding.acme_zone.is_some();
    let events = EventSettings {
        webhook: file
            .events
            .webhook
            .and_then(|w| match webhook_url(w.get_ref(), &onboarding) {
                Ok(uri) => Some(uri),
                Err(why) => {
                    issues.at(w.span(), "events.webhook", why.to_string());
                    None
                }
            }),
        webhook_timeout: duration(
            file.events.webhook_timeout,
            Duration::from_secs(5),
            "events.webhook_timeout",
            issues,
        ),
    };
    let internal_names = internal_names(file.internal_ca.names, issues);
    let storage = storage::convert(file.storage, base, issues);
    let sites: Vec<SiteConfig> = file
        .site
        .into_iter()
        .enumerate()
        .filter_map(|(i, site)| {
            let context = (global_hsts.as_ref(), &acme, &internal_names);
            convert_site(i, site, base, context, issues)
        })
        .collect();
    check_unique_hosts(&sites, &tls, issues);
    Config {
        path: None,
        server,
        tls,
        proxy,
        log,
        acme,
        onboarding,
        events,
        internal_names,
        storage,
        sites,
    }
}

/// `[internal_ca] names`: DNS suffixes such as `corp` or `home.arpa` (no wildcards).
fn internal_names(
    value: Option<Spanned<Vec<String>>>,
    issues: &mut Issues<'_>,
) -> crate::certs::local_names::LocalNames {
    let Some(value) = value else {
        return crate::certs::local_names::LocalNames::default();
    };
    let span = value.span();
    let mut names = Vec::new();
    for raw in value.into_inner() {
        match HostName::parse(&raw.to_ascii_lowercase()) {
            Ok(name) if !name.is_wildcard() => names.push(name.to_string()),
            _ => issues.at(
                span.clone(),
                "internal_ca.names",
                format!("`{raw}` is not a DNS suffix like `corp` or `home.arpa`"),
            ),
        }
    }
    crate::certs::local_names::LocalNames::new(names)
}

/// `error: cause: cause` on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
