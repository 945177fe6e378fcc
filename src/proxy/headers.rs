//! Header rewriting between client and origin: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*` set from the connection (a client cannot forge its address), HTTP/2
//! cookie fields joined for HTTP/1.1 (RFC 9113 §8.2.3), upgrade detection.

use std::io::Write;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection and never cross the proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether `headers` ask to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Whether `headers` ask for an upgrade the edge tunnels: any but h2c (cleartext HTTP/2
/// would give the client a raw tunnel past the Host check and the forwarding headers).
pub fn is_tunnel_upgrade(headers: &HeaderMap) -> bool {
    is_upgrade(headers) && !upgrades_to_h2c(headers)
}

/// Whether the `Upgrade` header asks for h2c (cleartext HTTP/2), alone or among others.
fn upgrades_to_h2c(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
}

/// Headers that decide how a message is framed or routed; a name that becomes one of them
/// when `_` is read as `-` (`Transfer_Encoding`) is dropped: some origins (CGI, WSGI, PHP)
/// treat the two alike, and the edge framed the body without it.
const FRAMING: [&str; 9] = [
    "transfer-encoding",
    "content-length",
    "connection",
    "upgrade",
    "host",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Removes near-miss spellings of framing headers (see [`FRAMING`]).
pub fn drop_near_miss_framing(headers: &mut HeaderMap) {
    let near_misses: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .filter(|name| FRAMING.contains(&name.as_str().replace('_', "-").as_str()))
        .cloned()
        .collect();
    for name in near_misses {
        headers.remove(name);
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and those the `Connection` header names. When `keep_upgrade`,
/// `Upgrade` and `Connection: upgrade` survive (the upgrade is forwarded end to end).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| !(keep_upgrade && *n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Sets `X-Forwarded-For` to the client, `X-Forwarded-Proto` (`proto`) and
/// `X-Forwarded-Host`. The edge is the first hop: what a client claims in `X-Forwarded-For`,
/// `Forwarded` or `X-Real-IP` is dropped, unless the peer is a trusted proxy
/// (`proxy.trusted_proxies`), whose `X-Forwarded-For` is appended to and whose other two
/// headers are kept.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    host: &HeaderValue,
    proto: &'static str,
    peer_trusted: bool,
) {
    let prior = peer_trusted
        .then(|| joined(headers, &X_FORWARDED_FOR, ", "))
        .flatten();
    // The usual case, no trusted prior hops: the address is written on the stack, and the
    // header value is the one allocation.
    let mut written = [0u8; 64];
    let xff = match prior {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {client}")),
        None => {
            let mut cursor = std::io::Cursor::new(&mut written[..]);
            let _ = write!(cursor, "{client}");
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            HeaderValue::from_bytes(&written[..len])
        }
    };
    if !peer_trusted {
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    match xff {
        Ok(v) => headers.insert(X_FORWARDED_FOR, v),
        Err(_) => headers.remove(X_FORWARDED_FOR),
    };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_HOST, host.clone());
}

/// Joins the `cookie` fields of an HTTP/2 request into the one field HTTP/1.1 allows,
/// separated by "; " (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    if let Some(v) =
        joined(headers, &header::COOKIE, "; ").and_then(|j| HeaderValue::from_str(&j).ok())
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Every non-empty value of `name` joined with `sep`; `None` when there is none.
fn joined(headers: &HeaderMap, name: &HeaderName, sep: &str) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn near_miss_framing_headers_are_dropped() {
        let mut h = map(&[
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("x_custom_header", "kept"),
            ("content-length", "3"),
        ]);
        drop_near_miss_framing(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-length", "x_custom_header"]);
        assert!(upgrades_to_h2c(&map(&[("upgrade", "websocket, H2C")])));
        assert!(!upgrades_to_h2c(&map(&[("upgrade", "websocket")])));
        let ws = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let h2c = map(&[("connection", "Upgrade"), ("upgrade", "h2c")]);
        assert!(is_tunnel_upgrade(&ws) && !is_tunnel_upgrade(&h2c));
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarded_headers_come_from_the_connection() {
        let client_claims = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ];
        let edge_sees = "127.0.0.1".parse().unwrap();
        let host = HeaderValue::from_static("a.test");

        let mut h = map(&client_claims);
        set_forwarded(&mut h, edge_sees, &host, "https", false);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.test");
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());

        let mut h = map(&client_claims);
        set_forwarded(&mut h, edge_sees, &host, "https", true);
        assert_eq!(
            h.get("x-forwarded-for").unwrap(),
            "203.0.113.9, 198.51.100.1, 127.0.0.1"
        );
        assert_eq!(h.get("forwarded").unwrap(), "for=203.0.113.9");
        assert_eq!(h.get("x-real-ip").unwrap(), "203.0.113.9");
    }

    #[test]
    fn http2_cookies_are_joined_into_one_field() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2; c=3");
        let mut one = map(&[("cookie", "a=1")]);
        join_cookies(&mut one);
        assert_eq!(one.get("cookie").unwrap(), "a=1");
    }
}
