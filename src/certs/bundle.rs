//! A certificate chain with its private key, parsed from PEM and checked: the chain parses,
//! the key matches the leaf, the leaf is within its validity and covers the site's names.
//! Nothing here touches the network or the certificate table.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use super::chain::Chain;
use super::names::HostName;
use super::sealed_key::{PlainKey, SealedKey, SealedKeyError};

/// What we know about a certificate after parsing its leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names of the subjectAltName extension, lowercase.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Serial number, lowercase hex with `:` separators, as openssl prints it.
    pub serial: String,
}

/// A parsed chain and its private key (sealed in memory), ready to be served. The signing
/// key is decoded only when a handshake needs it ([`certified_key`](Self::certified_key)).
#[derive(Clone)]
pub struct CertBundle {
    pub chain: Chain,
    key: SealedKey,
    pub info: CertInfo,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key is never printed.
        f.debug_struct("CertBundle")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Why a certificate/key pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate found in the PEM data")]
    NoCertificate,
    #[error("no private key found in the PEM data")]
    NoKey,
    #[error("PEM data is malformed")]
    Pem(#[source] rustls_pki_types::pem::Error),
    #[error(
        "the certificate chain holds a `{0}` block; it must hold certificates only (give the private key separately)"
    )]
    NotACertificate(String),
    #[error("certificate #{index} of the chain does not parse: {reason}")]
    Chain { index: usize, reason: String },
    #[error("private key is not usable")]
    Key(#[source] rustls::Error),
    #[error(transparent)]
    Sealed(#[from] SealedKeyError),
    #[error("private key does not match the certificate")]
    KeyMismatch,
    #[error("certificate expired at {0}")]
    Expired(humantime::Rfc3339Timestamp),
    #[error("certificate is not valid before {0}")]
    NotYetValid(humantime::Rfc3339Timestamp),
    #[error("certificate does not cover `{name}` (it covers: {covered})")]
    NameNotCovered { name: String, covered: String },
}

impl CertBundle {
    /// Parses a PEM chain (leaf first) and a PEM private key; checks that they match.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        let chain = parse_chain(chain_pem)?;
        let key = PlainKey::from_pem(key_pem)
            .map_err(CertError::Pem)?
            .ok_or(CertError::NoKey)?;
        Self::from_der(chain, &key.as_der())
    }

    /// Parses a PEM chain (leaf first) for a key already in DER; checks that they match.
    pub fn from_chain_pem(chain_pem: &[u8], key: &PrivateKeyDer<'_>) -> Result<Self, CertError> {
        Self::from_der(parse_chain(chain_pem)?, key)
    }

    /// Builds a bundle from DER parts (leaf first).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, CertError> {
        let Some(leaf) = chain.first() else {
            return Err(CertError::NoCertificate);
        };
        let info = parse_leaf(leaf)?;
        for (index, cert) in chain.iter().enumerate().skip(1) {
            x509_parser::parse_x509_certificate(cert).map_err(|e| CertError::Chain {
                index,
                reason: e.to_string(),
            })?;
        }
        let signing_key =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(key).map_err(CertError::Key)?;
        let sealed = SealedKey::seal(key)?;
        let chain = Chain::new(chain).ok_or(CertError::NoCertificate)?;
        match CertifiedKey::new(vec![chain.leaf().into_owned()], signing_key).keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(CertError::KeyMismatch);
            }
            Err(other) => return Err(CertError::Key(other)),
        }
        Ok(Self {
            chain,
            key: sealed,
            info,
        })
    }

    /// Builds a bundle from a PEM chain and key that were checked when they were stored
    /// (the store's records are sealed, so they are what was written): the leaf is parsed
    /// for its names and dates, the key is sealed but not decoded. Loading a million sites
    /// costs no key decoding; a key that fails to decode later fails its handshakes.
    pub fn from_stored(chain_pem: &[u8], key: &PrivateKeyDer<'_>) -> Result<Self, CertError> {
        let chain = Chain::from_pem(chain_pem)
            .map_err(CertError::Pem)?
            .ok_or(CertError::NoCertificate)?;
        Self::from_trusted_parts(chain, key)
    }

    /// Like [`from_stored`](Self::from_stored), from DER parts.
    pub fn from_trusted_parts(chain: Chain, key: &PrivateKeyDer<'_>) -> Result<Self, CertError> {
        Ok(Self {
            info: parse_leaf(&chain.leaf())?,
            key: SealedKey::seal(key)?,
            chain,
        })
    }

    /// Like [`from_stored`](Self::from_stored), with the leaf's names, dates and serial
    /// taken from the authenticated record that stored them with the chain (the leaf is
    /// not parsed again: a tenth of a restart's work).
    pub fn from_stored_with_info(
        chain_pem: &[u8],
        key: SealedKey,
        info: CertInfo,
    ) -> Result<Self, CertError> {
        let chain = Chain::from_pem(chain_pem)
            .map_err(CertError::Pem)?
            .ok_or(CertError::NoCertificate)?;
        Ok(Self { info, key, chain })
    }

    /// Opens and decodes the signing key: what a handshake serves.
    pub fn certified_key(&self) -> Result<CertifiedKey, CertError> {
        Ok(CertifiedKey::new(
            self.chain.to_vec(),
            self.key.signing_key()?,
        ))
    }

    /// Checks that the certificate is valid at `now` and covers every one of `hosts`.
    pub fn check_serves(&self, hosts: &[HostName], now: SystemTime) -> Result<(), CertError> {
        if now > self.info.not_after {
            return Err(CertError::Expired(humantime::format_rfc3339_seconds(
                self.info.not_after,
            )));
        }
        if now < self.info.not_before {
            return Err(CertError::NotYetValid(humantime::format_rfc3339_seconds(
                self.info.not_before,
            )));
        }
        for host in hosts {
            if !self.covers(host) {
                return Err(CertError::NameNotCovered {
                    name: host.to_string(),
                    covered: self.info.names.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Whether some subjectAltName of the leaf covers `host` (a wildcard host needs the same
    /// wildcard in the certificate).
    pub fn covers(&self, host: &HostName) -> bool {
        self.info
            .names
            .iter()
            .any(|san| match HostName::parse(san) {
                Ok(san) if host.is_wildcard() => san == *host,
                Ok(san) => san.covers(host.as_str()),
                Err(_) => false,
            })
    }
}

/// The certificates of a PEM chain; at least one, and nothing else: a private key (or any
/// other block) pasted into a chain would otherwise be stored with it, in plaintext.
fn parse_chain(chain_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    only_certificates(chain_pem)?;
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertError::Pem)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(chain)
}

/// Refuses PEM text with any block other than `CERTIFICATE`.
pub fn only_certificates(pem: &[u8]) -> Result<(), CertError> {
    let text = String::from_utf8_lossy(pem);
    for line in text.lines() {
        let Some(label) = line.trim().strip_prefix("-----BEGIN ") else {
            continue;
        };
        let label = label.trim_end_matches('-').trim();
        if label != "CERTIFICATE" {
            return Err(CertError::NotACertificate(label.to_owned()));
        }
    }
    Ok(())
}

fn parse_leaf(leaf: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let chain_err = |reason: String| CertError::Chain { index: 0, reason };
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| chain_err(e.to_string()))?;
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| chain_err(format!("subjectAltName: {e}")))?
    {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        names,
        not_before: unix_to_system(validity.not_before.timestamp()),
        not_after: unix_to_system(validity.not_after.timestamp()),
        serial: cert.raw_serial_as_string(),
    })
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::selfsigned;

    fn hosts(names: &[&str]) -> Vec<HostName> {
        names.iter().map(|n| HostName::parse(n).unwrap()).collect()
    }

    #[test]
    fn parses_a_generated_pair_and_checks_names() {
        let pair = selfsigned::generate(&hosts(&["example.com", "*.example.com"]), 30).unwrap();
        let bundle =
            CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes()).unwrap();
        assert_eq!(bundle.info.names, vec!["example.com", "*.example.com"]);
        let now = SystemTime::now();
        bundle
            .check_serves(
                &hosts(&["example.com", "a.example.com", "*.example.com"]),
                now,
            )
            .unwrap();
        let err = bundle
            .check_serves(&hosts(&["other.com"]), now)
            .unwrap_err();
        assert!(matches!(err, CertError::NameNotCovered { .. }), "{err}");
        let later = now + Duration::from_secs(31 * 86400);
        assert!(matches!(
            bundle.check_serves(&[], later),
            Err(CertError::Expired(_))
        ));
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let a = selfsigned::generate(&hosts(&["a.test"]), 1).unwrap();
        let b = selfsigned::generate(&hosts(&["a.test"]), 1).unwrap();
        let err = CertBundle::from_pem(a.chain_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch), "{err}");
    }

    #[test]
    fn refuses_malformed_pem() {
        let a = selfsigned::generate(&hosts(&["a.test"]), 1).unwrap();
        assert!(matches!(
            CertBundle::from_pem(b"", a.key_pem.as_bytes()),
            Err(CertError::NoCertificate)
        ));
        assert!(matches!(
            CertBundle::from_pem(a.chain_pem.as_bytes(), b"junk"),
            Err(CertError::NoKey)
        ));
        let truncated = &a.chain_pem[..a.chain_pem.len() / 2];
        assert!(CertBundle::from_pem(truncated.as_bytes(), a.key_pem.as_bytes()).is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(CertBundle::from_pem(garbage.as_bytes(), a.key_pem.as_bytes()).is_err());
    }

    #[test]
    fn a_chain_with_a_key_block_is_refused() {
        let a = selfsigned::generate(&hosts(&["a.test"]), 1).unwrap();
        for chain in [
            format!("{}{}", a.chain_pem, a.key_pem),
            format!("{}{}", a.key_pem, a.chain_pem),
            format!(
                "{}-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
                a.chain_pem
            ),
        ] {
            let err = CertBundle::from_pem(chain.as_bytes(), a.key_pem.as_bytes()).unwrap_err();
            assert!(matches!(err, CertError::NotACertificate(_)), "{err}");
        }
    }
}
