//! Private keys held in memory sealed: AES-256-GCM under a key made at process start and
//! never written anywhere, or — for a certificate read from the store at start — as the
//! store sealed it, under the master key (a restart then opens and re-seals no key). A key is
//! opened only to decode a signing key for a handshake
//! (`tls::key_cache` keeps a bounded number of decoded ones), so a million idle sites cost
//! ~190 bytes of ciphertext each instead of a decoded key object, and a memory dump of an
//! idle site shows no key material.

use std::sync::{Arc, OnceLock};

use rustls::sign::SigningKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use zeroize::Zeroizing;

use crate::seal::{MasterKey, SealError};

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
    sealed: Box<[u8]>,
    by: Sealer,
}

/// Which key a [`SealedKey`] is sealed under.
#[derive(Clone)]
enum Sealer {
    /// The process's memory key, with the DER's encoding.
    Memory(Encoding),
    /// The store's master key, as the store sealed it for `purpose` (a certificate read at
    /// start keeps the sealed form it was stored in: a million keys are not opened and
    /// sealed again before the first handshake needs one).
    Store {
        master: Arc<MasterKey>,
        purpose: Box<str>,
    },
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
            sealed: sealed.into_boxed_slice(),
            by: Sealer::Memory(encoding),
        })
    }

    /// A key as the store keeps it: `sealed` (binary) under `master` for `purpose`. Opened
    /// only when a handshake needs it.
    pub fn stored(master: Arc<MasterKey>, purpose: String, sealed: Vec<u8>) -> Self {
        Self {
            sealed: sealed.into_boxed_slice(),
            by: Sealer::Store {
                master,
                purpose: purpose.into_boxed_str(),
            },
        }
    }

    /// Opens the key and decodes it into a signing key; the plaintext DER is zeroized.
    pub fn signing_key(&self) -> Result<Arc<dyn SigningKey>, SealedKeyError> {
        let decode = |key: &PrivateKeyDer<'_>| {
            rustls::crypto::aws_lc_rs::sign::any_supported_type(key).map_err(SealedKeyError::Decode)
        };
        match &self.by {
            Sealer::Memory(encoding) => {
                let der = memory_key()?
                    .open_raw(&aad(*encoding), &self.sealed)
                    .ok_or(SealedKeyError::Open)?;
                decode(&encoding.key(&der))
            }
            Sealer::Store { master, purpose } => {
                let der = master
                    .open_raw(purpose.as_bytes(), &self.sealed)
                    .ok_or(SealedKeyError::Open)?;
                decode(
                    &PrivateKeyDer::try_from(der.as_slice())
                        .map_err(|_| SealedKeyError::Encoding)?,
                )
            }
        }
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
        other.by = Sealer::Memory(Encoding::Sec1);
        assert!(matches!(other.signing_key(), Err(SealedKeyError::Open)));
        sealed.sealed[20] ^= 1;
        assert!(matches!(sealed.signing_key(), Err(SealedKeyError::Open)));
    }

    #[test]
    fn a_key_kept_as_the_store_sealed_it_opens_only_for_its_purpose() {
        let key = p256_pkcs8();
        let master = Arc::new(MasterKey::from_bytes(&[9; 32]));
        let raw = master.seal_raw(b"cert-key:a", key.secret_der()).unwrap();
        let stored = SealedKey::stored(master.clone(), "cert-key:a".into(), raw.clone());
        assert_eq!(
            stored.signing_key().unwrap().algorithm(),
            rustls::SignatureAlgorithm::ECDSA
        );
        let elsewhere = SealedKey::stored(master, "cert-key:b".into(), raw.clone());
        assert!(matches!(elsewhere.signing_key(), Err(SealedKeyError::Open)));
        let other_master = Arc::new(MasterKey::from_bytes(&[8; 32]));
        let foreign = SealedKey::stored(other_master, "cert-key:a".into(), raw);
        assert!(matches!(foreign.signing_key(), Err(SealedKeyError::Open)));
    }
}
