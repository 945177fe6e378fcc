//! Process-wide counters for `/metrics`: handshakes and resumptions, requests by status
//! class, origin errors, issuance attempts and failures. Relaxed atomics: one add per event,
//! no lock on any hot path.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters.
#[derive(Debug, Default)]
pub struct Stats {
    pub handshakes: AtomicU64,
    pub resumed: AtomicU64,
    /// Index = status / 100 (1xx … 5xx).
    pub requests: [AtomicU64; 6],
    pub origin_errors: AtomicU64,
    pub issuance_attempts: AtomicU64,
    pub issuance_failures: AtomicU64,
    /// Orders held back by the CA's limits (no request sent).
    pub issuance_held: AtomicU64,
    /// Swaps the self-check confirmed, and found not served.
    pub self_checks: AtomicU64,
    pub self_check_failures: AtomicU64,
    /// Connections closed at accept: over a per-address limit.
    pub refused_connections: AtomicU64,
    /// Connections closed for moving too little (transfer timeout) or idle tunnels.
    pub stalled_connections: AtomicU64,
    /// Webhook deliveries given up after every attempt, or dropped from a full queue.
    pub webhook_failures: AtomicU64,
}

/// The one instance.
pub static STATS: Stats = Stats {
    handshakes: AtomicU64::new(0),
    resumed: AtomicU64::new(0),
    requests: [const { AtomicU64::new(0) }; 6],
    origin_errors: AtomicU64::new(0),
    issuance_attempts: AtomicU64::new(0),
    issuance_failures: AtomicU64::new(0),
    issuance_held: AtomicU64::new(0),
    self_checks: AtomicU64::new(0),
    self_check_failures: AtomicU64::new(0),
    refused_connections: AtomicU64::new(0),
    stalled_connections: AtomicU64::new(0),
    webhook_failures: AtomicU64::new(0),
};

/// Adds one to `counter`.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts a response with `status`.
pub fn request(status: u16) {
    let class = usize::from(status / 100).min(5);
    bump(&STATS.requests[class]);
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
