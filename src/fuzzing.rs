//! Entry points for fuzzing every parser that takes outside input: the config file, PEM
//! bundles, stored records, admin API bodies, host names, and a request head as the proxy
//! rewrites it. `fuzz/` drives them with AFL++ (`scripts/fuzz`); `tests/fuzz_targets.rs`
//! replays the corpus and random inputs through them in every test run. Each must return
//! (never panic) on any input.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

/// A fuzz target: takes any bytes, must never panic.
pub type Target = fn(&[u8]);

/// The fuzz targets by name.
pub const TARGETS: [(&str, Target); 6] = [
    ("config", config),
    ("pem", pem),
    ("record", record),
    ("admin_json", admin_json),
    ("host_name", host_name),
    ("request_head", request_head),
];

/// A config file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, Path::new("/nonexistent"));
    }
}

/// A PEM chain and key (split at the first NUL byte), as an upload or key file.
pub fn pem(data: &[u8]) {
    let (chain, key) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let _ = crate::certs::CertBundle::from_pem(chain, key);
    let _ = crate::certs::bundle::only_certificates(chain);
    if let Ok(Some(key)) = crate::certs::PlainKey::from_pem(key) {
        let _ = crate::certs::CertBundle::from_chain_pem(chain, &key.as_der());
    }
}

/// A stored certificate record, as the store reads it back.
pub fn record(data: &[u8]) {
    let Ok(record) = serde_json::from_slice::<crate::certs::CertRecord>(data) else {
        return;
    };
    if let Some(chain) = &record.chain_pem {
        let _ = crate::certs::Chain::from_pem(chain.as_bytes());
    }
    for name in &record.names {
        let _ = crate::certs::HostName::parse(name);
    }
}

/// A body of `POST /api/v1/sites` or `POST /api/v1/certificates`.
pub fn admin_json(data: &[u8]) {
    crate::admin::check_bodies(data);
}

/// A host name as the API, the SNI path and the Host header see it.
pub fn host_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ascii) = idna::domain_to_ascii(text) {
        let _ = crate::certs::HostName::parse(&ascii);
    }
    if let Some(host) = crate::certs::names::normalize_authority(text) {
        let _ = crate::certs::HostName::parse(&host);
    }
}

/// Header lines (`name: value`) rewritten as the proxy does for an origin.
pub fn request_head(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let host = headers
        .get(http::header::HOST)
        .cloned()
        .unwrap_or(HeaderValue::from_static("a.example"));
    if let Ok(host) = host.to_str() {
        let _ = crate::certs::names::normalize_authority(host);
    }
    let upgrade = crate::proxy::headers::is_tunnel_upgrade(&headers);
    crate::proxy::headers::strip_hop_by_hop(&mut headers, upgrade);
    crate::proxy::headers::drop_near_miss_framing(&mut headers);
    crate::proxy::headers::join_cookies(&mut headers);
    let peer = std::net::IpAddr::from([192, 0, 2, 1]);
    crate::proxy::headers::set_forwarded(
        &mut headers,
        peer,
        &host,
        "https",
        data.len().is_multiple_of(2),
    );
}
