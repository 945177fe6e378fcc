//! Warnings about abusive clients, at most one line per client address and kind per
//! interval (with the count of what was not logged), so a flood of bad connections cannot
//! flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One line per address and kind at most this often.
const INTERVAL: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the table is cleared past this.
const MAX_TRACKED: usize = 10_000;

/// (client, kind) → (last logged, suppressed since).
type Seen = HashMap<(IpAddr, &'static str), (Instant, u64)>;

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

/// Logs `what` about `client` unless it was logged for that address within the interval.
pub(super) fn warn(client: IpAddr, what: &'static str) {
    let now = Instant::now();
    let suppressed = {
        let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = seen.get_or_insert_with(HashMap::new);
        if seen.len() >= MAX_TRACKED {
            seen.clear();
        }
        let entry = seen
            .entry((client, what))
            .or_insert((now - INTERVAL * 2, 0));
        if now.duration_since(entry.0) < INTERVAL {
            entry.1 += 1;
            return;
        }
        let suppressed = entry.1;
        *entry = (now, 0);
        suppressed
    };
    tracing::warn!(client.addr = %client, suppressed, interval_s = INTERVAL.as_secs(), "{what}");
}
