//! Watches: a directory's snapshot, then every change to it, resumed from the last revision
//! seen when the stream breaks (a new snapshot when etcd compacted that history).

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use tokio::sync::mpsc;

use super::*;

/// One change under a watched directory.
#[derive(Debug)]
pub enum Change {
    /// Every entry as it is now: sent when the watch starts and after it was interrupted
    /// (entries absent from it were deleted meanwhile).
    Snapshot(Vec<(String, Vec<u8>)>),
    Put(String, Vec<u8>),
    Delete(String),
}

/// One watch session: from `resume` (the revision the receiver is up to date with) or else
/// from a fresh snapshot, then events until an error (or the receiver is gone: Ok). `resume`
/// follows each change passed on, so the next session replays only what this one missed;
/// when etcd has compacted that history away, the next session starts with a snapshot.
pub(super) async fn watch_once(
    mut client: Client,
    full: &str,
    strip: usize,
    resume: &mut Option<i64>,
    tx: &mpsc::Sender<Change>,
) -> Result<(), etcd_client::Error> {
    let revision = match *resume {
        Some(revision) => revision,
        None => {
            let mut listing = Listing::new(full);
            while let Some(from) = listing.next_key() {
                let options = page_options(listing.end.clone(), listing.revision);
                let page = client.get(from, Some(options)).await?;
                listing.take(page, strip);
            }
            let revision = listing.revision;
            if tx.send(Change::Snapshot(listing.entries)).await.is_err() {
                return Ok(());
            }
            *resume = Some(revision);
            revision
        }
    };
    tracing::debug!(prefix = full, from = revision + 1, "watching the store");
    let mut stream = client
        .watch(
            full,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            if response.compact_revision() > 0 {
                *resume = None;
            }
            return Err(etcd_client::Error::WatchError(format!(
                "watch canceled: {}",
                response.cancel_reason()
            )));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(key) = relative(kv.key(), strip) else {
                continue;
            };
            let change = match event.event_type() {
                EventType::Put => Change::Put(key, kv.value().to_vec()),
                EventType::Delete => Change::Delete(key),
            };
            if tx.send(change).await.is_err() {
                return Ok(());
            }
            *resume = Some(kv.mod_revision());
        }
    }
    Err(etcd_client::Error::WatchError("watch stream ended".into()))
}

impl EtcdBackend {
    /// Streams the changes under `dir/` (keys relative to the prefix): a snapshot first,
    /// then each put and delete; after an interruption (a member died, etcd was down) it
    /// moves to the next member and sends a fresh snapshot. Ends when the receiver is
    /// dropped.
    pub fn watch(&self, dir: &str) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel(1024);
        let members = self.members.clone();
        let full = self.full(&format!("{dir}/"));
        let strip = self.settings.prefix.len();
        // What this node listed at start it has loaded: the first session goes on from there;
        // a later one from the last change it passed on.
        let mut resume = self
            .listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(dir);
        self.runtime.spawn(async move {
            let mut failures = 0u32;
            loop {
                let (i, client) = members.pick();
                match watch_once(client, &full, strip, &mut resume, &tx).await {
                    Ok(()) => return,
                    Err(e) => {
                        members.failed(i);
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(60) {
                            tracing::warn!(prefix = %full, error = %e, "store watch interrupted; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }
}
