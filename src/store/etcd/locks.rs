//! Fleet locks: one key per name under `locks/` on this node's lease, created only if
//! absent, with the revision that created it as the fencing token every write under the
//! lock is checked against.

use std::sync::atomic::Ordering;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::*;
use crate::store::StoreError;

/// A lock this node holds: its key and the revision that created it (the fencing token).
#[derive(Debug, Clone)]
pub struct Held {
    pub(super) key: String,
    pub(super) revision: i64,
    /// The lease it is attached to: it is held while this node still has that lease.
    pub(super) lease: i64,
}

impl EtcdBackend {
    /// This node's lease; an error while it has none (a key written without one would
    /// outlive the node).
    pub(super) fn lease(&self) -> Result<i64, StoreError> {
        match self.lease.load(Ordering::SeqCst) {
            0 => Err(StoreError::Unavailable {
                what: "etcd (lease)".into(),
                reason: "this node has no lease: etcd has not answered".into(),
            }),
            id => Ok(id),
        }
    }

    /// Takes the lock `locks/<name>` for this node, unless another node holds it (`None`).
    /// Held until released or until this node's lease expires.
    pub async fn try_lock(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let key = self.full(&format!("locks/{name}"));
        let lease = self.lease()?;
        let node = self.settings.node_id.clone();
        self.call_async("locking", move |mut client| {
            let (key, node) = (key.clone(), node.clone());
            async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.clone(),
                        node,
                        Some(PutOptions::new().with_lease(lease)),
                    )]);
                let response = client.txn(txn).await?;
                if response.succeeded() {
                    let revision = response.header().map_or(0, |h| h.revision());
                    return Ok(Some(Held {
                        key,
                        revision,
                        lease,
                    }));
                }
                // Ours already (same lease): held again.
                let current = client.get(key.clone(), None).await?;
                Ok(current
                    .kvs()
                    .first()
                    .filter(|kv| kv.lease() == lease)
                    .map(|kv| Held {
                        key,
                        revision: kv.create_revision(),
                        lease,
                    }))
            }
        })
        .await
    }

    /// Whether `held` is still this node's, as far as this node knows without asking etcd:
    /// its lease is the one this node keeps alive (a lost lease took its locks with it).
    pub fn holds(&self, held: &Held) -> bool {
        self.lease.load(Ordering::SeqCst) == held.lease
    }

    /// [`try_lock`](Self::try_lock) for synchronous callers.
    pub fn try_lock_blocking(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let this = self.shallow();
        let name = name.to_owned();
        wait_async(&self.runtime, async move { this.try_lock(&name).await })
    }

    /// [`unlock`](Self::unlock) for synchronous callers.
    pub fn unlock_blocking(&self, held: Held) {
        let this = self.shallow();
        let _ = wait_async(&self.runtime, async move {
            this.unlock(held).await;
            Ok(())
        });
    }

    /// A copy sharing the clients, the runtime and the lease.
    pub(super) fn shallow(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            members: self.members.clone(),
            runtime: self.runtime.clone(),
            lease: self.lease.clone(),
            listed: self.listed.clone(),
        }
    }

    /// Releases `held` if it is still ours.
    pub async fn unlock(&self, held: Held) {
        let result = self
            .call_async("unlocking", move |mut client| {
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        held.key.clone(),
                        CompareOp::Equal,
                        held.revision,
                    )])
                    .and_then([TxnOp::delete(held.key.clone(), None)]);
                async move { client.txn(txn).await.map(|_| ()) }
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot release a lock; it expires with this node's lease");
        }
    }

    /// Writes `key` only while `held` is still this node's (fencing: a node whose lease
    /// expired mid-order cannot overwrite what the next holder stored).
    pub fn put_fenced(&self, held: &Held, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (full, value) = (self.full(key), value.to_vec());
        let lock = held.clone();
        let succeeded = self.call("writing under a lock", move |mut client| {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    lock.key.clone(),
                    CompareOp::Equal,
                    lock.revision,
                )])
                .and_then([TxnOp::put(full.clone(), value.clone(), None)]);
            async move { Ok(client.txn(txn).await?.succeeded()) }
        })?;
        if succeeded {
            Ok(())
        } else {
            Err(StoreError::LockLost {
                key: self.describe(key),
            })
        }
    }
}
