//! One client connection on the HTTPS listener: the TLS handshake under its timeout, then
//! HTTP/1.1 or HTTP/2 served until the client leaves, the connection idles out, or shutdown
//! asks it to finish what is in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::{HandshakeKind, ProtocolVersion};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Edge;
use crate::proxy::ClientConn;
use crate::tls;

pub(super) async fn serve_tls(edge: Arc<Edge>, tcp: TcpStream, client: SocketAddr) {
    let span = tracing::debug_span!("conn", client.addr = %client, tls.sni = tracing::field::Empty);
    async move {
        let handshake = tls::accept(tcp, &edge.table, &edge.challenges, edge.tls.clone());
        let (stream, site) =
            match tokio::time::timeout(edge.server.handshake_timeout, handshake).await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => {
                    tracing::debug!(error = %crate::config::error_chain(&e), "handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!("handshake timed out");
                    return;
                }
            };
        let tls_conn = stream.get_ref().1;
        crate::stats::bump(&crate::stats::STATS.handshakes);
        if tls_conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            crate::stats::bump(&crate::stats::STATS.resumed);
        }
        tracing::Span::current().record("tls.sni", tls_conn.server_name().unwrap_or("-"));
        let conn = Arc::new(ClientConn::new(
            client,
            site,
            version_name(tls_conn.protocol_version()),
            tls_conn.handshake_kind() == Some(HandshakeKind::Resumed),
        ));
        let proxy = edge.proxy.clone();
        let service_conn = conn.clone();
        let service = service_fn(move |req| proxy.clone().handle(service_conn.clone(), req));
        let http = edge
            .http
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        drive(http, Some((&conn, edge.server.idle_timeout)), &edge.cancel).await;
    }
    .instrument(span)
    .await;
}

/// Something hyper can be asked to finish gracefully.
pub(super) trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
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

/// Polls `http` to completion; asks it to finish gracefully on shutdown or, when `idle` is
/// given, once nothing has been in flight on the connection for its timeout.
pub(super) async fn drive<C, T, E>(
    http: C,
    idle: Option<(&ClientConn, Duration)>,
    cancel: &CancellationToken,
) where
    C: Graceful<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    tokio::pin!(http);
    let mut closing = false;
    loop {
        let wait = match idle {
            Some((conn, timeout)) => conn
                .idle_for()
                .map_or(timeout, |i| timeout.saturating_sub(i)),
            None => Duration::MAX,
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = cancel.cancelled(), if !closing => {
                http.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep(wait), if !closing && idle.is_some() => {
                if idle.is_some_and(|(conn, timeout)| conn.idle_for().is_some_and(|i| i >= timeout)) {
                    tracing::debug!("idle timeout");
                    http.as_mut().graceful_shutdown();
                    closing = true;
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
