//! The admin API on the `admin` address (loopback by default), under `/api/v1`: sites,
//! certificates, events, an overview, plus `/metrics` (Prometheus text), `/healthz` and the
//! console at `/` (`console.rs`). Every route but `/healthz` and the console's assets needs `Authorization: Bearer <token>` (compared in constant time); the token is
//! `server.admin_token` or generated on first start into `data_dir/admin.token` (0600).
//! Bad input gets a 4xx with `{"error", "message"}` and changes nothing; bodies are limited
//! to 64 KiB; no response ever contains a private key. The listener has its own connection
//! cap and timeouts (`listener.rs`); every response carries strict security headers
//! (`headers.rs`).

mod certs;
mod console;
mod errors;
mod headers;
mod listener;
mod metrics;
mod overview;
mod page;
mod sites;
mod summary;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServerSettings;
use crate::events::Events;
use crate::fleet::nodes::ThisNode;
use crate::managed::CertManager;
use crate::onboarding::Onboarding;
use crate::tls::SiteTable;
pub use errors::{ApiError, ErrorCode};
pub use listener::{ADMIN_HEADER_TIMEOUT, ADMIN_MAX_CONNECTIONS};

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;
/// Where the generated token lives under `data_dir`.
pub const TOKEN_FILE: &str = "admin.token";

/// What the API asks of the edge when a registration changes (the edge implements it).
pub trait Publish: Send + Sync {
    /// Builds the registered site `id` (named `hosts`) from the registry and swaps it into
    /// the table now, or takes it out when it is gone.
    fn publish_registered(&self, id: &str, hosts: &[String]);
}

/// What the API reads and changes, handed in by the edge.
pub struct Handles {
    pub table: Arc<SiteTable>,
    pub certificates: Arc<CertManager>,
    pub onboarding: Arc<Onboarding>,
    pub events: Arc<Events>,
    pub node: ThisNode,
    /// The `[server]` settings: the edge's own listeners are never an origin.
    pub server: ServerSettings,
    /// Whether tenants' origins may be private addresses (read at start).
    pub allow_private_origins: bool,
    pub publisher: Arc<dyn Publish>,
}

/// What handlers share: the handles (read through `Deref`), the token and the overview.
#[derive(Clone)]
pub(crate) struct Api {
    handles: Arc<Handles>,
    token: Arc<str>,
    /// The overview's last reading of the inventory (`overview.rs`).
    overview: Arc<overview::Cache>,
}

impl std::ops::Deref for Api {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.handles
    }
}

/// The admin token: from the config, else read from (or created in) `data_dir/admin.token`.
pub fn token(server: &ServerSettings) -> Result<String, std::io::Error> {
    if let Some(token) = &server.admin_token {
        return Ok(token.clone());
    }
    let path = server.data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) | Err(_) => {
            let _lock = crate::store::atomic::lock_dir(&server.data_dir)?;
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.trim().is_empty()
            {
                return Ok(text.trim().to_owned());
            }
            let mut raw = [0u8; 32];
            aws_lc_rs::rand::fill(&mut raw)
                .map_err(|_| std::io::Error::other("random generator failed"))?;
            let token = crate::seal::to_hex(&raw);
            crate::store::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
            Ok(token)
        }
    }
}

/// For fuzzing: everything the API does with a request body before it changes anything.
pub(crate) fn check_bodies(data: &[u8]) {
    sites::check_body(data);
    certs::check_body(data);
}

/// The router, for `serve` and for tests.
fn router(api: Api) -> Router {
    let authed = Router::new()
        .route("/api/v1/sites", get(sites::list).post(sites::create))
        .route(
            "/api/v1/sites/{host}",
            get(sites::show).delete(sites::remove),
        )
        .route("/api/v1/certificates", get(certs::list).post(certs::upload))
        .route("/api/v1/certificates/{host}", get(certs::show))
        .route("/api/v1/certificates/{host}/renew", post(certs::renew))
        .route("/api/v1/events", get(sites::events))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/ca", get(ca))
        .route("/api/v1/overview", get(overview::show))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::render))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(console::page))
        .route("/console.js", get(console::script))
        .route("/console.css", get(console::style))
        .route("/favicon.svg", get(console::icon))
        .merge(authed)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::map_response(headers::add))
        .with_state(api)
}

/// Serves the admin API on `listener` until `cancel`.
pub async fn serve(
    handles: Handles,
    listener: TcpListener,
    token: String,
    cancel: CancellationToken,
) {
    let api = Api {
        handles: Arc::new(handles),
        token: token.into(),
        overview: Arc::default(),
    };
    listener::serve(listener, router(api), cancel).await;
}

async fn require_token(State(api): State<Api>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let ok = aws_lc_rs::constant_time::verify_slices_are_equal(
        presented.as_bytes(),
        api.token.as_bytes(),
    )
    .is_ok();
    if ok {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// The ACME CA's limits and their use (counted from the store's ledger of orders).
async fn ca(State(api): State<Api>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let Some(acme) = api.certificates.acme() else {
        return Ok(axum::Json(
            serde_json::json!({ "directory": null, "limits": [] }),
        ));
    };
    let (limits, renewals_waiting, held) = acme.ledger().usage().await;
    Ok(axum::Json(serde_json::json!({
        "directory": acme.directory(),
        "limits": limits,
        "requests_per_second": acme.ledger().limits().requests_per_second,
        "names_per_certificate": acme.ledger().limits().names_per_certificate,
        "renewals_waiting": renewals_waiting,
        "orders_held_since_start": held,
    })))
}

/// The fleet's nodes (this one alone on the fs store).
async fn nodes(State(api): State<Api>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let node = api.node.clone();
    let nodes = tokio::task::spawn_blocking(move || crate::fleet::nodes::list(&node))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::store(&e))?;
    let now = crate::certs::record::unix(std::time::SystemTime::now());
    let nodes: Vec<serde_json::Value> = nodes
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id,
                "address": n.address,
                "version": n.version,
                "started": n.started,
                "last_seen": n.last_seen,
                "last_seen_ago_s": now.saturating_sub(n.last_seen),
                "sites": n.sites,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "nodes": nodes })))
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}
