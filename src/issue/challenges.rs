//! Challenge answers the listeners give while an ACME order is being validated: HTTP-01
//! key authorizations on the HTTP listener (RFC 8555 §8.3), TLS-ALPN-01 certificates on
//! the HTTPS listener (RFC 8737), and DNS-01 TXT values (RFC 8555 §8.4) on the edge's own
//! DNS server for the delegated ACME zone, keyed by token and by name. The ACME issuer inserts an
//! answer before asking the CA to validate and removes it afterwards (`ChallengeGuard`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

/// Path prefix of HTTP-01 challenge requests.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// The ALPN protocol of TLS-ALPN-01 validation connections.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why a TLS-ALPN-01 answer certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AnswerCertError {
    #[error("cannot make the TLS-ALPN-01 certificate: {0}")]
    Make(rcgen::Error),
    #[error("TLS-ALPN-01 key unusable: {0}")]
    Key(rustls::Error),
}

/// The self-signed certificate a TLS-ALPN-01 validation expects (RFC 8737 §3): for `name`,
/// carrying the SHA-256 `digest` of the key authorization in its acmeIdentifier extension.
pub fn tls_alpn01_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AnswerCertError> {
    use rcgen::{CertificateParams, CustomExtension, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = KeyPair::generate().map_err(AnswerCertError::Make)?;
    let mut params =
        CertificateParams::new(vec![name.to_owned()]).map_err(AnswerCertError::Make)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(AnswerCertError::Make)?;
    let plain = zeroize::Zeroizing::new(key.serialize_der());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_slice()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der)
        .map_err(AnswerCertError::Key)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// Pending challenge answers.
#[derive(Debug, Default)]
pub struct Challenges {
    /// token → (the name being validated, key authorization).
    http01: RwLock<HashMap<String, (String, String)>>,
    /// name → self-signed certificate carrying the acmeIdentifier extension.
    tls_alpn01: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// token → (the name being validated, without `*.`; TXT value).
    dns01: RwLock<HashMap<String, (String, String)>>,
    /// Answers other nodes of the fleet published, by token (`shared_answers.rs`).
    shared: RwLock<HashMap<String, SharedAnswer>>,
    /// Whether other nodes publish answers (then a miss waits a moment for them).
    fleet: std::sync::atomic::AtomicBool,
    /// Signalled whenever another node's answer arrives.
    shared_added: tokio::sync::Notify,
}

/// How long a validation request for an answer this node does not have waits for one to
/// arrive from the fleet: the CA may connect before the store's watch delivered it (or
/// while the watch reconnects to another member).
const FLEET_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An answer another node published.
#[derive(Debug)]
enum SharedAnswer {
    /// (name, key authorization).
    Http01(String, String),
    /// (name, certificate).
    TlsAlpn01(String, Arc<CertifiedKey>),
    /// (name without `*.`, TXT value).
    Dns01(String, String),
}

impl Challenges {
    /// The key authorization for an HTTP-01 `token`, if one is pending for `host` (the
    /// request's Host, port removed): a token is answered only for the name it validates.
    pub fn http01(&self, host: &str, token: &str) -> Option<String> {
        let local = self.http01.read().ok()?.get(token).cloned();
        let (name, key_authorization) =
            local.or_else(|| match self.shared.read().ok()?.get(token)? {
                SharedAnswer::Http01(name, key_authorization) => {
                    Some((name.clone(), key_authorization.clone()))
                }
                SharedAnswer::TlsAlpn01(..) | SharedAnswer::Dns01(..) => None,
            })?;
        name.eq_ignore_ascii_case(host).then_some(key_authorization)
    }

    /// The TLS-ALPN-01 certificate for `name`, if one is pending.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(cert) = self.tls_alpn01.read().ok()?.get(name) {
            return Some(cert.clone());
        }
        self.shared
            .read()
            .ok()?
            .values()
            .find_map(|answer| match answer {
                SharedAnswer::TlsAlpn01(n, cert) if n == name => Some(cert.clone()),
                _ => None,
            })
    }

    /// The DNS-01 TXT values pending for `name` (without `*.`, lowercase): one per order in
    /// flight for it (a name and its wildcard may be validated at once).
    pub fn dns01(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .dns01
            .read()
            .map(|map| {
                map.values()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(shared) = self.shared.read() {
            values.extend(shared.values().filter_map(|answer| match answer {
                SharedAnswer::Dns01(n, v) if n.eq_ignore_ascii_case(name) => Some(v.clone()),
                _ => None,
            }));
        }
        values.sort_unstable();
        values.dedup();
        values
    }

    /// From now on answers also come from other nodes (see [`wait_for`](Self::wait_for)).
    pub fn join_fleet(&self) {
        self.fleet.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `lookup` now, or — in a fleet — as soon as another node's answer makes it succeed,
    /// for at most two seconds.
    pub async fn wait_for<T>(&self, lookup: impl Fn(&Self) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + FLEET_ANSWER_WAIT;
        loop {
            let added = self.shared_added.notified();
            if let Some(found) = lookup(self) {
                return Some(found);
            }
            if !self.fleet.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return None;
            }
        }
    }

    /// Serves an HTTP-01 answer another node published.
    pub fn add_shared_http01(&self, name: String, token: String, key_authorization: String) {
        if let Ok(mut map) = self.shared.write() {
            map.insert(token, SharedAnswer::Http01(name, key_authorization));
        }
        self.shared_added.notify_waiters();
    }

    /// Serves a TLS-ALPN-01 answer another node published.
    pub fn add_shared_tls_alpn01(&self, name: String, token: String, cert: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.shared.write() {
            map.insert(token, SharedAnswer::TlsAlpn01(name, cert));
        }
        self.shared_added.notify_waiters();
    }

    /// Serves a DNS-01 answer another node published.
    pub fn add_shared_dns01(&self, name: String, token: String, value: String) {
        if let Ok(mut map) = self.shared.write() {
            map.insert(token, SharedAnswer::Dns01(name, value));
        }
        self.shared_added.notify_waiters();
    }

    /// Stops serving the shared answer of `token`.
    pub fn remove_shared(&self, token: &str) {
        if let Ok(mut map) = self.shared.write() {
            map.remove(token);
        }
    }

    /// Forgets every shared answer (before a fresh snapshot of them).
    pub fn clear_shared(&self) {
        if let Ok(mut map) = self.shared.write() {
            map.clear();
        }
    }

    /// Publishes an HTTP-01 answer for `name` until the guard is dropped.
    pub fn add_http01(
        self: &Arc<Self>,
        name: String,
        token: String,
        key_authorization: String,
    ) -> ChallengeGuard {
        if let Ok(mut map) = self.http01.write() {
            map.insert(token.clone(), (name, key_authorization));
        }
        ChallengeGuard {
            challenges: self.clone(),
            slot: Slot::Http01(token),
        }
    }

    /// Publishes a TLS-ALPN-01 certificate for `name` until the guard is dropped.
    pub fn add_tls_alpn01(
        self: &Arc<Self>,
        name: String,
        cert: Arc<CertifiedKey>,
    ) -> ChallengeGuard {
        if let Ok(mut map) = self.tls_alpn01.write() {
            map.insert(name.clone(), cert);
        }
        ChallengeGuard {
            challenges: self.clone(),
            slot: Slot::TlsAlpn01(name),
        }
    }

    /// Publishes a DNS-01 TXT value for `name` (without `*.`) until the guard is dropped.
    pub fn add_dns01(
        self: &Arc<Self>,
        name: String,
        token: String,
        value: String,
    ) -> ChallengeGuard {
        if let Ok(mut map) = self.dns01.write() {
            map.insert(token.clone(), (name.to_ascii_lowercase(), value));
        }
        ChallengeGuard {
            challenges: self.clone(),
            slot: Slot::Dns01(token),
        }
    }
}

enum Slot {
    Http01(String),
    TlsAlpn01(String),
    Dns01(String),
}

/// Removes a challenge answer when dropped, however the order ends.
pub struct ChallengeGuard {
    challenges: Arc<Challenges>,
    slot: Slot,
}

impl Drop for ChallengeGuard {
    fn drop(&mut self) {
        match &self.slot {
            Slot::Http01(token) => {
                if let Ok(mut map) = self.challenges.http01.write() {
                    map.remove(token);
                }
            }
            Slot::TlsAlpn01(name) => {
                if let Ok(mut map) = self.challenges.tls_alpn01.write() {
                    map.remove(name);
                }
            }
            Slot::Dns01(token) => {
                if let Ok(mut map) = self.challenges.dns01.write() {
                    map.remove(token);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_live_as_long_as_their_guard() {
        let challenges = Arc::new(Challenges::default());
        let guard = challenges.add_http01("a.example".into(), "tok".into(), "tok.thumb".into());
        assert_eq!(
            challenges.http01("a.example", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            challenges.http01("A.Example", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(challenges.http01("b.example", "tok"), None, "another host");
        assert_eq!(challenges.http01("a.example", "other"), None);
        drop(guard);
        assert_eq!(challenges.http01("a.example", "tok"), None);
    }
}
