//! A fleet of edges on one etcd: what each node learns from the store's watches — sites
//! registered through any node (`sites/`), certificates issued or renewed by any node
//! (`certs/`), challenge answers of any node's orders in flight (`challenges/`), events
//! recorded by any node (`events/`, `events.rs`) — and its own heartbeat in `nodes/`
//! (`nodes.rs`). Nothing here runs on the `fs` store.

pub mod events;
pub mod nodes;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::edge::Edge;
use crate::onboarding::SiteRecord;
use crate::store::etcd::Change;

/// Starts the watches and the heartbeat when the edge's store is shared.
pub fn start(edge: &Arc<Edge>) {
    let Some(etcd) = edge.certificates.store().fleet() else {
        return;
    };
    let certs = etcd.watch("certs");
    let sites = etcd.watch("sites");
    let answers = etcd.watch("challenges");
    edge.challenges.join_fleet();
    edge.spawn(follow_certs(edge.clone(), certs));
    edge.spawn(follow_sites(edge.clone(), sites));
    edge.spawn(crate::issue::shared_answers::follow(
        edge.challenges.clone(),
        answers,
    ));
    edge.spawn(nodes::heartbeat(edge.clone()));
    edge.spawn(events::share(edge.clone()));
    if let Some(tickets) = edge.shared_tickets.clone() {
        let changes = etcd.watch("tickets");
        edge.spawn(follow_tickets(edge.clone(), tickets, changes));
    }
}

/// Ticket keys: taken in when any node rotates them; rotated here when due.
async fn follow_tickets(
    edge: Arc<Edge>,
    tickets: Arc<crate::tls::tickets::SharedTicketer>,
    mut changes: mpsc::Receiver<Change>,
) {
    let mut tick = tokio::time::interval(TICKET_CHECK);
    loop {
        let rotate = tokio::select! {
            change = changes.recv() => {
                if change.is_none() {
                    return;
                }
                false
            }
            _ = tick.tick() => true,
        };
        let (edge, tickets) = (edge.clone(), tickets.clone());
        let refreshed =
            tokio::task::spawn_blocking(move || tickets.refresh(edge.certificates.store(), rotate))
                .await;
        if let Ok(Err(e)) = refreshed {
            tracing::warn!(error = %e, "cannot refresh the session ticket keys; the current ones stay");
        }
    }
}

/// How often a node looks whether the ticket key is due for rotation.
const TICKET_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Certificates stored by any node: each new one is swapped into its site at once.
async fn follow_certs(edge: Arc<Edge>, mut changes: mpsc::Receiver<Change>) {
    while let Some(change) = changes.recv().await {
        let entries = match change {
            Change::Snapshot(entries) => entries,
            Change::Put(key, bytes) => vec![(key, bytes)],
            // A removed site's record: the site itself goes with the registry's change.
            Change::Delete(key) => {
                if let Some(id) = key
                    .strip_prefix("certs/")
                    .and_then(|k| k.strip_suffix(".json"))
                {
                    edge.certificates.note_removed(id);
                }
                continue;
            }
        };
        let edge = edge.clone();
        let adopt = move || {
            for (key, bytes) in entries {
                if key.ends_with(".json") {
                    adopt_cert(&edge, &key, &bytes);
                }
            }
        };
        if let Err(e) = tokio::task::spawn_blocking(adopt).await {
            tracing::error!(error = %e, "cannot apply a certificate change from the store");
        }
    }
}

/// Swaps the certificate of the record at `key` into the site with its names.
fn adopt_cert(edge: &Edge, key: &str, bytes: &[u8]) {
    let record = match edge.certificates.records().parse_at(key, bytes) {
        Ok(loaded) => loaded.record,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a certificate record from the store");
            return;
        }
    };
    edge.certificates.note_stored(&record);
    let Some(site) = record
        .names
        .first()
        .and_then(|first| edge.table.lookup(Some(first)))
    else {
        return;
    };
    let same_names = site.hosts().len() == record.names.len()
        && site
            .hosts()
            .iter()
            .all(|h| record.names.contains(&h.to_string()));
    if same_names {
        edge.certificates.adopt(&site, &record);
    }
}

/// Sites registered, changed or removed by any node.
async fn follow_sites(edge: Arc<Edge>, mut changes: mpsc::Receiver<Change>) {
    let onboarding = &edge.onboarding;
    while let Some(change) = changes.recv().await {
        match change {
            Change::Snapshot(entries) => {
                let records = entries
                    .iter()
                    .filter(|(key, _)| key.ends_with(".json"))
                    .filter_map(|(key, bytes)| parse_site(key, bytes))
                    .collect();
                if onboarding.sync_all(records) {
                    onboarding.notify_all_served_changed();
                }
            }
            Change::Put(key, bytes) => {
                if let Some(record) = parse_site(&key, &bytes) {
                    let (id, hosts) = (record.id.clone(), record.hosts.clone());
                    if onboarding.sync(record) {
                        onboarding.notify_served_changed(&id, &hosts);
                    }
                }
            }
            Change::Delete(key) => {
                if let Some(id) = site_id(&key)
                    && let Some(record) = onboarding.sync_removed(id)
                {
                    onboarding.notify_served_changed(id, &record.hosts);
                }
            }
        }
    }
}

fn site_id(key: &str) -> Option<&str> {
    key.strip_prefix("sites/")?.strip_suffix(".json")
}

fn parse_site(key: &str, bytes: &[u8]) -> Option<SiteRecord> {
    site_id(key)?;
    match serde_json::from_slice::<SiteRecord>(bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(key, error = %e, "ignoring an unreadable site record from the store");
            None
        }
    }
}
