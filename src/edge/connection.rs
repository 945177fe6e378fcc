//! One client connection on the HTTPS listener: the TLS handshake under its timeout, then
//! HTTP/1.1 or HTTP/2 served until the client leaves, the connection idles out, or shutdown
//! asks it to finish what is in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::{HandshakeKind, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::accept::{Slot, in_time_unless_pressed};
use super::{Edge, log_limit};
use crate::net_io::WaitReadable;
use crate::proxy::ClientConn;
use crate::tls;

/// Bytes a client may send after a request without starting another one (HTTP/2 SETTINGS
/// acknowledgements, WINDOW_UPDATE and PING frames) before it counts as a started head.
const CONTROL_FRAME_ALLOWANCE: u64 = 256;

/// Most TLS records rustls queues for a client that is not reading.
const TLS_SEND_BUFFER_BYTES: usize = 32 * 1024;

/// Serves one client connection: `io` is its TCP connection (or, for benchmarks, any byte
/// stream); `slot` is what it holds of the listener's limits.
pub(super) async fn serve_tls<IO>(edge: Arc<Edge>, io: IO, client: SocketAddr, slot: Option<Slot>)
where
    IO: AsyncRead + AsyncWrite + WaitReadable + Unpin + Send + Sync + 'static,
{
    let span = tracing::debug_span!("conn", client.addr = %client, tls.sni = tracing::field::Empty);
    async move {
        // Boxed, as is the HTTP connection below: a connection's task then holds only what
        // its current stage needs (an idle one after its handshake: its TLS state).
        let handshake = Box::pin(tls::accept(
            io,
            &edge.table,
            &edge.challenges,
            edge.tls.clone(),
        ));
        let (mut stream, site) =
            match in_time_unless_pressed(handshake, edge.server.handshake_timeout, || {
                edge.https_pressed()
            })
            .await
            {
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) => {
                    tracing::debug!(error = %crate::config::error_chain(&e), "handshake refused");
                    return;
                }
                None => {
                    tracing::debug!("handshake timed out");
                    return;
                }
            };
        // Encrypted bytes waiting for a slow reader's socket: bounded.
        stream
            .get_mut()
            .1
            .set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
        let tls_conn = stream.get_ref().1;
        crate::stats::bump(&crate::stats::STATS.handshakes);
        if tls_conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            crate::stats::bump(&crate::stats::STATS.resumed);
        }
        tracing::Span::current().record("tls.sni", tls_conn.server_name().unwrap_or("-"));
        let conn = Arc::new(
            ClientConn::new(
                client,
                site,
                version_name(tls_conn.protocol_version()),
                tls_conn.handshake_kind() == Some(HandshakeKind::Resumed),
            )
            .with_slot(slot.map(|s| s as Arc<dyn std::any::Any + Send + Sync>)),
        );
        // A client that is silent after its handshake holds no HTTP state (hyper allocates its
        // read and write buffers, 16 KiB, as it starts) until it sends something; its first
        // request must still come within header_timeout of the handshake, and under pressure
        // it gives way. Only when rustls holds no decrypted bytes: a request sent with the
        // handshake's last flight is already inside it, not in the socket.
        if stream.get_ref().1.wants_read() {
            let first_bytes = stream.get_ref().0.readable();
            let sent = tokio::select! {
                () = edge.tasks.token().cancelled() => None,
                sent = in_time_unless_pressed(first_bytes, edge.server.header_timeout, || {
                    edge.https_pressed()
                }) => sent,
            };
            if !matches!(sent, Some(Ok(()))) {
                tracing::debug!("no request after the handshake");
                return;
            }
        }
        let proxy = edge.proxy.clone();
        let service_conn = conn.clone();
        let service = service_fn(move |req| proxy.clone().handle(service_conn.clone(), req));
        // Bytes received, for the request-head timer (an HTTP/2 HEADERS block never finished).
        let counted = conn.clone();
        let stream = crate::net_io::ReadHook::new(stream, move |n| counted.received_bytes(n));
        let http = Box::pin(
            edge.http
                .serve_connection_with_upgrades(TokioIo::new(stream), service),
        );
        let timers = Timers::of(&edge.server, &edge);
        drive(http, Some((&conn, timers)), edge.tasks.token()).await;
    }
    .instrument(span)
    .await;
}

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
                        && error.contains("connection error detected")
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

fn version_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    }
}
