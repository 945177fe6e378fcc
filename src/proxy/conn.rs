//! What the proxy knows about the client connection a request arrived on, and its activity
//! (requests in flight, last activity) that the idle timeout reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sites::Site;

/// `tls_version` of a connection that is plain HTTP (port 80, a site still onboarding).
pub const PLAIN_HTTP: &str = "plain";

/// One client connection.
pub struct ClientConn {
    pub client: SocketAddr,
    /// The site chosen by the SNI: requests must be for one of its names.
    pub site: Arc<Site>,
    pub tls_version: &'static str,
    pub resumed: bool,
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` of the last request start or end.
    last_active_ms: AtomicU64,
}

impl ClientConn {
    pub fn new(
        client: SocketAddr,
        site: Arc<Site>,
        tls_version: &'static str,
        resumed: bool,
    ) -> Self {
        Self {
            client,
            site,
            tls_version,
            resumed,
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
        }
    }

    /// Whether the client connected over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_version != PLAIN_HTTP
    }

    /// Marks a request (or an upgraded tunnel) as in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has had nothing in flight; `None` while something is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(last))
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<ClientConn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
