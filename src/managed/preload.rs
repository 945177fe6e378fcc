//! The certificates read at start: every stored record read once, on every core, its status
//! into the inventory and a certificate that can be served as it is kept for its site,
//! until the first apply takes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::certs::ServedCert;

pub(super) type PreloadedMap =
    HashMap<String, Mutex<Option<Arc<ServedCert>>>, foldhash::fast::RandomState>;

/// A record read at start: its id, its status (for the inventory) and, when it can be
/// served as it is, its certificate.
pub(super) type ReadRecord = (
    String,
    Arc<inventory::RecordStatus>,
    Option<Arc<ServedCert>>,
);

/// The certificates read at start, waiting for their sites: one map by record id, built
/// once the scan is done (sized once, never rehashed), each certificate taken once by the
/// thread that builds its site — a lookup is one probe, where the build's order (by site)
/// would make a search of the scan's order (by record) miss the cache at every step.
#[derive(Default)]
pub(super) struct Preloaded {
    by_id: std::sync::RwLock<PreloadedMap>,
}

impl CertManager {
    /// Reads every stored record once, on every core: its status goes into the inventory,
    /// and a certificate that can be served as it is waits in `preloaded` for its site. A bad
    /// record is left for [`initial_cert`](Self::initial_cert) to report and set aside.
    pub(super) fn preload(&self) {
        let started = std::time::Instant::now();
        let (read, failure) = self.store.scan_map(
            records::CERTS_DIR,
            records::RECORD_SUFFIX,
            |key, bytes| {
            let records::LoadedCert { id, names, record } =
                match self.records().parse_at(key, bytes) {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        tracing::error!(error = %e, "an unreadable certificate record; its site will report it");
                        return None;
                    }
                };
            let status = Arc::new(inventory::RecordStatus::from(&record));
            let served = self.servable_trusted(&record, &names, &id).ok().map(Arc::new);
            Some((id, status, served))
        });
        let read: Vec<ReadRecord> = read.into_iter().flatten().collect();
        self.inventory.note_all(
            read.iter()
                .map(|(id, status, _)| (id.clone(), status.clone())),
        );
        self.preloaded.set(read);
        if let Some(e) = failure {
            tracing::error!(error = %e, "cannot read every certificate record; the rest are read per site");
        }
        tracing::info!(
            certificates = self.preloaded.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "certificates read from the store"
        );
    }
}

impl Preloaded {
    /// Puts the servable certificates of `read` in place of what was there.
    pub(super) fn set(&self, read: Vec<ReadRecord>) {
        let mut map = PreloadedMap::with_capacity_and_hasher(
            read.iter()
                .filter(|(_, _, served)| served.is_some())
                .count(),
            foldhash::fast::RandomState::default(),
        );
        map.extend(
            read.into_iter()
                .filter_map(|(id, _, served)| Some((id, Mutex::new(Some(served?))))),
        );
        *self.by_id.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    pub(super) fn remove(&self, id: &str) -> Option<Arc<ServedCert>> {
        let map = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        map.get(id)?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn clear(&self) {
        *self.by_id.write().unwrap_or_else(|e| e.into_inner()) = PreloadedMap::default();
    }
}
