//! Host names: the checked `HostName` type (exact or `*.` wildcard) and the matching rules
//! shared by certificate selection, certificate validation and the Host/SNI check.

use std::fmt;

/// Longest DNS name in presentation form, without the trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A lowercase DNS name, or a wildcard `*.rest` whose `*` stands for exactly one label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

/// Why a string is not a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    #[error("host name is empty")]
    Empty,
    #[error("host name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("label `{0}` is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error("host name has an empty label")]
    EmptyLabel,
    #[error(
        "label `{0}` may only hold letters, digits and inner hyphens (use punycode `xn--` for international names)"
    )]
    BadLabel(String),
    #[error("`{0}` is an IP address, not a host name")]
    IpAddress(String),
    #[error(
        "a wildcard must be the whole leftmost label, followed by at least two labels (like `*.example.com`)"
    )]
    BadWildcard,
}

impl HostName {
    /// Parses and normalises (lowercase, no trailing dot) a host name or wildcard.
    pub fn parse(input: &str) -> Result<Self, HostNameError> {
        let name = input
            .strip_suffix('.')
            .unwrap_or(input)
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(HostNameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(HostNameError::TooLong);
        }
        // An IPv4 address fails on its all-numeric last label below; only a name with a colon
        // can be an IPv6 one (a restart parses a million names).
        if name.contains(':') && name.parse::<std::net::IpAddr>().is_ok() {
            return Err(HostNameError::IpAddress(name));
        }
        let (is_wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        if is_wildcard && rest.split('.').count() < 2 {
            return Err(HostNameError::BadWildcard);
        }
        for label in rest.split('.') {
            check_label(label)?;
        }
        // An all-numeric last label would make it look like an IPv4 address to resolvers.
        if rest
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(HostNameError::IpAddress(name));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// For `*.example.com`, `Some("example.com")`.
    pub fn wildcard_suffix(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }

    /// Whether this name (exact, or wildcard over one label) covers the normalised `name`.
    pub fn covers(&self, name: &str) -> bool {
        match self.wildcard_suffix() {
            None => self.0 == name,
            Some(suffix) => parent_of(name) == Some(suffix),
        }
    }
}

fn check_label(label: &str) -> Result<(), HostNameError> {
    if label.is_empty() {
        return Err(HostNameError::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(HostNameError::LabelTooLong(label.to_owned()));
    }
    let ok_chars = label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || label.starts_with('-') || label.ends_with('-') {
        return Err(HostNameError::BadLabel(label.to_owned()));
    }
    Ok(())
}

/// `a.example,b.example`: a set of names in one log field.
pub fn join(names: &[HostName]) -> String {
    names
        .iter()
        .map(HostName::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// `a.b.c` → `b.c`: the name a one-label wildcard for `name` would be keyed by.
pub fn parent_of(name: &str) -> Option<&str> {
    let (first, rest) = name.split_once('.')?;
    (!first.is_empty() && !rest.is_empty()).then_some(rest)
}

/// Normalises a `Host` header or `:authority`: drops the port and a trailing dot, lowercases.
/// Returns `None` when there is nothing name-like left.
pub fn normalize_authority(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: `[::1]:443`.
        &authority[..rest.find(']')? + 2]
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let table = [
            ("Example.COM.", Ok("example.com")),
            ("localhost", Ok("localhost")),
            ("*.Example.com", Ok("*.example.com")),
            ("xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
            ("", Err(HostNameError::Empty)),
            ("a..b", Err(HostNameError::EmptyLabel)),
            ("-a.com", Err(HostNameError::BadLabel("-a.com".into()))),
            ("a_b.com", Err(HostNameError::BadLabel("a_b".into()))),
            ("*.com", Err(HostNameError::BadWildcard)),
            ("a.*.com", Err(HostNameError::BadLabel("*".into()))),
            (
                "127.0.0.1",
                Err(HostNameError::IpAddress("127.0.0.1".into())),
            ),
            ("::1", Err(HostNameError::BadLabel("::1".into()))),
            ("bücher.de", Err(HostNameError::BadLabel("bücher".into()))),
        ];
        for (input, want) in table {
            let got = HostName::parse(input).map(|h| h.as_str().to_owned());
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "input {input:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("input {input:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(HostName::parse(&"a".repeat(64)).is_err());
        assert!(HostName::parse(&format!("{}.com", "a.".repeat(130))).is_err());
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let w = HostName::parse("*.example.com").unwrap();
        assert!(w.covers("a.example.com"));
        assert!(!w.covers("example.com"));
        assert!(!w.covers("a.b.example.com"));
        assert!(!w.covers("aexample.com"));
        let e = HostName::parse("example.com").unwrap();
        assert!(e.covers("example.com"));
        assert!(!e.covers("a.example.com"));
    }

    #[test]
    fn authority_normalisation() {
        assert_eq!(
            normalize_authority("Example.com:8443").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            normalize_authority("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_authority("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_authority(":443"), None);
        assert_eq!(normalize_authority(""), None);
    }
}
