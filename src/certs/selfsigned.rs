//! Self-signed ECDSA P-256 certificates for unit tests of the certificate model.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use time::{Duration, OffsetDateTime};

use super::names::HostName;

/// A freshly generated chain and key, both PEM.
pub struct GeneratedPair {
    pub chain_pem: String,
    /// PKCS#8 private key; write it only to 0600 files.
    pub key_pem: String,
}

/// Makes a self-signed certificate for `hosts`, valid from an hour ago for `days` days.
pub fn generate(hosts: &[HostName], days: i64) -> Result<GeneratedPair, rcgen::Error> {
    let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().map_or("onehttps", HostName::as_str),
    );
    dn.push(DnType::OrganizationName, "onehttps self-signed");
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(GeneratedPair {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
