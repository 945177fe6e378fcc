//! Configuration: the TOML file parsed once into checked types. Every problem of a file is
//! reported at once with file:line:column; code after `load` never re-checks.

mod acme;
pub mod cert_files;
mod error;
mod file;
mod onboarding;
mod storage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::certs::{CertBundle, HostName};
pub use acme::{AcmeSettings, ChallengeKind, IssuerKind};
use cert_files::CertFileError;
use error::Issues;
pub use error::{ConfigError, ConfigIssue};
use file::{FileConfig, FileSite, Hsts};
pub use onboarding::OnboardingSettings;
pub use storage::{ClientIdentity, EtcdSettings, EtcdTls, StorageSettings};

/// The demo configuration compiled into the binary: `onehttps run` with no `--config`.
pub const EMBEDDED_DEMO: &str = include_str!("../../config/demo.toml");

pub const DEFAULT_HSTS: &str = "max-age=31536000";
const DEFAULT_HTTPS: &str = "0.0.0.0:443";
const DEFAULT_HTTP: &str = "0.0.0.0:80";
const DEFAULT_ADMIN: &str = "127.0.0.1:9180";
const DEFAULT_DATA_DIR: &str = "/var/lib/onehttps";
const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MIN_TRANSFER_BYTES: u32 = 8 * 1024;
const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 256;
const DEFAULT_HANDSHAKES_PER_IP: u32 = 500;
const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_MAX_HEADER_BYTES: u32 = 64 * 1024;
const MIN_HEADER_BYTES: u32 = 8 * 1024;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
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
    pub internal_names: crate::issue::LocalNames,
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

/// `[server]`: listeners, storage and the limits on what a client may make us wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    /// The HTTPS port clients see (used in redirects); defaults to the listener's port.
    pub https_public_port: u16,
    /// Open connections per listener; more wait in the kernel's accept backlog.
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// Slowloris bound: a request head must arrive within this; HTTP/1.1 connections idle
    /// between requests are also closed after it (hyper starts the timer when it waits).
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// Where the self-check after each certificate swap connects: the address clients reach
    /// (a load balancer in front of the edge), else the HTTPS listener (on loopback when it
    /// listens on every address).
    pub self_check: SocketAddr,
    pub shutdown_grace: Duration,
    /// Serve the built-in welcome origin on this address (demos).
    pub welcome_page: Option<SocketAddr>,
    /// Bearer token of the admin API; `None` = generated into `data_dir/admin.token`.
    pub admin_token: Option<String>,
    /// A request in flight (not waiting for its origin's response head) must move at least
    /// `min_transfer_bytes` of body, either way, per this period, or its connection closes:
    /// a minimum rate that cuts stalled readers and zero windows, not slow transfers.
    pub transfer_timeout: Duration,
    pub min_transfer_bytes: u64,
    /// Open connections per client address (IPv6: per /64), per listener.
    pub max_connections_per_ip: usize,
    /// TLS handshakes per second per client address (bursts of twice this).
    pub handshakes_per_ip: u32,
    /// Threads serving client connections, each with its own single-threaded runtime
    /// (default: one per core).
    pub workers: usize,
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

/// A plain-HTTP origin: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginUrl {
    pub authority: http::uri::Authority,
}

impl std::fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

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
    let s = file.server;
    let https = addr(s.https, DEFAULT_HTTPS, "server.https", issues);
    let server = ServerSettings {
        https,
        http: addr(s.http, DEFAULT_HTTP, "server.http", issues),
        admin: addr(s.admin, DEFAULT_ADMIN, "server.admin", issues),
        data_dir: base.join(
            s.data_dir
                .map_or(DEFAULT_DATA_DIR.into(), Spanned::into_inner),
        ),
        https_public_port: s
            .https_public_port
            .map_or(https.port(), Spanned::into_inner),
        max_connections: positive(
            s.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            "server.max_connections",
            issues,
        ),
        handshake_timeout: duration(
            s.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
            "server.handshake_timeout",
            issues,
        ),
        header_timeout: duration(
            s.header_timeout,
            DEFAULT_HEADER_TIMEOUT,
            "server.header_timeout",
            issues,
        ),
        idle_timeout: duration(
            s.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            "server.idle_timeout",
            issues,
        ),
        max_header_bytes: header_bytes(s.max_header_bytes, issues),
        self_check: match s.self_check_address {
            Some(value) => addr(
                Some(value),
                DEFAULT_HTTPS,
                "server.self_check_address",
                issues,
            ),
            None => loopback_if_unspecified(https),
        },
        shutdown_grace: duration(
            s.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
            "server.shutdown_grace",
            issues,
        ),
        welcome_page: s
            .welcome_page
            .map(|a| addr(Some(a), "", "server.welcome_page", issues)),
        transfer_timeout: duration(
            s.transfer_timeout,
            DEFAULT_TRANSFER_TIMEOUT,
            "server.transfer_timeout",
            issues,
        ),
        min_transfer_bytes: s
            .min_transfer_bytes
            .map_or(DEFAULT_MIN_TRANSFER_BYTES, Spanned::into_inner)
            .into(),
        max_connections_per_ip: positive(
            s.max_connections_per_ip,
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            "server.max_connections_per_ip",
            issues,
        ),
        handshakes_per_ip: positive(
            s.handshakes_per_ip,
            DEFAULT_HANDSHAKES_PER_IP,
            "server.handshakes_per_ip",
            issues,
        )
        .try_into()
        .unwrap_or(u32::MAX),
        workers: positive(s.workers, default_workers(), "server.workers", issues),
        admin_token: s.admin_token.and_then(|t| {
            if t.get_ref().len() < 16 || t.get_ref().chars().any(|c| c.is_whitespace()) {
                issues.at(
                    t.span(),
                    "server.admin_token",
                    "must be at least 16 characters, no spaces",
                );
                None
            } else {
                Some(t.into_inner())
            }
        }),
    };
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
) -> crate::issue::LocalNames {
    let Some(value) = value else {
        return crate::issue::LocalNames::default();
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
    crate::issue::LocalNames::new(names)
}

fn convert_site(
    index: usize,
    site: FileSite,
    base: &Path,
    (global_hsts, acme, local): (Option<&String>, &AcmeSettings, &crate::issue::LocalNames),
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
fn site_issuer(
    value: Option<Spanned<String>>,
    hosts: &[HostName],
    local: &crate::issue::LocalNames,
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

fn load_cert(
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

fn check_unique_hosts(sites: &[SiteConfig], tls: &TlsSettings, issues: &mut Issues<'_>) {
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

/// `addr`, with an unspecified IP (listening on every address) replaced by loopback.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

fn addr(
    value: Option<Spanned<String>>,
    default: &str,
    key: &str,
    issues: &mut Issues<'_>,
) -> SocketAddr {
    let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
    let Some(value) = value else {
        return default.parse().unwrap_or(fallback);
    };
    value.get_ref().parse().unwrap_or_else(|e| {
        issues.at(
            value.span(),
            key,
            format!(
                "`{}` is not an address like 0.0.0.0:443 ({e})",
                value.get_ref()
            ),
        );
        fallback
    })
}

pub(crate) fn duration(
    value: Option<Spanned<String>>,
    default: Duration,
    key: &str,
    issues: &mut Issues<'_>,
) -> Duration {
    let Some(value) = value else { return default };
    match humantime::parse_duration(value.get_ref()) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            issues.at(value.span(), key, "must be longer than zero");
            default
        }
        Err(e) => {
            issues.at(
                value.span(),
                key,
                format!(
                    "`{}` is not a duration like \"10s\" or \"5m\" ({e})",
                    value.get_ref()
                ),
            );
            default
        }
    }
}

/// One connection worker per core the process may run on.
fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

pub(crate) fn positive(
    value: Option<Spanned<u32>>,
    default: u32,
    key: &str,
    issues: &mut Issues<'_>,
) -> usize {
    let v = value.as_ref().map_or(default, |v| *v.get_ref());
    if v == 0 {
        if let Some(value) = value {
            issues.at(value.span(), key, "must be at least 1");
        }
        return default as usize;
    }
    v as usize
}

fn header_bytes(value: Option<Spanned<u32>>, issues: &mut Issues<'_>) -> usize {
    let v = positive(
        value.clone(),
        DEFAULT_MAX_HEADER_BYTES,
        "server.max_header_bytes",
        issues,
    );
    if v < MIN_HEADER_BYTES as usize
        && let Some(value) = value
    {
        issues.at(
            value.span(),
            "server.max_header_bytes",
            format!("must be at least {MIN_HEADER_BYTES}"),
        );
    }
    v.max(MIN_HEADER_BYTES as usize)
}

fn host(value: &Spanned<String>, key: &str, issues: &mut Issues<'_>) -> Option<HostName> {
    HostName::parse(value.get_ref())
        .map_err(|e| issues.at(value.span(), key, format!("`{}`: {e}", value.get_ref())))
        .ok()
}

fn origin(value: &Spanned<String>, key: &str, issues: &mut Issues<'_>) -> Option<OriginUrl> {
    OriginUrl::parse(value.get_ref())
        .map_err(|why| issues.at(value.span(), key, why.to_string()))
        .ok()
}

impl OriginUrl {
    /// The port connected to (80 when the URL names none).
    pub fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(80)
    }

    /// The host as written, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// `http://host:port`, nothing else: no path, no query, no fragment, no credentials, a
    /// port in 1-65535.
    pub fn parse(raw: &str) -> Result<Self, OriginUrlError> {
        let fail = |why| OriginUrlError {
            raw: raw.to_owned(),
            why,
        };
        if raw.contains('#') {
            return Err(fail(OriginUrlProblem::Fragment));
        }
        let uri: http::Uri = raw
            .parse()
            .map_err(|e| fail(OriginUrlProblem::NotAUrl(e)))?;
        if uri.scheme_str() != Some("http") {
            return Err(fail(OriginUrlProblem::NotHttp));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(fail(OriginUrlProblem::Path));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| fail(OriginUrlProblem::NoHost))?;
        if authority.as_str().contains('@') {
            return Err(fail(OriginUrlProblem::Credentials));
        }
        if authority.host().is_empty() {
            return Err(fail(OriginUrlProblem::NoHost));
        }
        // `http` drops a port it cannot read as u16 (`:99999`), so look at the text.
        let text = authority.as_str();
        let port = (!text.ends_with(']'))
            .then(|| text.rsplit_once(':').map(|(_, port)| port))
            .flatten();
        if port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|p| p > 0)) {
            return Err(fail(OriginUrlProblem::Port));
        }
        Ok(Self { authority })
    }
}

/// Why a text is not an origin URL: the text, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("`{raw}` {why}")]
pub struct OriginUrlError {
    pub raw: String,
    pub why: OriginUrlProblem,
}

/// What is wrong with an origin URL.
#[derive(Debug, thiserror::Error)]
pub enum OriginUrlProblem {
    #[error("must not have a fragment")]
    Fragment,
    #[error("is not a URL: {0}")]
    NotAUrl(http::uri::InvalidUri),
    #[error("must start with http:// (origins are reached over plain HTTP)")]
    NotHttp,
    #[error("must not have a path or query: requests keep their own path")]
    Path,
    #[error("has no host")]
    NoHost,
    #[error("must not carry credentials")]
    Credentials,
    #[error("has a port outside 1-65535")]
    Port,
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("`{0}` is not an http:// URL")]
    NotHttp(String),
    #[error("webhook {0}")]
    Origin(OriginUrlError),
    #[error("`{0}` must not have a fragment")]
    Fragment(String),
    #[error("`{raw}` is {why}: set onboarding.allow_private_origins = true to send events there")]
    NotPublic { raw: String, why: &'static str },
}

/// The webhook: an `http://host:port/path` URL (no fragment, no credentials, a valid port);
/// a private, loopback or link-local IP only with `onboarding.allow_private_origins`.
fn webhook_url(raw: &str, onboarding: &OnboardingSettings) -> Result<http::Uri, WebhookUrlError> {
    let uri: http::Uri = raw
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("http"))
        .ok_or_else(|| WebhookUrlError::NotHttp(raw.to_owned()))?;
    let origin = OriginUrl::parse(&format!(
        "http://{}",
        uri.authority().map_or("", http::uri::Authority::as_str)
    ))
    .map_err(WebhookUrlError::Origin)?;
    if raw.contains('#') {
        return Err(WebhookUrlError::Fragment(raw.to_owned()));
    }
    if !onboarding.allow_private_origins
        && let Some(why) = origin
            .host()
            .parse()
            .ok()
            .and_then(crate::net::non_public_reason)
    {
        return Err(WebhookUrlError::NotPublic {
            raw: raw.to_owned(),
            why,
        });
    }
    Ok(uri)
}

fn hsts(
    value: Option<Spanned<Hsts>>,
    default: Option<String>,
    key: &str,
    issues: &mut Issues<'_>,
) -> Option<String> {
    let Some(value) = value else { return default };
    let span = value.span();
    match value.into_inner() {
        Hsts::Enabled(false) => None,
        Hsts::Enabled(true) => Some(DEFAULT_HSTS.to_owned()),
        Hsts::Value(v) => {
            let max_age_ok = v
                .split(';')
                .next()
                .and_then(|d| d.trim().strip_prefix("max-age="))
                .is_some_and(|n| n.parse::<u64>().is_ok());
            if !max_age_ok || http::HeaderValue::from_str(&v).is_err() {
                issues.at(
                    span,
                    key,
                    format!("`{v}` must start with max-age=SECONDS, or be false"),
                );
                return None;
            }
            Some(v)
        }
    }
}

#[cfg(test)]
mod tests;
