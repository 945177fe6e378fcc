//! Who gets a connection slot: per client address (IPv6 by /64, so one host cannot rotate
//! through its own prefix) at most `max_connections_per_ip` open connections per listener,
//! and on the HTTPS listener at most `handshakes_per_ip` handshakes per second (a token
//! bucket, bursts of twice that) while the listener is short of slots — a busy client that
//! hurts no one is not throttled. A client over a limit is closed at once, before any TLS
//! work, so a few addresses cannot take the slots everyone else needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Addresses tracked at most; past this, idle entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// The key a client is counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match crate::net::canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[derive(Default)]
struct Entry {
    open: usize,
    tokens: f64,
    refilled: Option<Instant>,
}

/// Per-address counters of one listener.
pub(super) struct Admission {
    max_open: usize,
    /// Handshakes per second; 0 = no rate limit (the plain HTTP listener).
    rate: f64,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    TooManyOpen,
    TooFast,
}

/// An admitted connection; frees its place when dropped.
pub(super) struct Admitted {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut entries = self.admission.lock();
        if let Some(entry) = entries.get_mut(&self.key) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

impl Admission {
    pub(super) fn new(max_open: usize, handshakes_per_s: u32) -> Arc<Self> {
        Arc::new(Self {
            max_open,
            rate: f64::from(handshakes_per_s),
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `ip` now, or says why not; the handshake rate is counted
    /// always and enforced when `pressed` (the listener is short of slots).
    pub(super) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
        pressed: bool,
    ) -> Result<Admitted, Refused> {
        let key = client_key(ip);
        let mut entries = self.lock();
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&key) {
            entries.retain(|_, e| e.open > 0);
        }
        let entry = entries.entry(key).or_default();
        if entry.open >= self.max_open {
            return Err(Refused::TooManyOpen);
        }
        if self.rate > 0.0 {
            let burst = self.rate * 2.0;
            let elapsed = entry
                .refilled
                .map_or(burst / self.rate, |at| now.duration_since(at).as_secs_f64());
            entry.tokens = (entry.tokens + elapsed * self.rate).min(burst);
            entry.refilled = Some(now);
            if entry.tokens < 1.0 && pressed {
                return Err(Refused::TooFast);
            }
            entry.tokens = (entry.tokens - 1.0).max(0.0);
        }
        entry.open += 1;
        Ok(Admitted {
            admission: self.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_connections_per_address_are_capped() {
        let admission = Admission::new(2, 0);
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = admission.admit(ip, now, true).unwrap();
        let _b = admission.admit(ip, now, true).unwrap();
        assert_eq!(
            admission.admit(ip, now, true).err(),
            Some(Refused::TooManyOpen)
        );
        assert!(
            admission
                .admit("192.0.2.2".parse().unwrap(), now, true)
                .is_ok()
        );
        drop(a);
        assert!(admission.admit(ip, now, true).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_by_64_prefix() {
        let admission = Admission::new(1, 0);
        let now = Instant::now();
        let _a = admission
            .admit("2001:db8::1".parse().unwrap(), now, true)
            .unwrap();
        assert!(
            admission
                .admit("2001:db8::ffff".parse().unwrap(), now, true)
                .is_err()
        );
        assert!(
            admission
                .admit("2001:db8:0:1::1".parse().unwrap(), now, true)
                .is_ok()
        );
    }

    #[test]
    fn handshakes_per_address_are_rate_limited_with_a_burst() {
        let admission = Admission::new(1000, 10);
        let start = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let admitted = (0..50)
            .filter(|_| admission.admit(ip, start, true).is_ok())
            .count();
        assert_eq!(admitted, 20, "a burst of twice the rate");
        assert_eq!(
            admission.admit(ip, start, true).err(),
            Some(Refused::TooFast)
        );
        let later = start + Duration::from_millis(500);
        let more = (0..50)
            .filter(|_| admission.admit(ip, later, true).is_ok())
            .count();
        assert_eq!(more, 5, "refilled at the rate");
        let relaxed = (0..50)
            .filter(|_| admission.admit(ip, later, false).is_ok())
            .count();
        assert_eq!(
            relaxed, 50,
            "not enforced while the listener has slots to spare"
        );
    }
}
