//! What the proxy knows about the client connection a request arrived on, and its activity
//! that the connection's timers read: requests in flight and last activity (idle timeout),
//! body bytes moved and requests waiting for their origin (transfer timeout), bytes
//! received from the client (an unfinished request head). It also holds the connection's
//! slot, so an upgraded tunnel that outlives the HTTP connection keeps counting.

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
    /// Request and response body bytes moved so far.
    moved: AtomicU64,
    /// Requests waiting for their origin's response head (bounded by the response timeout).
    awaiting_origin: AtomicUsize,
    /// Bytes read from the client so far (TLS plaintext).
    received: AtomicU64,
    /// `received` when the last request ended; `u64::MAX` before the first request.
    received_at_idle: AtomicU64,
    /// The listener slot this connection holds; released when the last reference drops.
    _slot: Option<Arc<dyn std::any::Any + Send + Sync>>,
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
            moved: AtomicU64::new(0),
            awaiting_origin: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            received_at_idle: AtomicU64::new(u64::MAX),
            _slot: None,
        }
    }

    /// Holds `slot` for as long as this connection (or a tunnel of it) lives.
    #[must_use]
    pub fn with_slot(mut self, slot: Option<Arc<dyn std::any::Any + Send + Sync>>) -> Self {
        self._slot = slot;
        self
    }

    /// Counts body bytes that moved (either way).
    pub fn moved_bytes(&self, n: usize) {
        self.moved.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Body bytes moved so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Counts bytes received from the client.
    pub fn received_bytes(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes received from the client since its last request ended; `None` before its
    /// first request.
    pub fn received_since_idle(&self) -> Option<u64> {
        let mark = self.received_at_idle.load(Ordering::Relaxed);
        (mark != u64::MAX).then(|| self.received.load(Ordering::Relaxed).saturating_sub(mark))
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether some request waits for its origin's response head.
    pub fn awaiting_origin(&self) -> bool {
        self.awaiting_origin.load(Ordering::Acquire) > 0
    }

    /// Marks a request as waiting for its origin until the guard drops.
    pub fn await_origin(self: &Arc<Self>) -> AwaitingOrigin {
        self.awaiting_origin.fetch_add(1, Ordering::AcqRel);
        AwaitingOrigin(self.clone())
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

/// A request waiting for its origin's response head.
pub struct AwaitingOrigin(Arc<ClientConn>);

impl Drop for AwaitingOrigin {
    fn drop(&mut self) {
        self.0.awaiting_origin.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<ClientConn>);

impl InFlight {
    /// The connection the request is on.
    pub fn conn(&self) -> &ClientConn {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        let received = self.0.received.load(Ordering::Relaxed);
        self.0.received_at_idle.store(received, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
