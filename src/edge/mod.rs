//! The running edge: listeners, accept loops, connection serving, reload and shutdown.
//! `Edge::start` is what the binary and the tests call; the `run` function adds signals.

mod accept;
mod admission;
mod build;
mod descriptors;
mod http;
mod https;
mod log_limit;
mod plain_http;
mod reload;
mod slots;
mod start;
mod welcome;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::config::{Config, ServerSettings};
use crate::events::Events;
use crate::issue::Challenges;
use crate::managed::CertManager;
use crate::onboarding::Onboarding;
use crate::proxy::Proxy;
use crate::tls::{self, SiteTable};
pub use reload::ReloadSummary;

/// Why the edge could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the certificate store")]
    Certificates(#[from] crate::managed::ManagerError),
    #[error("cannot start the connection worker threads")]
    Workers(#[source] std::io::Error),
    #[error("cannot build the TLS configuration")]
    Tls(#[source] rustls::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot install signal handlers")]
    Signal(#[source] std::io::Error),
    #[error("reload task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(
        "[[site]] names overlap sites registered through the admin API: {0}; remove them from the config or remove the registered site first (onehttps site remove)"
    )]
    Registered(String),
    #[error(
        "settings read only at start changed in {}: restart onehttps to apply them, or undo them to reload the sites; nothing was changed",
        .0.join(" ")
    )]
    RestartNeeded(Vec<&'static str>),
}

/// Bound sockets, so tests (and socket activation) can hand them in.
pub struct Listeners {
    pub https: TcpListener,
    pub http: TcpListener,
    pub admin: TcpListener,
    pub welcome: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address of `server`.
    pub async fn bind(server: &ServerSettings) -> Result<Self, EdgeError> {
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| EdgeError::Bind { what, addr, source })
        };
        let welcome = match server.welcome_page {
            Some(addr) => Some(bind("welcome page", addr).await?),
            None => None,
        };
        Ok(Self {
            https: bind("https", server.https).await?,
            http: bind("http", server.http).await?,
            admin: bind("admin", server.admin).await?,
            welcome,
        })
    }
}

/// Everything connections and background tasks share.
pub struct Edge {
    pub table: Arc<SiteTable>,
    pub challenges: Arc<Challenges>,
    pub certificates: Arc<CertManager>,
    pub onboarding: Arc<Onboarding>,
    pub events: Arc<Events>,
    /// Serialises `apply` (a SIGHUP reload and an API change may come at once).
    applying: Mutex<()>,
    tls: Arc<ServerConfig>,
    proxy: Arc<Proxy>,
    http: auto::Builder<TokioExecutor>,
    server: ServerSettings,
    /// The config in force, for the next reload's diff.
    config: Mutex<Config>,
    tasks: crate::tasks::Tasks,
    /// The threads client connections are served on.
    workers: workers::Workers,
    /// How full the HTTPS listener is; set when its accept loop starts.
    https_gauge: std::sync::OnceLock<Arc<slots::Gauge>>,
    started: std::time::SystemTime,
    /// The fleet's session ticket keys (`None` on the fs store).
    pub shared_tickets: Option<Arc<tls::tickets::SharedTicketer>>,
}

impl Edge {
    /// Opens the store, builds every site (stored certificates are served before any CA is
    /// contacted), the table and the TLS config.
    pub fn new(config: Config) -> Result<Arc<Self>, EdgeError> {
        Self::build(config, None)
    }

    /// An edge whose every origin is `origin`, in memory: for the request-path benchmark
    /// (`benches/request_path.rs`), which serves connections with
    /// [`serve_stream`](Self::serve_stream) and no socket anywhere.
    #[doc(hidden)]
    pub fn with_memory_origin(
        config: Config,
        origin: crate::proxy::connector::MemoryOrigin,
    ) -> Result<Arc<Self>, EdgeError> {
        Self::build(config, Some(origin))
    }

    /// Serves one client connection over `io` exactly as one accepted on the HTTPS listener
    /// (TLS handshake, HTTP/1.1 or HTTP/2, timers), without the listener's limits.
    #[doc(hidden)]
    pub async fn serve_stream<IO>(self: Arc<Self>, io: IO, client: SocketAddr)
    where
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + crate::net_io::WaitReadable
            + Unpin
            + Send
            + Sync
            + 'static,
    {
        https::serve(self, io, client, None).await;
    }

    /// Re-reads the config file in force and applies it; on any error nothing changes.
    pub async fn reload_from_file(self: &Arc<Self>) -> Result<ReloadSummary, EdgeError> {
        let Some(path) = self.lock_config().path.clone() else {
            return Ok(ReloadSummary::default());
        };
        let edge = self.clone();
        tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)?;
            edge.check_registered(&config)?;
            let sections = reload::restart_only_changes(&edge.lock_config(), &config);
            if !sections.is_empty() {
                return Err(EdgeError::RestartNeeded(sections));
            }
            Ok(edge.apply(config))
        })
        .await
        .map_err(EdgeError::Task)?
    }

    /// Stops accepting, lets in-flight requests finish for up to the grace period.
    pub async fn shutdown(&self) {
        self.tasks.token().cancel();
        self.tasks.tracker().close();
        let grace = self.server.shutdown_grace;
        if tokio::time::timeout(grace, self.tasks.tracker().wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "shutdown grace period over; closing the remaining connections"
            );
        }
    }

    /// The `[server]` settings the edge started with.
    pub fn server_settings(&self) -> &ServerSettings {
        &self.server
    }

    /// Whether tenants' origins and the webhook may be private addresses.
    pub fn allow_private_origins(&self) -> bool {
        self.lock_config().onboarding.allow_private_origins
    }

    /// Refuses a config whose `[[site]]` names take a name registered through the API.
    fn check_registered(&self, config: &Config) -> Result<(), EdgeError> {
        let overlaps = self
            .onboarding
            .overlaps(config.sites.iter().flat_map(|s| s.hosts.iter()));
        if overlaps.is_empty() {
            Ok(())
        } else {
            Err(EdgeError::Registered(overlaps.join(", ")))
        }
    }

    /// Whether the HTTPS listener is short of slots or waiting room.
    fn https_pressed(&self) -> bool {
        self.https_gauge.get().is_some_and(|g| g.pressed())
    }

    fn lock_config(&self) -> std::sync::MutexGuard<'_, Config> {
        // A panic while holding this lock cannot leave the config half-written: recover it.
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs the edge for `config` until SIGTERM or SIGINT; SIGHUP reloads the config file.
pub async fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), EdgeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let listeners = Listeners::bind(&config.server).await?;
    let mut config = config;
    config.path = config_path;
    let (https, http) = (config.server.https, config.server.http);
    let edge = Edge::new(config)?;
    edge.start(listeners);
    let sites = edge.table.len();
    tracing::info!(%https, %http, sites, "onehttps ready");

    let mut term = signal(SignalKind::terminate()).map_err(EdgeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(EdgeError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(EdgeError::Signal)?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match edge.reload_from_file().await {
                Ok(summary) => tracing::info!(%summary, "configuration reloaded"),
                Err(e) => tracing::error!(
                    error = %crate::config::error_chain(&e),
                    "configuration reload refused; the previous configuration stays in force"
                ),
            },
        }
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    edge.shutdown().await;
    edge.certificates.store().close();
    tracing::info!("stopped");
    // The process ends here: freeing the tables of a million sites would take seconds of
    // a restart for nothing (the store is closed; the OS takes the memory back at once).
    std::mem::forget(edge);
    Ok(())
}
