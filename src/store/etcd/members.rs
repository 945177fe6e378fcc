//! One client per member of the cluster and the failover between them (stay on a member
//! while it answers, move on when it does not), the client runtime every call runs on, the
//! waits that bound each call, and the keep-alive of this node's lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::Client;

use crate::store::StoreError;
use crate::store::etcd_tls::describe;

/// A client per member and the one in use.
#[derive(Clone)]
pub(super) struct Members {
    pub(super) clients: Arc<Vec<Client>>,
    pub(super) current: Arc<AtomicUsize>,
}

/// Why no member of the cluster answered an operation.
#[derive(Debug, thiserror::Error)]
pub(super) enum NoAnswer {
    /// The last member tried failed: what it said, in words (`etcd_tls::describe`).
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {0:?}")]
    Within(Duration),
}

/// The runtime the etcd client runs on: one thread, for the life of the process.
pub(super) fn client_runtime() -> Result<tokio::runtime::Handle, std::io::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("etcd-client".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

pub(super) fn lease_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX)
}

/// Keeps this node's lease alive through whichever member answers; when it is lost (etcd
/// unreachable for longer than its time to live), takes a new one as soon as etcd answers.
pub(super) async fn keep_lease(members: Members, lease: Arc<AtomicI64>, ttl: Duration) {
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
pub(super) fn wait_async<T: Send + 'static>(
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
pub(super) fn wait<T: Send + 'static>(
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

impl Members {
    /// The member in use: (its index, its client).
    pub(super) fn pick(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::SeqCst) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// Member `i` did not answer: move to the next one (unless another call already did).
    pub(super) fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Runs `op` on the member in use, then on each other one while they fail; each try
    /// waits at most `timeout`.
    pub(super) async fn run<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, NoAnswer>
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
