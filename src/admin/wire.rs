//! How the API reads and writes the values several routes share: a host name given in a
//! path or a body (internationalised names to punycode, bare top-level names refused) and a
//! certificate's validity as JSON.

use std::time::SystemTime;

use serde_json::json;

use super::ApiError;
use super::errors::ErrorCode;
use crate::certs::HostName;
use crate::certs::record::unix;

/// Validates and normalises a host name given through the API.
pub(crate) fn api_host(raw: &str) -> Result<HostName, ApiError> {
    let bad = |message: String| ApiError::bad_request(ErrorCode::BadHost, message);
    // Internationalised names are stored and served in their punycode (xn--) form.
    let ascii = idna::domain_to_ascii(raw).map_err(|_| {
        bad(format!(
            "`{raw}` is not a valid internationalised domain name"
        ))
    })?;
    let host = HostName::parse(&ascii).map_err(|e| bad(format!("`{raw}`: {e}")))?;
    if !host.as_str().trim_start_matches("*.").contains('.') {
        return Err(bad(format!("`{raw}` is a bare top-level name, not a site")));
    }
    Ok(host)
}

/// A served certificate's serial, notBefore, notAfter (RFC 3339) and days left at `now`
/// (the inventory's entries and the sites list both show them).
pub(crate) fn validity(info: &crate::certs::CertInfo, now: SystemTime) -> serde_json::Value {
    let left = unix(info.not_after).saturating_sub(unix(now));
    json!({
        "serial": info.serial,
        "not_before": humantime::format_rfc3339_seconds(info.not_before).to_string(),
        "not_after": humantime::format_rfc3339_seconds(info.not_after).to_string(),
        "days_left": left as f64 / 86_400.0,
    })
}
