//! Private keys held in memory sealed: AES-256-GCM under a key made at process start and
//! never written anywhere. A key is opened only to decode a signing key for a handshake
//! (`tls::key_cache` keeps a bounded number of decoded ones), so a million idle sites cost
//! ~190 bytes of ciphertext each instead of a decoded key object, and a memory dump of an
//! idle site shows no key material.

use std::sync::{Arc, OnceLock};

use rustls::sign::SigningKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use zeroize::Zeroizing;

use crate::store::{MasterKey, SealError};

/// Associated data of every key sealed in memory, followed by the encoding byte.
const AAD_PREFIX: &[u8] = b"onehttps-memory-key:";

/// How the sealed DER is encoded (rustls needs to know to decode it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Pkcs1 = 1,
    Sec1 = 2,
    Pkcs8 = 8,
}

impl Encoding {
    /// `der` as the key type rustls takes, borrowed (no plaintext copy is made).
    fn key(self, der: &[u8]) -> PrivateKeyDer<'_> {
        match self {
            Self::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            Self::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
            Self::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        }
    }
}

/// A plaintext private key on its way in (a PEM upload, a key file, a freshly generated
/// key): the bytes are zeroized when it drops, and rustls only ever sees borrowed views
/// (`PrivateKeyDer` does not zeroize on drop by itself, so no owned one is made).
pub struct PlainKey {
    encoding: Encoding,
    der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainKey([redacted])")
    }
}

impl PlainKey {
    /// The first private key block of `pem`; `None` if it holds none. Other blocks are
    /// skipped; malformed PEM is an error.
    pub fn from_pem(pem: &[u8]) -> Result<Option<Self>, rustls_pki_types::pem::Error> {
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = item?;
            let der = Zeroizing::new(der);
            let encoding = match kind {
                SectionKind::PrivateKey => Encoding::Pkcs8,
                SectionKind::EcPrivateKey => Encoding::Sec1,
                SectionKind::RsaPrivateKey => Encoding::Pkcs1,
                _ => continue,
            };
            return Ok(Some(Self { encoding, der }));
        }
        Ok(None)
    }

    /// A PKCS#8 DER key (what rcgen generates).
    pub fn pkcs8(der: Zeroizing<Vec<u8>>) -> Self {
        Self {
            encoding: Encoding::Pkcs8,
            der,
        }
    }

    /// A borrowed view for rustls.
    pub fn as_der(&self) -> PrivateKeyDer<'_> {
        self.encoding.key(&self.der)
    }
}

/// A private key, sealed. Cloning copies the ciphertext.
#[derive(Clone)]
pub struct SealedKey {
    encoding: Encoding,
    sealed: Box<[u8]>,
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedKey(..)")
    }
}

/// Why a key could not be sealed or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SealedKeyError {
    #[error("unsupported private key encoding")]
    Encoding,
    #[error("cannot seal the private key in memory")]
    Seal(#[source] SealError),
    #[error("the private key sealed in memory does not open")]
    Open,
    #[error("private key is not usable")]
    Decode(#[source] rustls::Error),
}

/// The process's memory key, made on first use.
fn memory_key() -> Result<&'static MasterKey, SealedKeyError> {
    static KEY: OnceLock<Option<MasterKey>> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::ephemeral().ok())
        .as_ref()
        .ok_or(SealedKeyError::Seal(SealError::Random))
}

fn aad(encoding: Encoding) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.push(encoding as u8);
    aad
}

impl SealedKey {
    /// Seals `key`; the caller drops its plaintext copy.
    pub fn seal(key: &PrivateKeyDer<'_>) -> Result<Self, SealedKeyError> {
        let (encoding, der) = match key {
            PrivateKeyDer::Pkcs1(k) => (Encoding::Pkcs1, k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => (Encoding::Sec1, k.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(k) => (Encoding::Pkcs8, k.secret_pkcs8_der()),
            _ => return Err(SealedKeyError::Encoding),
        };
        let sealed = memory_key()?
            .seal_raw(&aad(encoding), der)
            .map_err(SealedKeyError::Seal)?;
        Ok(Self {
            encoding,
            sealed: sealed.into_boxed_slice(),
        })
    }

    /// Opens the key and decodes it into a signing key; the plaintext DER is zeroized.
    pub fn signing_key(&self) -> Result<Arc<dyn SigningKey>, SealedKeyError> {
        let der = memory_key()?
            .open_raw(&aad(self.encoding), &self.sealed)
            .ok_or(SealedKeyError::Open)?;
        let key = self.encoding.key(&der);
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(SealedKeyError::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_pkcs8() -> PrivateKeyDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    #[test]
    fn sealed_key_decodes_and_holds_no_plaintext() {
        let key = p256_pkcs8();
        let PrivateKeyDer::Pkcs8(der) = &key else {
            unreachable!()
        };
        let sealed = SealedKey::seal(&key).unwrap();
        let plain = der.secret_pkcs8_der();
        assert!(
            !sealed
                .sealed
                .windows(plain.len().min(32))
                .any(|w| w == &plain[plain.len() - 32..]),
            "the key's private bytes are not in the sealed form"
        );
        let signer = sealed.signing_key().unwrap();
        assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::ECDSA);
        // Sealing twice gives different ciphertexts (fresh nonce).
        assert_ne!(SealedKey::seal(&key).unwrap().sealed, sealed.sealed);
    }

    #[test]
    fn tampered_or_misdeclared_key_is_refused() {
        let mut sealed = SealedKey::seal(&p256_pkcs8()).unwrap();
        let mut other = sealed.clone();
        other.encoding = Encoding::Sec1;
        assert!(matches!(other.signing_key(), Err(SealedKeyError::Open)));
        sealed.sealed[20] ^= 1;
        assert!(matches!(sealed.signing_key(), Err(SealedKeyError::Open)));
    }
}
