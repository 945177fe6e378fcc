//! The plain HTTP listener: ACME HTTP-01 challenge answers; for a site with a certificate a
//! 308 to HTTPS (path and query kept); for a site still onboarding (no certificate yet) the
//! request is proxied to its origin as plain HTTP, so the site keeps working while DNS moves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::Edge;
use super::http::drive;
use super::slots::Slot;
use crate::certs::names::normalize_authority;
use crate::issue::challenges::HTTP01_PREFIX;
use crate::proxy::ProxyBody;
use crate::proxy::responses::{error_page, full, permanent_redirect};

pub(super) async fn serve(edge: Arc<Edge>, tcp: TcpStream, client: SocketAddr, slot: Slot) {
    let service_edge = edge.clone();
    let service = service_fn(move |req| {
        let edge = service_edge.clone();
        let slot = slot.clone();
        async move { Ok::<_, Infallible>(respond(&edge, req, client, slot).await) }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.server.header_timeout)
        .max_buf_size(edge.server.max_header_bytes)
        .serve_connection(TokioIo::new(tcp), service);
    tracing::trace!(client.addr = %client, "plain http connection");
    drive(http, None, edge.tasks.token()).await;
}

async fn respond(
    edge: &Edge,
    req: Request<Incoming>,
    client: SocketAddr,
    slot: Slot,
) -> Response<ProxyBody> {
    let path = req.uri().path();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .and_then(normalize_authority);
    if let Some(token) = path.strip_prefix(HTTP01_PREFIX) {
        // Answered only for the name whose order is pending (RFC 8555 §8.3: the CA asks
        // `http://<name>/.well-known/acme-challenge/<token>`).
        let answer = match host.as_deref() {
            Some(host) => edge.challenges.wait_for(|c| c.http01(host, token)).await,
            None => None,
        };
        return match answer {
            Some(key_authorization) => {
                let mut response = Response::new(full(key_authorization));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => error_page(StatusCode::NOT_FOUND, "No such challenge."),
        };
    }
    let site = host.as_deref().and_then(|h| edge.table.lookup(Some(h)));
    if let Some(site) = site.filter(|s| !s.has_cert()) {
        let conn = Arc::new(
            crate::proxy::ClientConn::new(client, site, crate::proxy::conn::PLAIN_HTTP, false)
                .with_slot(Some(slot)),
        );
        return match edge.proxy.clone().handle(conn, req).await {
            Ok(response) => response.map(http_body_util::BodyExt::boxed),
            Err(never) => match never {},
        };
    }
    match host {
        Some(host) if edge.table.lookup(Some(&host)).is_some() => {
            let port = match edge.server.https_public_port {
                443 => String::new(),
                p => format!(":{p}"),
            };
            let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
            permanent_redirect(&format!("https://{host}{port}{path_and_query}"))
        }
        _ => error_page(
            StatusCode::NOT_FOUND,
            "No site is configured for this host.",
        ),
    }
}
