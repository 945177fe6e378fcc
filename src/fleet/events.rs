//! The fleet's event log: every node writes the events it records under `events/` in the
//! store and keeps its newest [`CAPACITY`] there (deleting older ones), and takes in the
//! events the other nodes write, so `GET /api/v1/events` on any node shows the whole
//! fleet's. A webhook still gets each event once: from the node that recorded it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Fleet;
use crate::events::{CAPACITY, Event};
use crate::store::etcd::Change;

/// Events waiting to be written to the store.
const QUEUE: usize = 1024;

/// Shares this node's events with the fleet and follows the others' until the edge stops.
pub async fn share(fleet: Arc<Fleet>) {
    let Some(node) = fleet
        .certificates
        .store()
        .fleet()
        .map(|etcd| etcd.settings().node_id.clone())
    else {
        return;
    };
    // What the fleet recorded before this node started: the newest events, oldest first.
    let reader = fleet.clone();
    let stored = tokio::task::spawn_blocking(move || {
        reader
            .certificates
            .store()
            .fleet()
            .map(|etcd| etcd.list("events"))
    })
    .await;
    let stored = match stored {
        Ok(Some(Ok(entries))) => entries,
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "cannot read the fleet's event log; new events are still shared");
            Vec::new()
        }
        _ => Vec::new(),
    };
    let mut own = VecDeque::new();
    let mut earlier: Vec<(String, Event)> = stored
        .into_iter()
        .filter_map(|(key, bytes)| Some((key, serde_json::from_slice::<Event>(&bytes).ok()?)))
        .collect();
    earlier.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, event) in &earlier {
        if event.node.as_deref() == Some(node.as_str()) {
            own.push_back(key.clone());
        }
    }
    for (_, event) in earlier.into_iter().rev().take(CAPACITY).rev() {
        fleet.events.record_from_fleet(event);
    }
    let Some(changes) = fleet
        .certificates
        .store()
        .fleet()
        .map(|etcd| etcd.watch("events"))
    else {
        return;
    };
    let (tx, queue) = mpsc::channel(QUEUE);
    fleet.events.join_fleet(node.clone(), tx);
    tokio::join!(
        publish(fleet.clone(), queue, own, node.clone()),
        follow(fleet.clone(), changes, node)
    );
}

/// Writes each event this node records to the store, then deletes its oldest beyond the
/// capacity.
async fn publish(
    fleet: Arc<Fleet>,
    mut queue: mpsc::Receiver<Event>,
    mut own: VecDeque<String>,
    node: String,
) {
    let mut failing = false;
    while let Some(event) = queue.recv().await {
        let Some(etcd) = fleet.certificates.store().fleet() else {
            return;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let key = format!("events/{nanos:020}-{:010}-{node}.json", event.seq);
        let Ok(bytes) = serde_json::to_vec(&event) else {
            continue;
        };
        match etcd.put_async(&key, &bytes).await {
            Ok(()) => {
                failing = false;
                own.push_back(key);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, kind = %event.kind, "event kept on this node only: the store is unavailable");
                }
                failing = true;
            }
        }
        while own.len() > CAPACITY {
            if let Some(oldest) = own.pop_front() {
                let _ = etcd.delete_async(&oldest).await;
            }
        }
    }
}

/// Takes in the events other nodes write.
async fn follow(fleet: Arc<Fleet>, mut changes: mpsc::Receiver<Change>, node: String) {
    while let Some(change) = changes.recv().await {
        // A snapshot (after etcd compacted the history a broken watch needed) is not
        // replayed: the log is a log, and those events are old.
        if let Change::Put(_, bytes) = change
            && let Ok(event) = serde_json::from_slice::<Event>(&bytes)
            && event.node.as_deref() != Some(node.as_str())
        {
            fleet.events.record_from_fleet(event);
        }
    }
}
