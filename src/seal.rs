//! Sealing secrets: AES-256-GCM under a 256-bit master key, a fresh random nonce per seal,
//! and the secret's purpose (e.g. `cert-key:shop.example.com-…`) as associated data, so a
//! sealed blob copied into another slot does not open. A leaf: pure cryptography and hex,
//! no I/O (where the master key is kept is `store::master_key`'s). Key bytes are zeroized
//! when dropped.

use std::path::PathBuf;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Environment variable that carries the master key (64 hex digits), overriding the file.
pub const MASTER_KEY_ENV: &str = "ONEHTTPS_MASTER_KEY";
/// Prefix of every sealed blob, so a format change can be recognised.
const SEALED_PREFIX: &str = "onehttps-sealed-v1:";
/// What `master.check` seals: opening it proves the master key is the right one.
const CHECK_PLAINTEXT: &[u8] = b"onehttps master key check";
const CHECK_PURPOSE: &str = "master-check";

/// Why a secret could not be sealed or opened, or the master key not obtained.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{MASTER_KEY_ENV} must be 64 hexadecimal digits (a 256-bit key)")]
    BadEnvKey,
    #[error("{path} must hold 64 hexadecimal digits (a 256-bit key)")]
    BadKeyFile { path: PathBuf },
    #[error(
        "the master key does not open {path}: this store was sealed with another key \
         (check {MASTER_KEY_ENV} or the master.key file; every node of a fleet needs the same one)"
    )]
    WrongMasterKey { path: PathBuf },
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sealed data for {purpose} is corrupt")]
    Corrupt { purpose: String },
    #[error("the system random generator failed")]
    Random,
}

/// The 256-bit key every secret at rest is sealed under.
pub struct MasterKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Builds a key from its raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // AES-256 takes any 32-byte key; this cannot fail for the right length.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// What `master.check` holds for this key.
    pub fn sealed_check(&self) -> Result<String, SealError> {
        self.seal(CHECK_PURPOSE, CHECK_PLAINTEXT)
    }

    /// Whether `sealed` (a `master.check`) was sealed under this key.
    pub fn opens_check(&self, sealed: &str) -> bool {
        self.open(CHECK_PURPOSE, sealed)
            .is_ok_and(|plain| plain.as_slice() == CHECK_PLAINTEXT)
    }

    /// A key made from fresh random bytes, never stored: for secrets that live only as long
    /// as the process (private keys held in memory).
    pub fn ephemeral() -> Result<Self, SealError> {
        Ok(Self::from_bytes(&*random_key_bytes()?))
    }

    /// Seals `plain` for `purpose`: `onehttps-sealed-v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<String, SealError> {
        let raw = self.seal_raw(purpose.as_bytes(), plain)?;
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(raw)))
    }

    /// Opens a blob made by [`seal`](Self::seal) for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let corrupt = || SealError::Corrupt {
            purpose: purpose.to_owned(),
        };
        let raw = sealed_bytes(sealed).ok_or_else(corrupt)?;
        self.open_raw(purpose.as_bytes(), &raw).ok_or_else(corrupt)
    }

    /// Seals `plain` with `aad` as associated data: nonce ‖ ciphertext ‖ tag, in binary.
    pub fn seal_raw(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = Zeroizing::new(plain.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`seal_raw`](Self::seal_raw) made with the same `aad`; `None` when the
    /// blob is corrupt or was sealed under another key or for another purpose.
    pub fn open_raw(&self, aad: &[u8], raw: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?
            .len();
        buf.truncate(plain_len);
        Some(buf)
    }
}

/// The binary form (for [`MasterKey::open_raw`]) of a blob [`MasterKey::seal`] made, still
/// sealed; `None` when it is not one.
pub fn sealed_bytes(sealed: &str) -> Option<Vec<u8>> {
    STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()
}

/// `bytes` random bytes as hex, for names that must not collide (store keys, probe tokens);
/// not for secrets: should the system generator fail, the clock stands in.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if aws_lc_rs::rand::fill(&mut raw).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw = nanos.to_be_bytes()[..bytes.min(16)].to_vec();
    }
    to_hex(&raw)
}

pub(crate) fn random_key_bytes() -> Result<Zeroizing<[u8; 32]>, SealError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| SealError::Random)?;
    Ok(bytes)
}

pub(crate) fn parse_hex_key(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    push_hex(&mut hex, bytes);
    hex
}

/// Appends `bytes` to `out` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_purpose_binding() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let sealed = key.seal("cert-key:a", b"secret bytes").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("secret"));
        assert_eq!(
            key.open("cert-key:a", &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        assert!(matches!(
            key.open("cert-key:b", &sealed),
            Err(SealError::Corrupt { .. })
        ));
        let other = MasterKey::from_bytes(&[8; 32]);
        assert!(other.open("cert-key:a", &sealed).is_err());
        assert!(key.open("cert-key:a", "garbage").is_err());
        assert!(key.open("cert-key:a", "onehttps-sealed-v1:AAAA").is_err());
        // Two seals of the same secret differ (fresh nonce).
        assert_ne!(sealed, key.seal("cert-key:a", b"secret bytes").unwrap());
    }

    #[test]
    fn hex_keys() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_hex_key(&hex).unwrap()[31], 0xff);
        assert!(parse_hex_key("abc").is_none());
        assert!(parse_hex_key(&"zz".repeat(32)).is_none());
        assert_eq!(to_hex(&[0xab, 0x01]), "ab01");
    }
}
