//! The request path: check the Host against the connection's site, pick an origin, forward
//! with rewritten headers and streamed bodies, tunnel upgrades, and turn every failure into a
//! response (the hyper service never returns `Err`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HOST, STRICT_TRANSPORT_SECURITY};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

use super::ProxyBody;
use super::access_log::{AccessRecord, LoggedBody};
use super::client::{self, OriginClient, OriginError};
use super::conn::ClientConn;
use super::connector::{MemoryOrigin, OriginConnector};
use super::guard::PublicOnly;
use super::headers::{
    drop_near_miss_framing, is_tunnel_upgrade, join_cookies, set_forwarded, strip_hop_by_hop,
};
use super::responses::error_page;
use super::upload::{Upload, UploadWatch};
use crate::certs::names::normalize_authority;
use crate::config::{OriginUrl, ProxySettings};

/// Why a request got no response from an origin. The variant says who is at fault.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    /// Client: no Host header and no authority.
    #[error("request names no host")]
    NoHost,
    /// Client: CONNECT (the edge is not a forward proxy).
    #[error("CONNECT is not served")]
    Connect,
    /// Client: the request body broke (bad chunked framing, a reset stream).
    #[error("the request body from the client broke")]
    ClientBody(#[source] OriginError),
    /// Client: a host the connection's certificate was not chosen for.
    #[error("host `{0}` is not served on this connection")]
    Misdirected(String),
    /// Origin: connection refused, unreachable or connect timeout.
    #[error("origin {origin} could not be reached")]
    OriginUnreachable {
        origin: String,
        #[source]
        source: OriginError,
    },
    /// Origin: no response head in time.
    #[error("origin {origin} sent no response within {timeout:?}")]
    OriginTimeout { origin: String, timeout: Duration },
    /// Origin: broke the exchange after connecting.
    #[error("origin {origin} failed")]
    OriginFailed {
        origin: String,
        #[source]
        source: OriginError,
    },
    /// Us: the site has no origin (the config refuses this; kept total).
    #[error("site has no origin")]
    NoOrigin,
    /// Us: a request we could not rebuild for the origin.
    #[error("cannot build the origin request")]
    Rebuild(#[source] http::Error),
}

impl ProxyError {
    fn response(&self) -> Response<ProxyBody> {
        match self {
            Self::NoHost => error_page(StatusCode::BAD_REQUEST, "The request names no host."),
            Self::Connect => {
                let mut response = error_page(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "This server does not tunnel CONNECT requests.",
                );
                response.headers_mut().insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
                response
            }
            Self::ClientBody(_) => {
                error_page(StatusCode::BAD_REQUEST, "The request body was malformed.")
            }
            Self::Misdirected(_) => error_page(
                StatusCode::MISDIRECTED_REQUEST,
                "This connection does not serve that host; open a new connection for it.",
            ),
            Self::OriginUnreachable { .. } | Self::OriginFailed { .. } | Self::NoOrigin => {
                error_page(
                    StatusCode::BAD_GATEWAY,
                    "The site's server could not be reached. Try again shortly.",
                )
            }
            Self::OriginTimeout { .. } => error_page(
                StatusCode::GATEWAY_TIMEOUT,
                "The site's server took too long to answer.",
            ),
            Self::Rebuild(_) => {
                error_page(StatusCode::BAD_REQUEST, "The request cannot be forwarded.")
            }
        }
    }

    fn log(&self, site: &str) {
        let error = crate::config::error_chain(self);
        match self {
            Self::NoHost
            | Self::Misdirected(_)
            | Self::Rebuild(_)
            | Self::Connect
            | Self::ClientBody(_) => {
                tracing::debug!(site, %error, "request refused");
            }
            Self::OriginUnreachable { .. }
            | Self::OriginTimeout { .. }
            | Self::OriginFailed { .. }
            | Self::NoOrigin => {
                crate::stats::bump(&crate::stats::STATS.origin_errors);
                tracing::warn!(site, %error, "origin error");
            }
        }
    }
}

/// Shared state of the request path.
pub struct Proxy {
    /// One client (one pool of origin connections) per connection worker: a request uses
    /// the origin connections of the thread it runs on, whose reactor they are registered
    /// with.
    clients: Vec<OriginClient>,
    /// For API-registered sites (public origins only), likewise per worker; empty when
    /// `onboarding.allow_private_origins` is on.
    tenant_clients: Vec<OriginClient>,
    response_timeout: Duration,
    access_log: bool,
    /// Upgraded tunnels with nothing moving for this long are closed.
    tunnel_idle_timeout: Duration,
    /// Peers whose forwarding headers are kept (`proxy.trusted_proxies`).
    trusted_proxies: Vec<crate::net::Cidr>,
    /// Upgraded tunnels outlive their request: tracked for shutdown.
    tunnels: TaskTracker,
}

/// A response from the origin and how long its head took.
type Forwarded = (Response<ProxyBody>, Duration);

impl Proxy {
    pub fn new(
        settings: &ProxySettings,
        allow_private_origins: bool,
        access_log: bool,
        tunnels: TaskTracker,
        workers: usize,
        memory_origin: Option<MemoryOrigin>,
    ) -> Self {
        let per_worker = 0..workers.max(1);
        let (any, tenants) = match memory_origin {
            Some(origin) => (
                OriginConnector::Memory(origin.clone()),
                OriginConnector::Memory(origin),
            ),
            None => {
                let tcp = client::connector(settings.connect_timeout);
                (
                    OriginConnector::Tcp(tcp.clone()),
                    OriginConnector::PublicOnly(PublicOnly::new(tcp)),
                )
            }
        };
        Self {
            clients: per_worker
                .clone()
                .map(|_| client::build(settings, any.clone()))
                .collect(),
            tenant_clients: if allow_private_origins {
                Vec::new()
            } else {
                per_worker
                    .map(|_| client::build(settings, tenants.clone()))
                    .collect()
            },
            response_timeout: settings.response_timeout,
            access_log,
            trusted_proxies: settings.trusted_proxies.clone(),
            tunnel_idle_timeout: settings.tunnel_idle_timeout,
            tunnels,
        }
    }

    /// The hyper service body: never fails; errors become responses.
    pub async fn handle(
        self: Arc<Self>,
        conn: Arc<ClientConn>,
        req: Request<Incoming>,
    ) -> Result<Response<LoggedBody>, Infallible> {
        let started = Instant::now();
        let in_flight = conn.begin();
        let authority = request_authority(&req);
        let host = authority
            .as_ref()
            .and_then(|a| a.to_str().ok())
            .and_then(normalize_authority);
        let (method, version) = (req.method().clone(), req.version());
        let path = self.access_log.then(|| req.uri().path().to_owned());
        let result = match (&host, authority) {
            _ if method == Method::CONNECT => Err(ProxyError::Connect),
            (Some(h), Some(authority)) if conn.site.covers(h) => {
                self.forward(&conn, req, authority).await
            }
            (Some(h), _) => Err(ProxyError::Misdirected(h.clone())),
            _ => Err(ProxyError::NoHost),
        };
        let (mut response, origin_time) = match result {
            Ok((response, origin_time)) => (response, Some(origin_time)),
            Err(e) => {
                e.log(conn.site.name());
                (e.response(), None)
            }
        };
        // HSTS only over TLS (RFC 6797 §7.2).
        if let Some(hsts) = conn.site.hsts().filter(|_| conn.is_tls()) {
            response
                .headers_mut()
                .entry(STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
        crate::stats::request(response.status().as_u16());
        let record = self.access_log.then(|| AccessRecord {
            client: conn.client,
            host: host.unwrap_or_default(),
            method,
            path: path.unwrap_or_default(),
            version,
            status: response.status(),
            started,
            origin_time,
            tls_version: conn.tls_version,
            resumed: conn.resumed,
        });
        Ok(response.map(|body| LoggedBody::new(body, record, in_flight)))
    }

    async fn forward(
        &self,
        conn: &Arc<ClientConn>,
        mut req: Request<Incoming>,
        authority: HeaderValue,
    ) -> Result<Forwarded, ProxyError> {
        // h2c is never tunnelled: over TLS it makes no sense, and a raw tunnel to the origin
        // would skip the Host check and the forwarding headers. The request goes on as a
        // plain one (RFC 9113 §3.1: servers ignore it).
        let upgrade = req.version() == Version::HTTP_11 && is_tunnel_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers, upgrade);
        drop_near_miss_framing(&mut headers);
        if parts.version == Version::HTTP_2 {
            join_cookies(&mut headers);
        }
        let proto = if conn.is_tls() { "https" } else { "http" };
        let peer = conn.client.ip();
        let trusted = self.trusted_proxies.iter().any(|net| net.contains(peer));
        set_forwarded(&mut headers, peer, &authority, proto, trusted);
        headers.insert(HOST, authority);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));

        let pool = conn.site.origins();
        // Only a request that can be sent again unchanged is retried: idempotent, no body.
        let retry_headers =
            (pool.len() > 1 && !upgrade && is_idempotent(&parts.method) && body.is_end_stream())
                .then(|| headers.clone());
        let Some((first, origin)) = pool.pick(None) else {
            return Err(ProxyError::NoOrigin);
        };
        let tenant = conn.site.config().registered;
        let (upload, watch) = Upload::new(body, conn.clone());
        let sent = self
            .send(
                conn,
                tenant,
                origin,
                (&parts.method, &path, headers),
                upload.boxed(),
                watch,
            )
            .await;
        let (mut response, origin_time) = match (sent, retry_headers) {
            (Err(e @ ProxyError::OriginUnreachable { .. }), retry) => {
                pool.mark_down(first);
                let next = pool.pick(Some(first)).filter(|(i, _)| *i != first);
                let (Some(headers), Some((second, origin))) = (retry, next) else {
                    return Err(e);
                };
                e.log(conn.site.name());
                let empty = Empty::new().map_err(|never| match never {}).boxed();
                let retried = self
                    .send(
                        conn,
                        tenant,
                        origin,
                        (&parts.method, &path, headers),
                        empty,
                        UploadWatch::nothing_to_send(),
                    )
                    .await;
                if matches!(retried, Err(ProxyError::OriginUnreachable { .. })) {
                    pool.mark_down(second);
                }
                retried?
            }
            (sent, _) => sent?,
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let origin_upgrade = hyper::upgrade::on(&mut response);
            let in_flight = conn.begin();
            let idle = self.tunnel_idle_timeout;
            self.tunnels.spawn(async move {
                let _in_flight = in_flight;
                match tokio::try_join!(client_upgrade, origin_upgrade) {
                    Ok((client, origin)) => {
                        super::tunnel::run(TokioIo::new(client), TokioIo::new(origin), idle).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                }
            });
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            return Ok((Response::from_parts(parts, body), origin_time));
        }
        strip_hop_by_hop(response.headers_mut(), false);
        Ok((response, origin_time))
    }

    /// One attempt at one origin. The response timeout starts once the request body has
    /// been sent: a slow upload is bounded by the transfer timeout (progress), not by it.
    /// `tenant`: the origin was given through the API, so only public addresses may be
    /// connected to.
    async fn send(
        &self,
        conn: &Arc<ClientConn>,
        tenant: bool,
        origin: &OriginUrl,
        (method, path, headers): (&Method, &PathAndQuery, HeaderMap),
        body: ProxyBody,
        mut watch: UploadWatch,
    ) -> Result<Forwarded, ProxyError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(origin.authority.clone())
            .path_and_query(path.clone())
            .build()
            .map_err(ProxyError::Rebuild)?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .version(Version::HTTP_11)
            .body(body)
            .map_err(ProxyError::Rebuild)?;
        *req.headers_mut() = headers;
        let started = Instant::now();
        let origin_name = || origin.to_string();
        let worker = crate::worker::current().unwrap_or(0);
        let response = match self
            .tenant_clients
            .get(worker % self.tenant_clients.len().max(1))
        {
            Some(client) if tenant => client.request(req),
            _ => self.clients[worker % self.clients.len()].request(req),
        };
        tokio::pin!(response);
        // Until the body is sent, only the transfer timeout bounds the exchange.
        let early = match watch.sending() {
            Some(sent) => tokio::select! {
                result = &mut response => Some(result),
                _ = sent => None,
            },
            None => None,
        };
        let result = match early {
            Some(result) => Ok(result),
            None => {
                let _waiting = conn.await_origin();
                tokio::time::timeout(self.response_timeout, response).await
            }
        };
        match result {
            Ok(Ok(response)) => Ok((response.map(BodyExt::boxed), started.elapsed())),
            Ok(Err(source)) if watch.client_failed() => Err(ProxyError::ClientBody(source)),
            Ok(Err(source)) if source.is_connect() => Err(ProxyError::OriginUnreachable {
                origin: origin_name(),
                source,
            }),
            Ok(Err(source)) => Err(ProxyError::OriginFailed {
                origin: origin_name(),
                source,
            }),
            Err(_) => Err(ProxyError::OriginTimeout {
                origin: origin_name(),
                timeout: self.response_timeout,
            }),
        }
    }
}

/// The host the client asked for: the URI authority (HTTP/2, absolute-form) or `Host`.
fn request_authority(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(HOST).cloned(),
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
