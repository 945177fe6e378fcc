//! File descriptors: raised to the hard limit at start, and checked against what the
//! listeners may use (each proxied connection holds two: the client's and the origin's; as many
//! again may wait for their first bytes),
//! so the admin listener and background work always leave the public listeners their
//! share. Too low a limit is a WARN naming the numbers and the fix.

use rustix::process::{Resource, getrlimit, setrlimit};

use crate::config::ServerSettings;

/// Descriptors kept for everything that is not a client connection (listeners, the store,
/// DNS, ACME, webhooks, log files).
const RESERVE: u64 = 256;

/// Raises the soft descriptor limit to the hard one and warns if it cannot hold every slot.
pub(super) fn ensure(server: &ServerSettings) {
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        limit.current = Some(maximum);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the file descriptor limit");
        }
    }
    let available = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    // Per listener: max_connections sockets waiting for their first bytes, and
    // max_connections with a slot, each with an origin connection.
    let public = 2 * 3 * server.max_connections as u64;
    let needed = public + crate::admin::ADMIN_MAX_CONNECTIONS as u64 + RESERVE;
    if available < needed {
        tracing::warn!(
            available,
            needed,
            max_connections = server.max_connections,
            "the file descriptor limit is lower than the connection limits need: lower \
             server.max_connections or raise the limit (LimitNOFILE= in the systemd unit)"
        );
    }
}
