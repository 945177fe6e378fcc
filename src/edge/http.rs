//! HTTP on an accepted connection: hyper's connection polled to completion under the
//! listener's limits (idle, request head, transfer rate), and asked to finish what is in
//! flight at shutdown. The same driver serves the HTTPS and the plain HTTP listener.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Edge, log_limit};
use crate::proxy::ClientConn;

/// Bytes a client may send after a request without starting another one (HTTP/2 SETTINGS
/// acknowledgements, WINDOW_UPDATE and PING frames) before it counts as a started head.
const CONTROL_FRAME_ALLOWANCE: u64 = 256;

/// Something hyper can be asked to finish gracefully.
pub(super) trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C: Graceful> Graceful for Pin<Box<C>> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.get_mut().as_mut().graceful_shutdown();
    }
}

impl<I, S, E> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        Self::graceful_shutdown(self);
    }
}

impl<I, S> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        Self::graceful_shutdown(self);
    }
}

/// The limits `drive` enforces on a client connection.
#[derive(Clone, Copy)]
pub(super) struct Timers<'a> {
    idle: Duration,
    header: Duration,
    transfer: Duration,
    min_transfer_bytes: u64,
    /// Whose listener's pressure makes idle connections give way.
    edge: &'a Edge,
}

impl<'a> Timers<'a> {
    pub(super) fn of(server: &crate::config::ServerSettings, edge: &'a Edge) -> Self {
        Self {
            edge,
            idle: server.idle_timeout,
            header: server.header_timeout,
            transfer: server.transfer_timeout,
            min_transfer_bytes: server.min_transfer_bytes,
        }
    }

    /// How often the timers are looked at: a fraction of the shortest, so a limit is
    /// enforced at most a quarter late.
    fn tick(&self) -> Duration {
        (self.transfer.min(self.header).min(self.idle) / 4).max(Duration::from_millis(50))
    }
}

/// Polls `http` to completion; asks it to finish gracefully on shutdown. With `watch`:
/// - nothing in flight for `idle` → finish gracefully; but before the first request, or
///   when the client has sent more than control frames since the last one (a request head,
///   e.g. an HTTP/2 HEADERS block, that never completes), it gets `header`, and is dropped;
/// - requests in flight, none waiting for its origin, and fewer than `min_transfer_bytes`
///   of body moved in a `transfer` period (a reader that stopped reading, a zero window, an
///   upload that stopped) → dropped.
pub(super) async fn drive<C, T, E>(
    http: C,
    watch: Option<(&ClientConn, Timers<'_>)>,
    cancel: &CancellationToken,
) where
    C: Graceful<Output = Result<T, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(http);
    let mut closing = false;
    // Body bytes moved at the start of the current transfer period.
    let mut period = (Instant::now(), watch.map_or(0, |(conn, _)| conn.moved()));
    let tick = watch.map_or(Duration::MAX, |(_, t)| t.tick());
    loop {
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                    let error = crate::config::error_chain(&*e);
                    // h2 detected a protocol violation (rapid reset, floods): say so, once
                    // per client and interval.
                    if let Some((conn, _)) = watch
                        && h2_abuse(&*e)
                    {
                        log_limit::warn(conn.client.ip(), "HTTP/2 protocol abuse (reset or frame flood): connections closed");
                    }
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = cancel.cancelled(), if !closing => {
                http.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep(tick), if watch.is_some() => {
                let Some((conn, timers)) = watch else { continue };
                let now = Instant::now();
                match conn.idle_for() {
                    Some(idle) => {
                        period = (now, conn.moved());
                        // Waiting for a (next) request head: the first one, or one the
                        // client has started to send, must come within header_timeout.
                        let head_started = conn
                            .received_since_idle()
                            .is_none_or(|n| n > CONTROL_FRAME_ALLOWANCE);
                        if head_started && idle >= timers.header {
                            tracing::debug!("request head not completed within header_timeout");
                            return;
                        }
                        let pressed = timers.edge.https_pressed();
                        if (idle >= timers.idle || pressed) && !closing {
                            tracing::debug!(under_pressure = pressed, "idle: closing");
                            http.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    None if conn.awaiting_origin() => {
                        period = (now, conn.moved());
                    }
                    None => {
                        if now.duration_since(period.0) >= timers.transfer {
                            let moved = conn.moved().saturating_sub(period.1);
                            if moved < timers.min_transfer_bytes {
                                crate::stats::bump(&crate::stats::STATS.stalled_connections);
                                log_limit::warn(conn.client.ip(), "client moved too little data within server.transfer_timeout: connection closed");
                                return;
                            }
                            period = (now, conn.moved());
                        }
                    }
                }
            }
        }
    }
}

/// Whether `e` (or a cause of it) is h2 closing the connection on a protocol violation it
/// detected itself (a GOAWAY h2 sent: rapid resets, frame floods), not one the client sent.
fn h2_abuse(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_library();
        }
        next = err.source();
    }
    false
}
