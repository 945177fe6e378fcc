//! Who may write what: the store-wide lock for first-use creation (`lock`), and claims on one
//! name's work (`claim`, `holds`, `release`) — always granted on one node, an etcd lock with
//! fencing in a fleet.

use super::{Backend, Store, StoreError, atomic, etcd};

/// Held while shared things are created on first use (see [`Store::lock`]); released when
/// dropped.
pub struct StoreLock<'a> {
    store: &'a Store,
    held: Option<Held>,
}

/// What a [`StoreLock`] holds.
enum Held {
    /// The advisory lock on `data_dir/.lock` (released when the file closes).
    Fs(#[allow(dead_code)] std::fs::File),
    Etcd(etcd::Held),
}

/// The right to work on something (an order, a site's onboarding) for as long as it is held.
#[derive(Debug)]
pub enum Claim {
    /// One process: nothing to share.
    Local,
    /// A fleet lock in etcd, with its fencing revision.
    Fleet(etcd::Held),
}

impl Store {
    /// Exclusive lock for first-use creation of shared things (fs, embedded: `atomic::lock_dir`
    /// on `data_dir`, shared with the CLI; etcd:
    /// the fleet lock `locks/store`, waited for up to ten times `storage.timeout`).
    pub fn lock(&self) -> Result<StoreLock<'_>, StoreError> {
        let held = match &self.backend {
            Backend::Fs(dir) | Backend::Embedded { dir, .. } => atomic::lock_dir(dir)
                .map(Held::Fs)
                .map_err(|source| StoreError::DataDir {
                    path: dir.clone(),
                    source,
                })?,
            Backend::Etcd(etcd) => {
                let deadline = std::time::Instant::now() + etcd.settings().timeout * 10;
                loop {
                    let attempt = etcd.try_lock_blocking("store")?;
                    if let Some(held) = attempt {
                        break Held::Etcd(held);
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Unavailable {
                            what: "etcd (locks/store)".into(),
                            reason: "another node has held the store lock too long".into(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        };
        Ok(StoreLock {
            store: self,
            held: Some(held),
        })
    }

    /// Claims the work on `name` for this node: always granted on one node; on etcd,
    /// `None` while another node holds it.
    pub async fn claim(&self, name: &str) -> Result<Option<Claim>, StoreError> {
        match &self.backend {
            Backend::Fs(_) | Backend::Embedded { .. } => Ok(Some(Claim::Local)),
            Backend::Etcd(etcd) => Ok(etcd.try_lock(name).await?.map(Claim::Fleet)),
        }
    }

    /// Whether `claim` still holds (without a round trip to the store).
    pub fn holds(&self, claim: &Claim) -> bool {
        match (&self.backend, claim) {
            (Backend::Etcd(etcd), Claim::Fleet(held)) => etcd.holds(held),
            _ => true,
        }
    }

    /// Gives up a claim.
    pub async fn release(&self, claim: Claim) {
        if let (Backend::Etcd(etcd), Claim::Fleet(held)) = (&self.backend, claim) {
            etcd.unlock(held).await;
        }
    }
}

impl Drop for StoreLock<'_> {
    fn drop(&mut self) {
        if let (Backend::Etcd(etcd), Some(Held::Etcd(held))) =
            (&self.store.backend, self.held.take())
        {
            etcd.unlock_blocking(held);
        }
    }
}
