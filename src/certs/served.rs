//! Certificates in service: a `ServedCert` (the bundle, where it came from, and the slot
//! its decoded signing key lives in while the cache holds it) and the bounded cache of
//! decoded signing keys. Every served certificate keeps its private key sealed
//! (`certs::sealed_key`); the first handshake for a site opens and decodes it into its
//! `KeySlot`, and at most `capacity` slots hold a decoded key at once. Eviction is CLOCK: a
//! hit sets the slot's `used` bit (one relaxed store, no lock), the hand clears bits as it
//! passes and evicts the first slot it finds unused. A hit costs one atomic load; only a miss
//! takes the cache's lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use rustls::sign::CertifiedKey;

use super::{CertBundle, Source};

/// A certificate in service, where it came from, and its decoded signing key while the key
/// cache holds it.
#[derive(Debug)]
pub struct ServedCert {
    pub bundle: CertBundle,
    pub source: Source,
    pub(crate) live: KeySlot,
}

impl ServedCert {
    pub fn new(bundle: CertBundle, source: Source) -> Self {
        Self {
            bundle,
            source,
            live: KeySlot::default(),
        }
    }
}

/// A served certificate's decoded key, while the cache holds it.
#[derive(Default)]
pub struct KeySlot {
    key: ArcSwapOption<CertifiedKey>,
    /// Set by a hit; cleared by the clock hand (second chance).
    used: AtomicBool,
    /// Whether the slot is in the clock ring.
    in_ring: AtomicBool,
}

impl std::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySlot")
            .field("decoded", &self.key.load().is_some())
            .finish()
    }
}

/// Decoded keys for at most `capacity` certificates.
pub struct KeyCache {
    capacity: usize,
    ring: Mutex<VecDeque<Weak<ServedCert>>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache holding at most `capacity` (at least 1) decoded keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    /// The decoded key of `served`, decoding (and caching) it on a miss. `None` when the key
    /// cannot be decoded (logged; the handshake fails).
    pub fn certified_key(&self, served: &Arc<ServedCert>) -> Option<Arc<CertifiedKey>> {
        let slot = &served.live;
        if let Some(key) = slot.key.load_full() {
            if !slot.used.load(Ordering::Relaxed) {
                slot.used.store(true, Ordering::Relaxed);
            }
            return Some(key);
        }
        let key = match served.bundle.certified_key() {
            Ok(key) => Arc::new(key),
            Err(e) => {
                tracing::error!(
                    names = %served.bundle.info.names.join(","),
                    error = %e,
                    "cannot decode the signing key; handshake refused"
                );
                return None;
            }
        };
        slot.key.store(Some(key.clone()));
        if !slot.in_ring.swap(true, Ordering::AcqRel) {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            ring.push_back(Arc::downgrade(served));
            while ring.len() > self.capacity {
                evict_one(&mut ring);
            }
        }
        Some(key)
    }

    /// How many certificates have a decoded key now (an upper bound).
    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Advances the clock hand until one entry leaves the ring: a dropped certificate, or the
/// first one not used since the hand last passed. Ends within two turns.
fn evict_one(ring: &mut VecDeque<Weak<ServedCert>>) {
    while let Some(entry) = ring.pop_front() {
        let Some(served) = entry.upgrade() else {
            return;
        };
        let slot = &served.live;
        if slot.used.swap(false, Ordering::Relaxed) {
            ring.push_back(entry);
            continue;
        }
        // Leave the ring first: a concurrent miss then re-registers the key it decodes.
        slot.in_ring.store(false, Ordering::Release);
        slot.key.store(None);
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertBundle, HostName, Source, selfsigned};

    fn served() -> Arc<ServedCert> {
        let pair = selfsigned::generate(&[HostName::parse("cache.test").unwrap()], 30).unwrap();
        let bundle = CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes());
        Arc::new(ServedCert::new(bundle.unwrap(), Source::Uploaded))
    }

    #[test]
    fn holds_at_most_capacity_and_keeps_recently_used_keys() {
        let cache = KeyCache::new(2);
        let (a, b, c) = (served(), served(), served());
        let key_a = cache.certified_key(&a).unwrap();
        assert!(
            Arc::ptr_eq(&key_a, &cache.certified_key(&a).unwrap()),
            "a hit returns the cached key"
        );
        cache.certified_key(&b).unwrap();
        // `a` was used since the hand last passed, `b` too: the hand clears both, evicts `a`.
        cache.certified_key(&c).unwrap();
        assert_eq!(cache.len(), 2);
        let decoded = [&a, &b, &c].map(|s| s.live.key.load().is_some());
        assert_eq!(decoded.iter().filter(|d| **d).count(), 2, "{decoded:?}");
        // An evicted key is decoded again on its next use.
        for s in [&a, &b, &c] {
            assert!(cache.certified_key(s).is_some());
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn dropped_certificates_leave_the_ring() {
        let cache = KeyCache::new(2);
        let a = served();
        cache.certified_key(&a).unwrap();
        drop(a);
        let (b, c) = (served(), served());
        cache.certified_key(&b).unwrap();
        cache.certified_key(&c).unwrap();
        assert!(b.live.key.load().is_some() && c.live.key.load().is_some());
    }
}
