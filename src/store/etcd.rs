//! The etcd backend of the store, for a fleet: keys live under `storage.prefix`; this node
//! holds one lease (`storage.lease_ttl`, kept alive while etcd answers) that its locks,
//! challenge answers and heartbeat are attached to, so they vanish when the node dies.
//!
//! etcd-client is async; the store interface is synchronous (it is called while sites are
//! built and from the admin API alike), so the client lives on a runtime of its own, on its
//! own thread, and every call waits at most `storage.timeout` for it. Watches stream on that
//! runtime too and hand changes to the edge through channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::mpsc;

use super::StoreError;
use crate::config::EtcdSettings;

/// One change under a watched directory.
#[derive(Debug)]
pub enum Change {
    /// Every entry as it is now: sent when the watch starts and after it was interrupted
    /// (entries absent from it were deleted meanwhile).
    Snapshot(Vec<(String, Vec<u8>)>),
    Put(String, Vec<u8>),
    Delete(String),
}

/// A lock this node holds: its key and the revision that created it (the fencing token).
#[derive(Debug, Clone)]
pub struct Held {
    key: String,
    revision: i64,
}

/// The etcd backend.
pub struct EtcdBackend {
    settings: EtcdSettings,
    client: Client,
    runtime: tokio::runtime::Handle,
    /// This node's lease; 0 while it has none (etcd unreachable).
    lease: Arc<AtomicI64>,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.settings.endpoints)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

/// The runtime the etcd client runs on: one thread, for the life of the process.
fn client_runtime() -> Result<tokio::runtime::Handle, std::io::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("etcd-client".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

impl EtcdBackend {
    /// Connects to the cluster and takes this node's lease; fails (naming the endpoints)
    /// when no member answers within the timeout.
    pub fn connect(settings: &EtcdSettings) -> Result<Self, StoreError> {
        let unavailable = |reason: String| StoreError::Unavailable {
            what: format!("etcd at {}", settings.endpoints.join(", ")),
            reason,
        };
        let runtime = client_runtime().map_err(|e| unavailable(e.to_string()))?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(settings.timeout)
            .with_timeout(settings.timeout)
            .with_keep_alive(Duration::from_secs(2), settings.timeout);
        if let Some((user, password)) = &settings.user {
            options = options.with_user(user.clone(), password.clone());
        }
        let endpoints = settings.endpoints.clone();
        let timeout = settings.timeout;
        let client = wait(&runtime, timeout, async move {
            Client::connect(endpoints, Some(options)).await
        })
        .map_err(unavailable)?;
        let backend = Self {
            settings: settings.clone(),
            client,
            runtime,
            lease: Arc::new(AtomicI64::new(0)),
        };
        let mut client = backend.client.clone();
        let ttl = lease_seconds(settings.lease_ttl);
        let id = backend.call("taking this node's lease", async move {
            client.lease_grant(ttl, None).await.map(|r| r.id())
        })?;
        backend.lease.store(id, Ordering::SeqCst);
        backend.runtime.spawn(keep_lease(
            backend.client.clone(),
            backend.lease.clone(),
            settings.lease_ttl,
        ));
        Ok(backend)
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.settings.prefix)
    }

    /// Where `key` lives, for messages.
    pub fn describe(&self, key: &str) -> String {
        format!("etcd key {}", self.full(key))
    }

    /// Runs `op` on the client's runtime and waits for it at most `storage.timeout`.
    fn call<T: Send + 'static>(
        &self,
        doing: &str,
        op: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        wait(&self.runtime, self.settings.timeout, op).map_err(|reason| StoreError::Unavailable {
            what: format!("etcd ({doing})"),
            reason,
        })
    }

    /// Like [`call`](Self::call), for async callers (never blocks their thread).
    async fn call_async<T: Send + 'static>(
        &self,
        doing: &str,
        op: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let timeout = self.settings.timeout;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, op).await });
        let unavailable = |reason: String| StoreError::Unavailable {
            what: format!("etcd ({doing})"),
            reason,
        };
        match task.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(unavailable(e.to_string())),
            Ok(Err(_)) => Err(unavailable(format!("no answer within {timeout:?}"))),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut client = self.client.clone();
        let full = self.full(key);
        self.call("reading", async move {
            let response = client.get(full, None).await?;
            Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let (full, value) = (self.full(key), value.to_vec());
        self.call("writing", async move {
            client.put(full, value, None).await.map(|_| ())
        })
    }

    /// Writes `key` only if it does not exist; whether it was written.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let mut client = self.client.clone();
        let (full, value) = (self.full(key), value.to_vec());
        self.call("creating", async move {
            let txn = Txn::new()
                .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(full, value, None)]);
            Ok(client.txn(txn).await?.succeeded())
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let full = self.full(key);
        self.call("deleting", async move {
            client.delete(full, None).await.map(|_| ())
        })
    }

    /// Every key directly under `dir/` with its value (keys relative to the prefix).
    pub fn list(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut client = self.client.clone();
        let full = self.full(&format!("{dir}/"));
        let strip = self.settings.prefix.len();
        self.call("listing", async move {
            let response = client
                .get(full, Some(GetOptions::new().with_prefix()))
                .await?;
            Ok(entries(response.kvs(), strip))
        })
    }

    /// Writes `key` attached to this node's lease: it disappears when the node dies.
    pub async fn put_leased(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let (full, value) = (self.full(key), value.to_vec());
        let lease = self.lease.load(Ordering::SeqCst);
        self.call_async("writing", async move {
            client
                .put(full, value, Some(PutOptions::new().with_lease(lease)))
                .await
                .map(|_| ())
        })
        .await
    }

    pub async fn delete_async(&self, key: &str) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let full = self.full(key);
        self.call_async("deleting", async move {
            client.delete(full, None).await.map(|_| ())
        })
        .await
    }

    /// Takes the lock `locks/<name>` for this node, unless another node holds it (`None`).
    /// Held until released or until this node's lease expires.
    pub async fn try_lock(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let mut client = self.client.clone();
        let key = self.full(&format!("locks/{name}"));
        let lease = self.lease.load(Ordering::SeqCst);
        if lease == 0 {
            return Err(StoreError::Unavailable {
                what: "etcd (locking)".into(),
                reason: "this node has no lease: etcd has not answered".into(),
            });
        }
        let node = self.settings.node_id.clone();
        self.call_async("locking", async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    node,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            let response = client.txn(txn).await?;
            if response.succeeded() {
                let revision = response.header().map_or(0, |h| h.revision());
                return Ok(Some(Held { key, revision }));
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
                }))
        })
        .await
    }

    /// [`try_lock`](Self::try_lock) for synchronous callers.
    pub fn try_lock_blocking(&self, name: &str) -> Result<Option<Held>, StoreError> {
        wait_async(&self.runtime, self.try_lock_owned(name))
    }

    /// [`unlock`](Self::unlock) for synchronous callers.
    pub fn unlock_blocking(&self, held: Held) {
        let _ = wait_async(&self.runtime, self.unlock_owned(held));
    }

    fn try_lock_owned(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Held>, StoreError>> + Send + 'static {
        let this = self.shallow();
        let name = name.to_owned();
        async move { this.try_lock(&name).await }
    }

    fn unlock_owned(
        &self,
        held: Held,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let this = self.shallow();
        async move {
            this.unlock(held).await;
            Ok(())
        }
    }

    /// A copy sharing the client, the runtime and the lease.
    fn shallow(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            client: self.client.clone(),
            runtime: self.runtime.clone(),
            lease: self.lease.clone(),
        }
    }

    /// Releases `held` if it is still ours.
    pub async fn unlock(&self, held: Held) {
        let mut client = self.client.clone();
        let result = self
            .call_async("unlocking", async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        held.key.clone(),
                        CompareOp::Equal,
                        held.revision,
                    )])
                    .and_then([TxnOp::delete(held.key, None)]);
                client.txn(txn).await.map(|_| ())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot release a lock; it expires with this node's lease");
        }
    }

    /// Writes `key` only while `held` is still this node's (fencing: a node whose lease
    /// expired mid-order cannot overwrite what the next holder stored).
    pub fn put_fenced(&self, held: &Held, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let (full, value) = (self.full(key), value.to_vec());
        let lock = held.clone();
        let succeeded = self.call("writing under a lock", async move {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    lock.key,
                    CompareOp::Equal,
                    lock.revision,
                )])
                .and_then([TxnOp::put(full, value, None)]);
            Ok(client.txn(txn).await?.succeeded())
        })?;
        if succeeded {
            Ok(())
        } else {
            Err(StoreError::LockLost {
                key: self.describe(key),
            })
        }
    }

    /// Streams the changes under `dir/` (keys relative to the prefix): a snapshot first,
    /// then each put and delete; after an interruption (a member died, etcd was down) it
    /// reconnects and sends a fresh snapshot. Ends when the receiver is dropped.
    pub fn watch(&self, dir: &str) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel(1024);
        let client = self.client.clone();
        let full = self.full(&format!("{dir}/"));
        let strip = self.settings.prefix.len();
        self.runtime.spawn(async move {
            let mut failures = 0u32;
            loop {
                match watch_once(client.clone(), &full, strip, &tx).await {
                    Ok(()) => return,
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(60) {
                            tracing::warn!(prefix = %full, error = %e, "store watch interrupted; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
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

/// One watch session: snapshot, then events until an error (or the receiver is gone: Ok).
async fn watch_once(
    mut client: Client,
    full: &str,
    strip: usize,
    tx: &mpsc::Sender<Change>,
) -> Result<(), etcd_client::Error> {
    let snapshot = client
        .get(full, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = snapshot.header().map_or(0, |h| h.revision());
    if tx
        .send(Change::Snapshot(entries(snapshot.kvs(), strip)))
        .await
        .is_err()
    {
        return Ok(());
    }
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
        }
    }
    Err(etcd_client::Error::WatchError("watch stream ended".into()))
}

fn relative(key: &[u8], strip: usize) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    key.get(strip..).map(str::to_owned)
}

fn entries(kvs: &[etcd_client::KeyValue], strip: usize) -> Vec<(String, Vec<u8>)> {
    kvs.iter()
        .filter_map(|kv| Some((relative(kv.key(), strip)?, kv.value().to_vec())))
        .collect()
}

fn lease_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX)
}

/// Keeps this node's lease alive; when it is lost (etcd unreachable for longer than its
/// time to live), takes a new one as soon as etcd answers again.
async fn keep_lease(mut client: Client, lease: Arc<AtomicI64>, ttl: Duration) {
    let every = ttl / 3;
    loop {
        let id = lease.load(Ordering::SeqCst);
        let kept = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
            loop {
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(response) if response.ttl() > 0 => {}
                    _ => {
                        return Err(etcd_client::Error::LeaseKeepAliveError(
                            "the lease expired".into(),
                        ));
                    }
                }
                tokio::time::sleep(every).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), etcd_client::Error>(())
        };
        let error = match tokio::time::timeout(ttl, kept).await {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => continue,
            Err(_) => "no answer".to_owned(),
        };
        tracing::warn!(
            error,
            "lost contact with etcd; this node's locks lapse with its lease"
        );
        lease.store(0, Ordering::SeqCst);
        loop {
            tokio::time::sleep(every).await;
            match tokio::time::timeout(ttl, client.lease_grant(lease_seconds(ttl), None)).await {
                Ok(Ok(granted)) => {
                    lease.store(granted.id(), Ordering::SeqCst);
                    tracing::info!("etcd answers again: this node has a new lease");
                    break;
                }
                _ => continue,
            }
        }
    }
}

/// Runs `op` (which bounds its own time) on `runtime` and blocks this thread until it ends.
fn wait_async<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    op: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(op.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Unavailable {
            what: "etcd".into(),
            reason: "the client's runtime stopped".into(),
        })
    })
}

/// Runs `op` on `runtime` and blocks this thread for at most `timeout`.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    timeout: Duration,
    op: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let result = tokio::time::timeout(timeout, op).await;
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout + Duration::from_millis(500)) {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) | Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
