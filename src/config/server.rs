//! `[server]` checked into `ServerSettings`: the listeners, the data directory, the limits
//! and timeouts every connection gets, the admin token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::Issues;
use super::file::FileServer;
use super::values::{
    addr, default_workers, duration, header_bytes, loopback_if_unspecified, positive,
};

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
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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

/// `[server]`, checked.
pub(super) fn convert(s: FileServer, base: &Path, issues: &mut Issues<'_>) -> ServerSettings {
    let https = addr(s.https, DEFAULT_HTTPS, "server.https", issues);
    ServerSettings {
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
    }
}
