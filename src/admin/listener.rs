//! The admin listener's own small limits, apart from the public listeners': at most
//! `ADMIN_MAX_CONNECTIONS` open (more wait in the backlog), a request head within
//! `ADMIN_HEADER_TIMEOUT`, an idle keep-alive connection closed after it too, and no
//! connection older than `ADMIN_MAX_CONNECTION_AGE`. Idle connections to the admin port
//! cannot use up the process's descriptors and take the HTTPS port down with them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Open admin connections at most.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// A request head must arrive within this; also closes idle keep-alive connections.
pub const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No admin connection lives longer (long polls included).
pub(super) const ADMIN_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// Largest admin request head.
const ADMIN_MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` until `cancel`, within the limits above.
pub(super) async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, _) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _permit = permit;
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .max_buf_size(ADMIN_MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(http);
            tokio::select! {
                _ = http.as_mut() => {}
                () = cancel.cancelled() => {
                    http.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(ADMIN_HEADER_TIMEOUT, http).await;
                }
                () = tokio::time::sleep(ADMIN_MAX_CONNECTION_AGE) => {
                    tracing::debug!("admin connection reached its maximum age");
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
