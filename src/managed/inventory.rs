//! What the API, `/metrics` and onboarding read of each certificate record — state, source,
//! last failure, a rejected earlier record, a replaced upload — kept in memory. Every write
//! this node makes updates it, and in a fleet so does the store's watch for every other
//! node's writes, so listing ten thousand certificates never reads the store ten thousand
//! times. The chain and sealed key are not kept here (the served certificate is in `Site`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::certs::record::{Failure, Queued, Replaced};
use crate::certs::{CertRecord, CertState, Source};

/// A record without its chain and key. One per certificate (a million at a million sites):
/// what most records lack — a failure, a rejected earlier record, a replaced upload, a CA
/// limit holding the next order — is boxed, 8 bytes when absent instead of 24 to 56.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStatus {
    pub source: Source,
    pub state: CertState,
    pub failure: Option<Box<Failure>>,
    pub recovered: Option<Box<str>>,
    pub replaced: Option<Box<Replaced>>,
    pub queued: Option<Box<Queued>>,
}

impl From<&CertRecord> for RecordStatus {
    fn from(record: &CertRecord) -> Self {
        Self {
            source: record.source,
            state: record.state,
            failure: record.failure.clone().map(Box::new),
            recovered: record.recovered.as_deref().map(Box::from),
            replaced: record.replaced.clone().map(Box::new),
            queued: record.queued.clone().map(Box::new),
        }
    }
}

/// Record statuses by certificate id (`certs::record::id`); `None` = known to have no record.
#[derive(Debug, Default)]
pub struct Inventory {
    entries: Mutex<HashMap<String, Option<Arc<RecordStatus>>, foldhash::fast::RandomState>>,
}

impl Inventory {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        HashMap<String, Option<Arc<RecordStatus>>, foldhash::fast::RandomState>,
    > {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is known of `id`: `None` if it was never looked at, `Some(None)` if it has no
    /// record.
    pub fn get(&self, id: &str) -> Option<Option<Arc<RecordStatus>>> {
        self.lock().get(id).cloned()
    }

    /// `record` was stored (or read) for `id`; whether its state differs from the one held
    /// before (or none was).
    pub fn note(&self, id: String, record: &CertRecord) -> bool {
        let before = self
            .lock()
            .insert(id, Some(Arc::new(RecordStatus::from(record))));
        before
            .flatten()
            .is_none_or(|status| status.state != record.state)
    }

    /// The records read at start, in one go (the map sized once, its lock taken once).
    pub fn note_all(&self, read: impl ExactSizeIterator<Item = (String, Arc<RecordStatus>)>) {
        let mut entries = self.lock();
        entries.reserve(read.len());
        entries.extend(read.map(|(id, status)| (id, Some(status))));
    }

    /// `id` has no record (deleted, set aside, or never written).
    pub fn note_absent(&self, id: String) {
        self.lock().insert(id, None);
    }

    /// Forgets `id` entirely (the next read goes to the store).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::HostName;

    #[test]
    fn notes_replace_and_absences_are_remembered() {
        let inventory = Inventory::default();
        let names = [HostName::parse("a.test").unwrap()];
        assert!(inventory.get("a").is_none());
        let mut record = CertRecord::pending(&names, Source::Acme);
        inventory.note("a".into(), &record);
        assert_eq!(
            inventory.get("a").flatten().map(|s| s.state),
            Some(CertState::Pending)
        );
        record.set_failed(crate::certs::record::Failure {
            reason: "refused".into(),
            attempts: 1,
            next_retry: 0,
        });
        inventory.note("a".into(), &record);
        assert_eq!(
            inventory.get("a").flatten().map(|s| s.state),
            Some(CertState::Failed)
        );
        inventory.note_all([("b".to_owned(), Arc::new(RecordStatus::from(&record)))].into_iter());
        assert_eq!(
            inventory.get("b").flatten().map(|s| s.state),
            Some(CertState::Failed)
        );
        inventory.note_absent("a".into());
        assert_eq!(inventory.get("a"), Some(None));
        inventory.forget("a");
        assert!(inventory.get("a").is_none());
    }
}
