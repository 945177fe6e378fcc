//! Private keys and CSRs for new certificates, made in-process: ECDSA P-256 by default
//! (the cheapest handshakes), RSA 2048 on request for old clients.

use rcgen::{
    CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::{IssueError, Issued, KeyType};
use crate::certs::{CertBundle, HostName};

/// A fresh key of `key_type`.
pub fn generate(key_type: KeyType) -> Result<KeyPair, IssueError> {
    match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
    }
    .map_err(|cause| IssueError::Key { key_type, cause })
}

/// Certificate parameters naming `names` (subjectAltName; the first also as CN).
pub fn params_for(names: &[HostName]) -> Result<CertificateParams, IssueError> {
    let sans: Vec<String> = names.iter().map(ToString::to_string).collect();
    let mut params = CertificateParams::new(sans).map_err(IssueError::Names)?;
    let mut dn = DistinguishedName::new();
    if let Some(first) = names.first() {
        dn.push(rcgen::DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    Ok(params)
}

/// A DER CSR for `names` signed by `key`.
pub fn csr(names: &[HostName], key: &KeyPair) -> Result<Vec<u8>, IssueError> {
    let request = params_for(names)?
        .serialize_request(key)
        .map_err(IssueError::Csr)?;
    Ok(request.der().to_vec())
}

/// Checks an issued chain against its key and names, now; the result is ready to serve.
pub fn verify(chain_pem: String, key: &KeyPair, names: &[HostName]) -> Result<Issued, IssueError> {
    let key_der = Zeroizing::new(key.serialize_der());
    let key_for_bundle = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.as_slice()));
    let bundle =
        CertBundle::from_chain_pem(chain_pem.as_bytes(), &key_for_bundle).map_err(|cause| {
            IssueError::Unusable {
                what: "chain or key",
                cause,
            }
        })?;
    bundle
        .check_serves(names, std::time::SystemTime::now())
        .map_err(|cause| IssueError::Unusable {
            what: "names or validity",
            cause,
        })?;
    Ok(Issued {
        chain_pem,
        key_der,
        bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_key_types_generate_and_make_csrs() {
        let names = vec![HostName::parse("a.test").unwrap()];
        for kind in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let key = generate(kind).unwrap();
            assert!(!csr(&names, &key).unwrap().is_empty());
        }
        assert_eq!("rsa2048".parse(), Ok(KeyType::Rsa2048));
        assert!("dsa".parse::<KeyType>().is_err());
    }
}
