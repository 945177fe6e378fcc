//! Reading the registry from the store at start: every site record, on every core, each
//! parsed into checked values; a record that does not parse is set aside and said, never
//! served half-read.

use super::{Onboarding, Registry, SiteRecord};
use crate::events::Events;
use crate::store::Store;

/// Moves a site record that does not parse out of the way (kept for inspection, never read
/// again), with an ERROR and a `site.record_rejected` event naming where it is now.
fn set_aside_record(store: &Store, events: &Events, key: &str, error: &serde_json::Error) {
    let path = store.path_of(key);
    let kept = store.set_aside(&path);
    let kept_at = kept.as_deref().unwrap_or(&path).display().to_string();
    tracing::error!(path = %path.display(), kept = %kept_at, error = %error, "set aside an unreadable site record");
    events.record(
        crate::events::EventKind::SiteRecordRejected,
        key,
        format!("unreadable site record ({error}); kept at {kept_at}"),
    );
}

impl Onboarding {
    /// Every registered site in `store` (corrupt records are reported and skipped). A start
    /// reads it beside the certificate records (`edge::Edge::build`).
    pub fn read_registry(store: &Store, events: &Events) -> Registry {
        let started = std::time::Instant::now();
        let (records, failure) = store.scan_map("sites", ".json", |key, bytes| {
            serde_json::from_slice::<SiteRecord>(bytes)
                .map_err(|e| set_aside_record(store, events, key, &e))
                .ok()
        });
        if let Some(e) = failure {
            tracing::error!(error = %e, "cannot read every site record");
        }
        let registry = Registry::from_records(records.into_iter().flatten());
        tracing::info!(
            sites = registry.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "registered sites read from the store"
        );
        registry
    }
}
