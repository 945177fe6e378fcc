//! Accept loops: a connection slot from the global limit, then accept, then admission per
//! client address (`admission.rs`); errors are logged and backed off, never fatal. Each
//! connection runs in its own tracked task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::admission::{Admission, Refused};
use super::{Edge, connection, log_limit, plain_http};

/// What a connection holds while it lives: its listener slot and its place in the
/// per-address count.
pub(super) type Slot = Arc<(
    tokio::sync::OwnedSemaphorePermit,
    super::admission::Admitted,
)>;

/// Backoff after an accept error (EMFILE and friends), doubling up to the maximum.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Which listener a loop serves.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Https,
    Http,
}

/// Accepts connections while fewer than `server.max_connections` of this listener are open.
/// A slot is taken before `accept`, so excess clients wait in the kernel's backlog.
pub(super) async fn accept_loop(edge: Arc<Edge>, listener: TcpListener, kind: Kind) {
    let slots = Arc::new(Semaphore::new(edge.server.max_connections));
    let handshakes_per_ip = match kind {
        Kind::Https => edge.server.handshakes_per_ip,
        Kind::Http => 0,
    };
    let admission = Admission::new(edge.server.max_connections_per_ip, handshakes_per_ip);
    let mut backoff = ACCEPT_BACKOFF_START;
    loop {
        let permit = tokio::select! {
            () = edge.cancel.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, client) = tokio::select! {
            () = edge.cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, ?kind, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        backoff = ACCEPT_BACKOFF_START;
        let admitted = match admission.admit(client.ip(), Instant::now()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                crate::stats::bump(&crate::stats::STATS.refused_connections);
                log_limit::warn(
                    client.ip(),
                    match refused {
                        Refused::TooManyOpen => {
                            "client over server.max_connections_per_ip: connections closed"
                        }
                        Refused::TooFast => {
                            "client over server.handshakes_per_ip: connections closed"
                        }
                    },
                );
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let edge2 = edge.clone();
        // The slot lives as long as the connection, or a tunnel upgraded from it.
        let slot: Slot = Arc::new((permit, admitted));
        edge.tracker.spawn(async move {
            match kind {
                Kind::Https => connection::serve_tls(edge2, tcp, client, slot).await,
                Kind::Http => plain_http::serve(edge2, tcp, client, slot).await,
            }
        });
    }
}
