//! One client connection on the HTTPS listener, stage by stage: the TLS handshake under its
//! timeout (`tls::accept`: ACME's `acme-tls/1` first, then the certificate for the SNI),
//! then nothing held until the first request bytes, then HTTP/1.1 or HTTP/2 (`http.rs`)
//! with every request routed and forwarded by the proxy (`proxy::Proxy::handle`: Host/SNI
//! check, route, origin), until the client leaves, idles out or shutdown finishes it.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::{HandshakeKind, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::Edge;
use super::http::{Timers, drive};
use super::slots::{Slot, in_time_unless_pressed};
use crate::net_io::WaitReadable;
use crate::proxy::ClientConn;
use crate::tls;

/// Most TLS records rustls queues for a client that is not reading.
const TLS_SEND_BUFFER_BYTES: usize = 32 * 1024;

/// Serves one client connection: `io` is its TCP connection (or, for benchmarks, any byte
/// stream); `slot` is what it holds of the listener's limits.
pub(super) async fn serve<IO>(edge: Arc<Edge>, io: IO, client: SocketAddr, slot: Option<Slot>)
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

fn version_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    }
}
