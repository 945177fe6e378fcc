//! TLS 1.3 session tickets every node of a fleet accepts: sealed (AES-256-GCM) under keys
//! kept in the store (`tickets/keys.sealed`, itself sealed under the master key), rotated
//! every six hours by whichever node first sees the current key due, the previous key still
//! accepted so tickets live out their lifetime. Nodes pick up a new key through the store's
//! watch. A single edge keeps rustls' own rotating ticketer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::certs::record::unix;
use crate::seal::{MasterKey, parse_hex_key, random_key_bytes, to_hex};
use crate::store::{Store, StoreError};

/// Where the keys live in the store.
pub const KEYS: &str = "tickets/keys.sealed";
/// How long a key issues tickets; tickets are accepted for as long again.
const ROTATE_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Bytes of the key id in front of each ticket.
const ID_LEN: usize = 4;

/// One key as stored.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    id: u32,
    /// 64 hex digits.
    key: String,
    /// Unix seconds.
    created: u64,
}

struct TicketKey {
    id: [u8; ID_LEN],
    key: MasterKey,
    created: u64,
}

/// The fleet's ticket keys, newest first (at most two).
pub struct SharedTicketer {
    keys: ArcSwap<Vec<TicketKey>>,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTicketer(..)")
    }
}

impl SharedTicketer {
    /// Loads the keys from the store, creating or rotating them when due.
    pub fn load(store: &Store) -> Result<Arc<Self>, StoreError> {
        let ticketer = Arc::new(Self {
            keys: ArcSwap::from_pointee(Vec::new()),
        });
        ticketer.refresh(store, true)?;
        Ok(ticketer)
    }

    /// Re-reads the keys; with `rotate`, makes a new one first when the current one is due
    /// (under the store's lock, so two nodes never rotate at once).
    pub fn refresh(&self, store: &Store, rotate: bool) -> Result<(), StoreError> {
        let mut stored = read(store)?;
        if rotate && due(&stored, SystemTime::now()) {
            let _lock = store.lock()?;
            stored = read(store)?;
            if due(&stored, SystemTime::now()) {
                stored.insert(0, fresh_key(&stored)?);
                stored.truncate(2);
                let json = Zeroizing::new(serde_json::to_vec(&stored).map_err(|e| {
                    StoreError::Corrupt {
                        path: store.path_of(KEYS),
                        reason: e.to_string(),
                    }
                })?);
                store.write_secret(KEYS, &json)?;
                tracing::info!("session ticket keys rotated");
            }
        }
        let keys = stored
            .iter()
            .filter_map(|k| {
                Some(TicketKey {
                    id: k.id.to_be_bytes(),
                    key: MasterKey::from_bytes(&parse_hex_key(&k.key)?),
                    created: k.created,
                })
            })
            .collect();
        self.keys.store(Arc::new(keys));
        Ok(())
    }
}

fn read(store: &Store) -> Result<Vec<StoredKey>, StoreError> {
    let Some(json) = store.read_secret(KEYS)? else {
        return Ok(Vec::new());
    };
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt {
        path: store.path_of(KEYS),
        reason: e.to_string(),
    })
}

fn due(keys: &[StoredKey], now: SystemTime) -> bool {
    keys.first()
        .is_none_or(|k| unix(now) >= k.created + ROTATE_EVERY.as_secs())
}

fn fresh_key(existing: &[StoredKey]) -> Result<StoredKey, StoreError> {
    let bytes = random_key_bytes()?;
    let id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let id = if existing.iter().any(|k| k.id == id) {
        id.wrapping_add(1)
    } else {
        id
    };
    let key_bytes = random_key_bytes()?;
    Ok(StoredKey {
        id,
        key: to_hex(key_bytes.as_ref()),
        created: unix(SystemTime::now()),
    })
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(ROTATE_EVERY.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let current = keys.first()?;
        let sealed = current.key.seal_raw(&current.id, plain).ok()?;
        let mut ticket = Vec::with_capacity(ID_LEN + sealed.len());
        ticket.extend_from_slice(&current.id);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (id, sealed) = cipher.split_at_checked(ID_LEN)?;
        let keys = self.keys.load();
        let key = keys.iter().find(|k| k.id == id)?;
        // Tickets under a key older than two rotations are refused even if it lingers.
        let too_old = unix(SystemTime::now()) > key.created + 2 * ROTATE_EVERY.as_secs();
        if too_old {
            return None;
        }
        key.key.open_raw(id, sealed).map(|plain| plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    #[test]
    fn tickets_open_on_another_node_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = SharedTicketer::load(&store).unwrap();
        let b = SharedTicketer::load(&store).unwrap();
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&ticket).unwrap(), b"session state");
        let mut flipped = ticket.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(b.decrypt(&flipped).is_none());
        assert!(b.decrypt(&ticket[..3]).is_none());
        assert!(b.decrypt(&[]).is_none());

        let other = tempfile::tempdir().unwrap();
        let stranger = SharedTicketer::load(&Store::open(other.path()).unwrap()).unwrap();
        assert!(stranger.decrypt(&ticket).is_none());
    }

    #[test]
    fn rotation_keeps_the_previous_key() {
        let now = SystemTime::now();
        let key = |created| StoredKey {
            id: 1,
            key: "00".repeat(32),
            created,
        };
        assert!(due(&[], now));
        assert!(!due(&[key(unix(now))], now));
        assert!(due(&[key(unix(now) - ROTATE_EVERY.as_secs())], now));
    }
}
