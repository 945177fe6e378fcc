//! Assembling the edge, once, at start: the store, the certificates and the registry read
//! side by side, the site table, TLS configuration, proxy and workers, then every site
//! built and published before anything is served.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::*;
use crate::config::{Config, ServerSettings};
use crate::events::Events;
use crate::issue::Challenges;
use crate::managed::CertManager;
use crate::onboarding::Onboarding;
use crate::proxy::Proxy;
use crate::tls::{self, KeyCache, SiteTable, TableResolver};

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

impl Edge {
    pub(super) fn build(
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
}
