//! Accept loops: a connection slot from the global limit, then accept, then admission per
//! client address (`admission.rs`); errors are logged and backed off, never fatal. Each
//! connection runs in its own tracked task, on one of the connection workers (`workers.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::admission::{Admission, Refused};
use super::{Edge, connection, log_limit, plain_http};

/// How full a listener is. Under pressure — fewer than a tenth of its slots, or of its
/// waiting room, free — connections that are not making progress (still silent or in their
/// handshake after `PRESSURE_GRACE`, or idle between requests) give their place to the
/// clients waiting in the backlog. Read from the semaphores themselves, so it is never
/// stale.
pub(super) struct Gauge {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    low: usize,
}

impl Gauge {
    pub(super) fn pressed(&self) -> bool {
        self.slots.available_permits() < self.low || self.waiting.available_permits() < self.low
    }
}

/// Under pressure, how long a handshake may take before it gives way.
pub(super) const PRESSURE_GRACE: Duration = Duration::from_millis(500);

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

/// Accepts connections in two stages, so slots go to clients that make progress: up to
/// `server.max_connections` accepted sockets may wait for their first bytes without a slot
/// (more wait in the kernel's backlog); a socket takes one of the `max_connections` slots
/// only once its client has sent something (a ClientHello, a request line). A socket that
/// sends nothing within `handshake_timeout` (`PRESSURE_GRACE` while the listener is short
/// of slots) is closed without ever holding a slot.
pub(super) async fn accept_loop(edge: Arc<Edge>, listener: TcpListener, kind: Kind) {
    let max = edge.server.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let waiting = Arc::new(Semaphore::new(max));
    let gauge = Arc::new(Gauge {
        slots: slots.clone(),
        waiting: waiting.clone(),
        low: max / 10,
    });
    if let Kind::Https = kind {
        // The HTTPS connections' timers read it (`Edge::https_pressed`).
        let _ = edge.https_gauge.set(gauge.clone());
    }
    let handshakes_per_ip = match kind {
        Kind::Https => edge.server.handshakes_per_ip,
        Kind::Http => 0,
    };
    let admission = Admission::new(edge.server.max_connections_per_ip, handshakes_per_ip);
    let mut backoff = ACCEPT_BACKOFF_START;
    loop {
        let waiting_permit = tokio::select! {
            () = edge.cancel.cancelled() => return,
            permit = waiting.clone().acquire_owned() => match permit {
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
        let admitted = match admission.admit(client.ip(), Instant::now(), gauge.pressed()) {
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
        // The socket leaves this runtime's reactor for its worker's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let edge2 = edge.clone();
        let slots = slots.clone();
        let gauge = gauge.clone();
        let connection = edge.tracker.track_future(async move {
            let Ok(tcp) = TcpStream::from_std(tcp) else {
                return;
            };
            // Stage one: no slot until the client sends something.
            let timeout = edge2.server.handshake_timeout;
            let first_bytes = async {
                in_time_unless_pressed(tcp.readable(), timeout, || gauge.pressed())
                    .await
                    .is_some_and(|ready| ready.is_ok())
            };
            let sent = tokio::select! {
                () = edge2.cancel.cancelled() => false,
                sent = first_bytes => sent,
            };
            if !sent {
                return;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            drop(waiting_permit);
            // The slot lives as long as the connection, or a tunnel upgraded from it.
            let slot: Slot = Arc::new((permit, admitted));
            match kind {
                Kind::Https => connection::serve_tls(edge2, tcp, client, Some(slot)).await,
                Kind::Http => plain_http::serve(edge2, tcp, client, slot).await,
            }
        });
        edge.workers.spawn(connection);
    }
}

/// `work` within `timeout`, or, while `pressed()`, within `PRESSURE_GRACE`: a client that
/// has not got that far by then gives way. `None` when it did not finish in time.
pub(super) async fn in_time_unless_pressed<F: Future>(
    work: F,
    timeout: Duration,
    pressed: impl Fn() -> bool,
) -> Option<F::Output> {
    let started = Instant::now();
    tokio::pin!(work);
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        tokio::select! {
            done = work.as_mut() => return Some(done),
            () = tokio::time::sleep(left.min(PRESSURE_GRACE / 2)) => {
                if pressed() && started.elapsed() >= PRESSURE_GRACE {
                    return None;
                }
            }
        }
    }
}
