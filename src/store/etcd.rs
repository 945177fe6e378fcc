//! The etcd backend of the store, for a fleet: keys live under `storage.prefix`; this node
//! holds one lease (`storage.lease_ttl`, kept alive while etcd answers) that its locks,
//! challenge answers and heartbeat are attached to, so they vanish when the node dies.
//!
//! etcd-client is async; the store interface is synchronous (it is called while sites are
//! built and from the admin API alike), so the clients live on a runtime of its own, on its
//! own thread, and every call waits at most `storage.timeout` per member tried. Watches
//! stream on that runtime too and hand changes to the edge through channels.
//!
//! One client per member, and the failover is ours (as in etcd's Go client: stay on a member
//! while it answers, move to the next when it does not): etcd-client's balanced channel
//! fails as a whole while any one member is down (etcdv3/etcd-client#39).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};

use super::StoreError;
use super::etcd_tls::{tls_options, with_client_cert_hint};
use super::settings::EtcdSettings;

mod listing;
mod locks;
mod members;
mod watch;

use listing::*;
pub use locks::Held;
use members::*;
pub use watch::Change;

/// The etcd backend.
pub struct EtcdBackend {
    settings: EtcdSettings,
    members: Members,
    runtime: tokio::runtime::Handle,
    /// This node's lease; 0 while it has none (etcd unreachable).
    lease: Arc<AtomicI64>,
    /// The revision each directory was last listed at (taken by its first watch).
    listed: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.settings.endpoints)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
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
        if let Some(tls) = &settings.tls {
            options = options.with_tls(tls_options(tls));
        }
        let mut clients = Vec::new();
        for endpoint in &settings.endpoints {
            let (endpoint, options) = (endpoint.clone(), options.clone());
            // One endpoint: the channel connects lazily, so a member down now is no error.
            let client = wait(&runtime, settings.timeout, async move {
                Client::connect([endpoint], Some(options)).await
            })
            .map_err(|e| unavailable(e.to_string()))?;
            clients.push(client);
        }
        let backend = Self {
            settings: settings.clone(),
            members: Members {
                clients: Arc::new(clients),
                current: Arc::new(AtomicUsize::new(0)),
            },
            runtime,
            lease: Arc::new(AtomicI64::new(0)),
            listed: Arc::default(),
        };
        let ttl = lease_seconds(settings.lease_ttl);
        let id = backend
            .call("taking this node's lease", move |mut client| async move {
                client.lease_grant(ttl, None).await.map(|r| r.id())
            })
            .map_err(|e| with_client_cert_hint(e, settings))?;
        backend.lease.store(id, Ordering::SeqCst);
        backend.runtime.spawn(keep_lease(
            backend.members.clone(),
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

    /// `op` run on the member in use (failing over to the others), as a future that owns
    /// what it needs; its error names what was being done.
    fn operation<T, F, Fut>(
        &self,
        doing: &str,
        op: F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        let members = self.members.clone();
        let timeout = self.settings.timeout;
        let doing = doing.to_owned();
        async move {
            members
                .run(timeout, op)
                .await
                .map_err(|e| StoreError::Unavailable {
                    what: format!("etcd ({doing})"),
                    reason: e.to_string(),
                })
        }
    }

    /// Runs `op` on the clients' runtime and blocks this thread until it ends.
    fn call<T, F, Fut>(&self, doing: &str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        wait_async(&self.runtime, self.operation(doing, op))
    }

    /// Like [`call`](Self::call), for async callers (never blocks their thread).
    async fn call_async<T, F, Fut>(&self, doing: &str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        self.runtime
            .spawn(self.operation(doing, op))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Unavailable {
                    what: format!("etcd ({doing})"),
                    reason: e.to_string(),
                })
            })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full(key);
        self.call("reading", move |mut client| {
            let full = full.clone();
            async move {
                let response = client.get(full, None).await?;
                Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
            }
        })
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (full, value) = (self.full(key), value.to_vec());
        self.call("writing", move |mut client| {
            let (full, value) = (full.clone(), value.clone());
            async move { client.put(full, value, None).await.map(|_| ()) }
        })
    }

    /// Writes many keys, up to [`TXN_OPS`] (and about 1 MiB) per transaction: bulk imports
    /// and the benchmarks' datasets. Each transaction is all or nothing; the whole is not.
    pub fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut batch: Vec<TxnOp> = Vec::new();
        let mut bytes = 0;
        for (index, (key, value)) in entries.iter().enumerate() {
            bytes += key.len() + value.len();
            batch.push(TxnOp::put(self.full(key), value.clone(), None));
            if batch.len() == TXN_OPS || bytes > TXN_BYTES || index + 1 == entries.len() {
                let ops = std::mem::take(&mut batch);
                bytes = 0;
                self.call("writing many", move |mut client| {
                    let txn = Txn::new().and_then(ops.clone());
                    async move { client.txn(txn).await.map(|_| ()) }
                })?;
            }
        }
        Ok(())
    }

    /// Writes `key` only if it does not exist; whether it was written.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let (full, value) = (self.full(key), value.to_vec());
        self.call("creating", move |mut client| {
            let txn = Txn::new()
                .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(full.clone(), value.clone(), None)]);
            async move { Ok(client.txn(txn).await?.succeeded()) }
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full(key);
        self.call("deleting", move |mut client| {
            let full = full.clone();
            async move { client.delete(full, None).await.map(|_| ()) }
        })
    }

    /// Every key under `dir/` with its value (keys relative to the prefix), read in pages
    /// (each its own call, with its own timeout) at the revision of the first page, so a
    /// listing of a million keys is one consistent view. The revision is kept: the first
    /// [`watch`](Self::watch) of `dir` goes on from it instead of reading everything again.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let full = self.full(&format!("{dir}/"));
        let strip = self.settings.prefix.len();
        let mut listing = Listing::new(&full);
        while let Some(from) = listing.next_key() {
            let (end, revision) = (listing.end.clone(), listing.revision);
            let page = self.call("listing", move |mut client| {
                let (from, end) = (from.clone(), end.clone());
                async move { client.get(from, Some(page_options(end, revision))).await }
            })?;
            listing.take(page, strip);
        }
        self.listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dir.to_owned(), listing.revision);
        Ok(listing.entries)
    }

    /// Writes `key` attached to this node's lease: it disappears when the node dies.
    pub async fn put_leased(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (full, value) = (self.full(key), value.to_vec());
        let lease = self.lease()?;
        self.call_async("writing", move |mut client| {
            let (full, value) = (full.clone(), value.clone());
            async move {
                client
                    .put(full, value, Some(PutOptions::new().with_lease(lease)))
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    /// [`put`](Self::put) for async callers.
    pub async fn put_async(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (full, value) = (self.full(key), value.to_vec());
        self.call_async("writing", move |mut client| {
            let (full, value) = (full.clone(), value.clone());
            async move { client.put(full, value, None).await.map(|_| ()) }
        })
        .await
    }

    pub async fn delete_async(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full(key);
        self.call_async("deleting", move |mut client| {
            let full = full.clone();
            async move { client.delete(full, None).await.map(|_| ()) }
        })
        .await
    }
}
