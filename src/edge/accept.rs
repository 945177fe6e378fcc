//! Accept loops: a connection slot from the global limit, then accept, then admission per
//! client address (`admission.rs`); errors are logged and backed off, never fatal. Each
//! listener has one accept loop per connection worker (`workers.rs`), and each connection
//! runs in its own tracked task on the worker that accepted it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::admission::{Admission, Refused};
use super::slots::{Gauge, Slot, in_time_unless_pressed};
use super::{Edge, https, log_limit, plain_http};

/// Backoff after an accept error (EMFILE and friends), doubling up to the maximum.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Which listener a loop serves.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Https,
    Http,
}

/// What the accept loops of one listener share: its slots, its waiting room and its
/// per-address admission.
struct Shared {
    kind: Kind,
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    gauge: Arc<Gauge>,
    admission: Arc<Admission>,
}

/// Starts accepting on `listener`: one accept loop on each connection worker, all on the
/// same socket, so a connection is accepted by the thread that will serve it — its socket is
/// registered with that worker's reactor from the start, with no hand-off between threads.
pub(super) fn start(edge: &Arc<Edge>, listener: TcpListener, kind: Kind) -> std::io::Result<()> {
    let max = edge.server.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let waiting = Arc::new(Semaphore::new(max));
    let gauge = Arc::new(Gauge::new(slots.clone(), waiting.clone(), max / 10));
    if let Kind::Https = kind {
        // The HTTPS connections' timers read it (`Edge::https_pressed`).
        let _ = edge.https_gauge.set(gauge.clone());
    }
    let handshakes_per_ip = match kind {
        Kind::Https => edge.server.handshakes_per_ip,
        Kind::Http => 0,
    };
    let shared = Arc::new(Shared {
        kind,
        slots,
        waiting,
        gauge,
        admission: Admission::new(edge.server.max_connections_per_ip, handshakes_per_ip),
    });
    let listener = listener.into_std()?;
    for worker in 0..edge.workers.len() {
        let listener = listener.try_clone()?;
        let accepting = accept_loop(edge.clone(), listener, shared.clone());
        edge.workers
            .spawn_on(worker, edge.tasks.tracker().track_future(accepting));
    }
    Ok(())
}

/// Accepts connections in two stages, so slots go to clients that make progress: up to
/// `server.max_connections` accepted sockets may wait for their first bytes without a slot
/// (more wait in the kernel's backlog); a socket takes one of the `max_connections` slots
/// only once its client has sent something (a ClientHello, a request line). A socket that
/// sends nothing within `handshake_timeout` (`PRESSURE_GRACE` while the listener is short
/// of slots) is closed without ever holding a slot. Runs on a connection worker; the
/// connections it accepts are served there.
async fn accept_loop(edge: Arc<Edge>, listener: std::net::TcpListener, shared: Arc<Shared>) {
    let kind = shared.kind;
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, ?kind, "cannot accept on a connection worker");
            return;
        }
    };
    let mut backoff = ACCEPT_BACKOFF_START;
    loop {
        let waiting_permit = tokio::select! {
            () = edge.tasks.token().cancelled() => return,
            permit = shared.waiting.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, client) = tokio::select! {
            () = edge.tasks.token().cancelled() => return,
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
        let admitted =
            match shared
                .admission
                .admit(client.ip(), Instant::now(), shared.gauge.pressed())
            {
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
        let shared = shared.clone();
        tokio::spawn(edge.tasks.tracker().track_future(async move {
            // Stage one: no slot until the client sends something.
            let timeout = edge2.server.handshake_timeout;
            let first_bytes = async {
                in_time_unless_pressed(tcp.readable(), timeout, || shared.gauge.pressed())
                    .await
                    .is_some_and(|ready| ready.is_ok())
            };
            let sent = tokio::select! {
                () = edge2.tasks.token().cancelled() => false,
                sent = first_bytes => sent,
            };
            if !sent {
                return;
            }
            let Ok(permit) = shared.slots.clone().acquire_owned().await else {
                return;
            };
            drop(waiting_permit);
            // The slot lives as long as the connection, or a tunnel upgraded from it.
            let slot: Slot = Arc::new((permit, admitted));
            match kind {
                Kind::Https => https::serve(edge2, tcp, client, Some(slot)).await,
                Kind::Http => plain_http::serve(edge2, tcp, client, slot).await,
            }
        }));
    }
}
