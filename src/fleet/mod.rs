//! A fleet of edges on one etcd: what each node learns from the store's watches — sites
//! registered through any node (`sites/`), certificates issued or renewed by any node
//! (`certs/`, adopted through the certificate owner), challenge answers of any node's orders
//! in flight (`challenges/`, served by `issue::shared_answers`), session ticket keys, events
//! recorded by any node (`events/`, `events.rs`) — and its own heartbeat in `nodes/`
//! (`nodes.rs`). Built with the handles it uses (`Fleet`), never the edge itself. Nothing
//! here runs on the embedded or `fs` store.

pub mod events;
pub mod nodes;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::events::Events;
use crate::issue::Challenges;
use crate::managed::CertManager;
use crate::onboarding::{Onboarding, SiteRecord};
use crate::store::etcd::Change;
use crate::tasks::Tasks;
use crate::tls::SiteTable;
use crate::tls::tickets::SharedTicketer;

/// What the fleet's watches and heartbeat work on, handed in by the edge.
pub struct Fleet {
    pub certificates: Arc<CertManager>,
    pub challenges: Arc<Challenges>,
    pub table: Arc<SiteTable>,
    pub onboarding: Arc<Onboarding>,
    pub events: Arc<Events>,
    /// The fleet's session ticket keys, when tickets are on.
    pub tickets: Option<Arc<SharedTicketer>>,
    pub node: nodes::ThisNode,
    pub tasks: Tasks,
}

/// Starts the watches and the heartbeat when the edge's store is shared.
pub fn start(fleet: Arc<Fleet>) {
    let Some(etcd) = fleet.certificates.store().fleet() else {
        return;
    };
    let certs = etcd.watch("certs");
    let sites = etcd.watch("sites");
    let answers = etcd.watch("challenges");
    fleet.challenges.join_fleet();
    fleet.tasks.spawn(follow_certs(fleet.clone(), certs));
    fleet.tasks.spawn(follow_sites(fleet.clone(), sites));
    fleet.tasks.spawn(crate::issue::shared_answers::follow(
        fleet.challenges.clone(),
        answers,
    ));
    fleet.tasks.spawn(nodes::heartbeat(fleet.clone()));
    fleet.tasks.spawn(events::share(fleet.clone()));
    if let Some(tickets) = fleet.tickets.clone() {
        let changes = etcd.watch("tickets");
        fleet
            .tasks
            .spawn(follow_tickets(fleet.clone(), tickets, changes));
    }
}

/// Ticket keys: taken in when any node rotates them; rotated here when due.
async fn follow_tickets(
    fleet: Arc<Fleet>,
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
        let (fleet, tickets) = (fleet.clone(), tickets.clone());
        let refreshed = tokio::task::spawn_blocking(move || {
            tickets.refresh(fleet.certificates.store(), rotate)
        })
        .await;
        if let Ok(Err(e)) = refreshed {
            tracing::warn!(error = %e, "cannot refresh the session ticket keys; the current ones stay");
        }
    }
}

/// How often a node looks whether the ticket key is due for rotation.
const TICKET_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Certificates stored by any node: each new one is swapped into its site at once.
async fn follow_certs(fleet: Arc<Fleet>, mut changes: mpsc::Receiver<Change>) {
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
                    fleet.certificates.note_removed(id);
                }
                continue;
            }
        };
        let adopting = fleet.clone();
        let adopt = move || {
            for (key, bytes) in entries {
                if key.ends_with(".json") {
                    adopt_cert(&adopting, &key, &bytes);
                }
            }
        };
        if let Err(e) = tokio::task::spawn_blocking(adopt).await {
            tracing::error!(error = %e, "cannot apply a certificate change from the store");
        }
    }
}

/// Swaps the certificate of the record at `key` into the site with its names.
fn adopt_cert(fleet: &Fleet, key: &str, bytes: &[u8]) {
    let record = match fleet.certificates.records().parse_at(key, bytes) {
        Ok(loaded) => loaded.record,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a certificate record from the store");
            return;
        }
    };
    fleet.certificates.note_stored(&record);
    let Some(site) = record
        .names
        .first()
        .and_then(|first| fleet.table.lookup(Some(first)))
    else {
        return;
    };
    let same_names = site.hosts().len() == record.names.len()
        && site
            .hosts()
            .iter()
            .all(|h| record.names.contains(&h.to_string()));
    if same_names {
        fleet.certificates.adopt(&site, &record);
    }
}

/// Sites registered, changed or removed by any node.
async fn follow_sites(fleet: Arc<Fleet>, mut changes: mpsc::Receiver<Change>) {
    let onboarding = &fleet.onboarding;
    while let Some(change) = changes.recv().await {
        match change {
            Change::Snapshot(entries) => {
                let records = entries
                    .iter()
                    .filter(|(key, _)| key.ends_with(".json"))
                    .filter_map(|(key, bytes)| parse_site(&fleet.events, key, bytes))
                    .collect();
                if onboarding.sync_all(records) {
                    onboarding.notify_all_served_changed();
                }
            }
            Change::Put(key, bytes) => {
                if let Some(record) = parse_site(&fleet.events, &key, &bytes) {
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

fn parse_site(events: &crate::events::Events, key: &str, bytes: &[u8]) -> Option<SiteRecord> {
    site_id(key)?;
    match serde_json::from_slice::<SiteRecord>(bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            // Another node wrote it: left where it is (that node reads it too), said here.
            tracing::error!(key, error = %e, "ignoring an unreadable site record from the store");
            events.record(
                crate::events::EventKind::SiteRecordRejected,
                key,
                format!("unreadable site record from the fleet's store ({e})"),
            );
            None
        }
    }
}
