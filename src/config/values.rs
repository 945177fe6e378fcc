//! The checks of single values every section uses: addresses, durations, positive numbers,
//! header sizes, host names, origins, HSTS; each reports its problem with the key and its
//! place in the file.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::error::Issues;
use super::file::Hsts;
use super::*;
use crate::certs::HostName;

/// `addr`, with an unspecified IP (listening on every address) replaced by loopback.
pub(super) fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
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

pub(super) fn addr(
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
pub(super) fn default_workers() -> u32 {
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

pub(super) fn header_bytes(value: Option<Spanned<u32>>, issues: &mut Issues<'_>) -> usize {
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

pub(super) fn host(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Issues<'_>,
) -> Option<HostName> {
    HostName::parse(value.get_ref())
        .map_err(|e| issues.at(value.span(), key, format!("`{}`: {e}", value.get_ref())))
        .ok()
}

pub(super) fn origin(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Issues<'_>,
) -> Option<OriginUrl> {
    OriginUrl::parse(value.get_ref())
        .map_err(|why| issues.at(value.span(), key, why.to_string()))
        .ok()
}

pub(super) fn hsts(
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
