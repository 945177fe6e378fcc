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

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::mpsc;

use super::StoreError;
use super::etcd_tls::{describe, tls_options, with_client_cert_hint};
use super::settings::EtcdSettings;

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
    /// The lease it is attached to: it is held while this node still has that lease.
    lease: i64,
}

/// A client per member and the one in use.
#[derive(Clone)]
struct Members {
    clients: Arc<Vec<Client>>,
    current: Arc<AtomicUsize>,
}

impl Members {
    /// The member in use: (its index, its client).
    fn pick(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::SeqCst) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// Member `i` did not answer: move to the next one (unless another call already did).
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Runs `op` on the member in use, then on each other one while they fail; each try
    /// waits at most `timeout`.
    async fn run<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, NoAnswer>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = NoAnswer::Within(timeout);
        for _ in 0..self.clients.len() {
            let (i, client) = self.pick();
            match tokio::time::timeout(timeout, op(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => last = NoAnswer::Failed(describe(&e)),
                Err(_) => last = NoAnswer::Within(timeout),
            }
            self.failed(i);
        }
        Err(last)
    }
}

/// Why no member of the cluster answered an operation.
#[derive(Debug, thiserror::Error)]
enum NoAnswer {
    /// The last member tried failed: what it said, in words (`etcd_tls::describe`).
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {0:?}")]
    Within(Duration),
}

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

    /// This node's lease; an error while it has none (a key written without one would
    /// outlive the node).
    fn lease(&self) -> Result<i64, StoreError> {
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
    fn shallow(&self) -> Self {
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

/// One watch session: from `resume` (the revision the receiver is up to date with) or else
/// from a fresh snapshot, then events until an error (or the receiver is gone: Ok). `resume`
/// follows each change passed on, so the next session replays only what this one missed;
/// when etcd has compacted that history away, the next session starts with a snapshot.
async fn watch_once(
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

/// Operations per transaction of a bulk write (etcd refuses more than 128 by default).
const TXN_OPS: usize = 128;

/// Bytes per transaction of a bulk write (etcd refuses requests over 1.5 MiB by default).
const TXN_BYTES: usize = 1024 * 1024;

/// Keys per page of a listing: records are a few KiB, and a response must stay under the
/// client's 4 MiB message limit.
const PAGE: i64 = 256;

/// A listing of every key under a prefix, page by page, at the revision of its first page.
struct Listing {
    end: Vec<u8>,
    /// Where the next page starts; `None` once the last page is in.
    next: Option<Vec<u8>>,
    /// 0 until the first page answers.
    revision: i64,
    entries: Vec<(String, Vec<u8>)>,
}

impl Listing {
    fn new(prefix: &str) -> Self {
        Self {
            end: prefix_end(prefix.as_bytes()),
            next: Some(prefix.as_bytes().to_vec()),
            revision: 0,
            entries: Vec::new(),
        }
    }

    fn next_key(&self) -> Option<Vec<u8>> {
        self.next.clone()
    }

    fn take(&mut self, page: etcd_client::GetResponse, strip: usize) {
        if self.revision == 0 {
            self.revision = page.header().map_or(0, |h| h.revision());
        }
        self.entries.extend(entries(page.kvs(), strip));
        self.next = match page.kvs().last() {
            Some(last) if page.more() => {
                let mut after = last.key().to_vec();
                after.push(0);
                Some(after)
            }
            _ => None,
        };
    }
}

/// One page from a key up to `end`, at `revision` (0: the current one). Serializable: the
/// member answers from its own copy without a round of consensus per page. That copy may
/// be a moment behind the cluster, but the listing is one revision throughout and the
/// watch that follows replays every change after it, so nothing is missed.
fn page_options(end: Vec<u8>, revision: i64) -> GetOptions {
    let options = GetOptions::new()
        .with_range(end)
        .with_limit(PAGE)
        .with_serializable();
    if revision > 0 {
        options.with_revision(revision)
    } else {
        options
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
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

/// Keeps this node's lease alive through whichever member answers; when it is lost (etcd
/// unreachable for longer than its time to live), takes a new one as soon as etcd answers.
async fn keep_lease(members: Members, lease: Arc<AtomicI64>, ttl: Duration) {
    let every = ttl / 3;
    let mut kept_at = tokio::time::Instant::now();
    let mut warned = false;
    loop {
        let id = lease.load(Ordering::SeqCst);
        let (i, mut client) = members.pick();
        if id == 0 {
            match tokio::time::timeout(every, client.lease_grant(lease_seconds(ttl), None)).await {
                Ok(Ok(granted)) => {
                    lease.store(granted.id(), Ordering::SeqCst);
                    kept_at = tokio::time::Instant::now();
                    warned = false;
                    tracing::info!("etcd answers again: this node has a new lease");
                }
                _ => {
                    members.failed(i);
                    tokio::time::sleep(every).await;
                }
            }
            continue;
        }
        let kept = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
            loop {
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(response) if response.ttl() > 0 => {
                        kept_at = tokio::time::Instant::now();
                    }
                    _ => return Ok::<bool, etcd_client::Error>(false),
                }
                tokio::time::sleep(every).await;
            }
        };
        let expired = match tokio::time::timeout(ttl, kept).await {
            Ok(Ok(false)) => true,
            _ => {
                // This member does not answer: the next one may, within the lease's life.
                members.failed(i);
                tokio::time::sleep(Duration::from_millis(100)).await;
                kept_at.elapsed() >= ttl
            }
        };
        if expired {
            if !warned {
                tracing::warn!("lost contact with etcd; this node's locks lapsed with its lease");
                warned = true;
            }
            lease.store(0, Ordering::SeqCst);
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
) -> Result<T, NoAnswer> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let result = tokio::time::timeout(timeout, op).await;
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout + Duration::from_millis(500)) {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(NoAnswer::Failed(describe(&e))),
        Ok(Err(_)) | Err(_) => Err(NoAnswer::Within(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_the_next_key_that_does_not_start_with_it() {
        assert_eq!(prefix_end(b"/onehttps/certs/"), b"/onehttps/certs0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
