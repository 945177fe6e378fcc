//! The running edge: listeners, accept loops, connection serving, reload and shutdown.
//! `Edge::start` is what the binary and the tests call; the `run` function adds signals.

mod accept;
mod admission;
mod descriptors;
mod http;
mod https;
mod log_limit;
mod plain_http;
mod reload;
mod slots;
mod welcome;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::config::{Config, ServerSettings};
use crate::events::Events;
use crate::issue::Challenges;
use crate::managed::CertManager;
use crate::onboarding::Onboarding;
use crate::proxy::Proxy;
use crate::tls::{self, KeyCache, SiteTable, TableResolver};
pub use reload::ReloadSummary;

/// Largest number of concurrent HTTP/2 streams per client connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Response bytes HTTP/2 buffers per stream beyond what the client's window takes: a
/// client that stops reading pins this much, not the whole response (backpressure goes
/// to the origin instead).
const H2_MAX_SEND_BUF_BYTES: usize = 16 * 1024;
/// How much a client may send on one stream / the connection before the edge has passed
/// it on to the origin (upload buffering).
const H2_STREAM_WINDOW_BYTES: u32 = 256 * 1024;
const H2_CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;

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

    fn build(
        config: Config,
        memory_origin: Option<crate::proxy::connector::MemoryOrigin>,
    ) -> Result<Arc<Self>, EdgeError> {
        let challenges = Arc::new(Challenges::default());
        let events = Arc::new(match config.events.webhook {
            Some(_) => Events::with_webhook(),
            None => Events::default(),
        });
        let store = Arc::new(
            crate::store::Store::open_with(&config.storage, &config.server.data_dir)
                .map_err(crate::managed::ManagerError::from)?,
        );
        // The registry is read beside the certificate records: each pass leaves a core idle
        // at times (its serial steps), the other fills it.
        // That thread also builds the served sites' definitions, which need nothing else.
        let (certificates, (registry, definitions)) = std::thread::scope(|scope| {
            let registry = scope.spawn(|| {
                let registry = Onboarding::read_registry(&store, &events);
                let definitions = crate::onboarding::Definitions::of(
                    &registry,
                    &config.onboarding,
                    &config.internal_names,
                    config.tls.hsts.as_ref(),
                );
                (registry, definitions)
            });
            let certificates = CertManager::new(
                store.clone(),
                &config.acme,
                &config.internal_names,
                challenges.clone(),
                events.clone(),
            );
            let registry = registry
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (certificates, registry)
        });
        let certificates = certificates?;
        let onboarding = Onboarding::with_registry(
            config.onboarding.clone(),
            config.internal_names.clone(),
            certificates.clone(),
            events.clone(),
            registry,
        );
        let table = Arc::new(SiteTable::new());
        // A fleet shares its ticket keys, so a ticket from one node resumes on another.
        let shared_tickets = match certificates.store().fleet() {
            Some(_) if config.tls.session_tickets => Some(
                tls::tickets::SharedTicketer::load(certificates.store())
                    .map_err(crate::managed::ManagerError::from)?,
            ),
            _ => None,
        };
        let tickets = shared_tickets
            .clone()
            .map(|t| t as Arc<dyn rustls::server::ProducesTickets>);
        let keys = Arc::new(KeyCache::new(config.tls.key_cache_entries));
        let resolver = TableResolver::new(table.clone(), keys);
        let tls = tls::server_config::build(&config.tls, Arc::new(resolver), tickets.clone())
            .map_err(EdgeError::Tls)?;
        let tasks = crate::tasks::Tasks::default();
        let workers = workers::Workers::start(config.server.workers).map_err(EdgeError::Workers)?;
        let proxy = Arc::new(Proxy::new(
            &config.proxy,
            config.onboarding.allow_private_origins,
            config.log.access,
            tasks.tracker().clone(),
            workers.len(),
            memory_origin,
        ));
        let server = config.server.clone();
        let edge = Arc::new(Self {
            table,
            challenges,
            certificates,
            onboarding,
            events,
            applying: Mutex::new(()),
            tls,
            proxy,
            http: http_builder(&server),
            server,
            config: Mutex::new(config.clone()),
            tasks,
            workers,
            https_gauge: std::sync::OnceLock::new(),
            started: std::time::SystemTime::now(),
            shared_tickets,
        });
        edge.check_registered(&config)?;
        let applying = std::time::Instant::now();
        let one_at_a_time = edge.lock_applying();
        let registered = edge.onboarding.adopt(definitions);
        let (summary, fresh) = edge.publish_config(config, Some(registered));
        drop(one_at_a_time);
        edge.certificates.preload_done();
        tracing::info!(
            sites = summary.added,
            took_ms = applying.elapsed().as_millis() as u64,
            "sites built and published"
        );
        // Serving needs no queue: renewals (due in weeks) and DNS checks are queued beside
        // it, which takes seconds with a million sites. A change waits for them.
        let queueing = edge.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let _one_at_a_time = queueing.lock_applying();
            queueing.queue_work(fresh);
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "renewals and DNS checks queued"
            );
        });
        Ok(edge)
    }

    /// Starts accept loops, the certificate watcher and the welcome origin.
    pub fn start(self: &Arc<Self>, listeners: Listeners) {
        descriptors::ensure(&self.server);
        let interval = self.lock_config().tls.watch_interval;
        let table = self.table.clone();
        let certificates = self.certificates.clone();
        self.tasks.tracker().spawn(crate::sites::watch::run(
            move || table.sites_with_files(),
            move |site| certificates.announce_swap(site),
            interval,
            self.tasks.token().clone(),
        ));
        self.start_acme_dns();
        self.tasks.tracker().spawn(crate::managed::self_check::run(
            self.table.clone(),
            self.server.self_check,
            self.certificates.installs(),
            self.events.clone(),
            self.tasks.token().clone(),
        ));
        for (listener, kind) in [
            (listeners.https, accept::Kind::Https),
            (listeners.http, accept::Kind::Http),
        ] {
            if let Err(e) = accept::start(self, listener, kind) {
                tracing::error!(error = %e, ?kind, "cannot start accepting: connections are not served");
            }
        }
        let edge = self.clone();
        self.tasks.tracker().spawn(async move {
            loop {
                let changes = tokio::select! {
                    () = edge.tasks.token().cancelled() => return,
                    changes = edge.onboarding.served_changed() => changes,
                };
                let publishing = edge.clone();
                let publish = move || {
                    if changes.all {
                        publishing.republish();
                        return;
                    }
                    for (id, hosts) in &changes.sites {
                        publishing.publish_registered(id, hosts);
                    }
                };
                if let Err(e) = tokio::task::spawn_blocking(publish).await {
                    tracing::error!(error = %e, "cannot publish the sites after a verification");
                }
            }
        });
        let webhook = self.lock_config().events.clone();
        if let Some(url) = webhook.webhook {
            let events = self.events.clone();
            let timeout = webhook.webhook_timeout;
            let cancel = self.tasks.token().clone();
            let allow_private = self.allow_private_origins();
            self.tasks.tracker().spawn(async move {
                events.deliver(url, timeout, allow_private, cancel).await;
            });
        }
        match crate::admin::token(&self.server) {
            Ok(token) => {
                self.announce_console(&token);
                self.tasks.tracker().spawn(crate::admin::serve(
                    self.admin_handles(),
                    listeners.admin,
                    token,
                    self.tasks.token().clone(),
                ));
            }
            Err(e) => tracing::error!(error = %e, "admin API off: cannot read or create its token"),
        }
        if let Some(listener) = listeners.welcome {
            self.tasks
                .tracker()
                .spawn(welcome::serve(listener, self.tasks.token().clone()));
        }
        self.tasks.tracker().spawn(
            self.certificates
                .clone()
                .run_scheduler(self.tasks.token().clone()),
        );
        self.tasks.tracker().spawn(
            self.onboarding
                .clone()
                .run_scheduler(self.certificates.installs(), self.tasks.token().clone()),
        );
        crate::fleet::start(Arc::new(self.fleet_handles()));
    }

    /// What this node says of itself (heartbeat, `GET /api/v1/nodes`).
    fn this_node(&self) -> crate::fleet::nodes::ThisNode {
        crate::fleet::nodes::ThisNode {
            store: self.certificates.store().clone(),
            https: self.server.https,
            started: self.started,
            table: self.table.clone(),
        }
    }

    /// The handles the admin API works with.
    fn admin_handles(self: &Arc<Self>) -> crate::admin::Handles {
        crate::admin::Handles {
            table: self.table.clone(),
            certificates: self.certificates.clone(),
            onboarding: self.onboarding.clone(),
            events: self.events.clone(),
            node: self.this_node(),
            server: self.server.clone(),
            allow_private_origins: self.allow_private_origins(),
            publisher: self.clone(),
        }
    }

    /// The handles the fleet's watches and heartbeat work with.
    fn fleet_handles(&self) -> crate::fleet::Fleet {
        crate::fleet::Fleet {
            certificates: self.certificates.clone(),
            challenges: self.challenges.clone(),
            table: self.table.clone(),
            onboarding: self.onboarding.clone(),
            events: self.events.clone(),
            tickets: self.shared_tickets.clone(),
            node: self.this_node(),
            tasks: self.tasks.clone(),
        }
    }

    /// Says where the console is. The built-in demo (no config file, a loopback admin
    /// address) prints its token too, so a newcomer can paste it; a configured edge says
    /// where the token is instead of writing it to the log.
    fn announce_console(&self, token: &str) {
        let server = self.server_settings();
        let (admin, generated) = (server.admin, server.admin_token.is_none());
        let demo = self.lock_config().path.is_none();
        let url = format!("http://{admin}/");
        if demo && admin.ip().is_loopback() {
            eprintln!("onehttps console: {url}  (admin token: {token})");
        }
        let token_at = if generated {
            server
                .data_dir
                .join(crate::admin::TOKEN_FILE)
                .display()
                .to_string()
        } else {
            "server.admin_token".to_owned()
        };
        tracing::info!(%url, token = %token_at, "console and admin API listening");
    }

    /// Serves `[onboarding] acme_zone` (DNS-01 answers) when it is set; a port that cannot
    /// be bound is an ERROR and DNS-01 stays off.
    fn start_acme_dns(self: &Arc<Self>) {
        let settings = self.lock_config().onboarding.clone();
        let Some(zone) = settings.acme_zone else {
            return;
        };
        let address = settings.acme_dns;
        let bound = std::net::UdpSocket::bind(address)
            .and_then(|udp| Ok((udp, std::net::TcpListener::bind(address)?)))
            .and_then(|(udp, tcp)| {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok((
                    tokio::net::UdpSocket::from_std(udp)?,
                    tokio::net::TcpListener::from_std(tcp)?,
                ))
            });
        let (udp, tcp) = match bound {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::error!(%address, error = %e, "cannot serve the ACME zone's DNS (onboarding.acme_dns): DNS-01 and wildcard sites will fail");
                return;
            }
        };
        let (onboarding, challenges) = (self.onboarding.clone(), self.challenges.clone());
        let zone = Arc::new(crate::onboarding::acme_dns::Zone {
            name: zone.as_str().to_owned(),
            values: move |id: &str| onboarding.dns01_values(id, &challenges),
        });
        tracing::info!(%address, zone = %zone.name, "serving the ACME zone's DNS (DNS-01 answers)");
        self.tasks
            .tracker()
            .spawn(crate::onboarding::acme_dns::serve(
                zone,
                udp,
                tcp,
                self.tasks.token().clone(),
            ));
    }

    /// Runs `task` among the edge's background tasks (waited for at shutdown).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Resolves when the edge shuts down.
    pub async fn cancelled(&self) {
        self.tasks.cancelled().await;
    }

    /// When this process started serving.
    pub fn started(&self) -> std::time::SystemTime {
        self.started
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

/// The HTTP server settings shared by every client connection.
fn http_builder(server: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(server.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_send_buf_size(H2_MAX_SEND_BUF_BYTES)
        .initial_stream_window_size(H2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES)
        .keep_alive_interval(Some(server.idle_timeout))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
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
