//! What `/metrics` and the console's overview (`GET /api/v1/overview`) both report, read in
//! one pass: sites by status, certificates by state and source, the earliest expiry, expiries
//! per day for the next [`EXPIRY_DAYS`] days, events by kind, and the process counters.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::Api;
use crate::certs::record::unix;
use crate::stats::{STATS, get};

/// Days the expiry timeline covers.
pub(crate) const EXPIRY_DAYS: usize = 90;

/// The inventory's counts at one moment.
pub(crate) struct Summary {
    pub sites: BTreeMap<String, u64>,
    /// (state, source) → certificates.
    pub certificates: BTreeMap<(String, String), u64>,
    /// Unix seconds of the first certificate in service to expire.
    pub earliest_expiry: Option<u64>,
    /// Certificates whose notAfter falls on day `i` from now (already expired: day 0).
    pub expiring_per_day: [u64; EXPIRY_DAYS],
    /// Certificates expiring later than the timeline.
    pub expiring_later: u64,
    pub events: BTreeMap<String, u64>,
}

/// Walks the sites in service once (a `/metrics` scrape at a million sites is one pass).
pub(crate) fn read(api: &Api) -> Summary {
    let mut summary = Summary {
        sites: api.onboarding.count_by_status(),
        certificates: BTreeMap::new(),
        earliest_expiry: None,
        expiring_per_day: [0; EXPIRY_DAYS],
        expiring_later: 0,
        events: BTreeMap::new(),
    };
    let now = SystemTime::now();
    let now_s = unix(now);
    let certificates = &api.certificates;
    for site in api.table.sites() {
        let record = certificates.status(site.hosts());
        let (state, source) = certificates.state(&site, record.as_deref(), now);
        let source = source.map_or_else(|| "none".to_owned(), |s| s.to_string());
        *summary
            .certificates
            .entry((state.to_string(), source))
            .or_default() += 1;
        if let Some(cert) = site.served_cert() {
            let at = unix(cert.bundle.info.not_after);
            summary.earliest_expiry = Some(summary.earliest_expiry.map_or(at, |e| e.min(at)));
            let day = usize::try_from(at.saturating_sub(now_s) / 86_400).unwrap_or(usize::MAX);
            match summary.expiring_per_day.get_mut(day) {
                Some(count) => *count += 1,
                None => summary.expiring_later += 1,
            }
        }
    }
    for event in api.events.since(0) {
        *summary.events.entry(event.kind).or_default() += 1;
    }
    summary
}

/// A process counter: its Prometheus name, help text, short name in the overview, value.
pub(crate) struct Counter {
    pub metric: &'static str,
    pub help: &'static str,
    pub key: &'static str,
    pub value: u64,
}

/// The process counters, read now.
pub(crate) fn counters() -> [Counter; 11] {
    let counter = |metric, help, key, value| Counter {
        metric,
        help,
        key,
        value,
    };
    [
        counter(
            "onehttps_tls_handshakes_total",
            "Completed TLS handshakes.",
            "handshakes",
            get(&STATS.handshakes),
        ),
        counter(
            "onehttps_tls_resumptions_total",
            "Handshakes that resumed a session.",
            "resumptions",
            get(&STATS.resumed),
        ),
        counter(
            "onehttps_origin_errors_total",
            "Requests that failed at the origin (502/504).",
            "origin_errors",
            get(&STATS.origin_errors),
        ),
        counter(
            "onehttps_issuance_attempts_total",
            "Certificate orders started.",
            "issuance_attempts",
            get(&STATS.issuance_attempts),
        ),
        counter(
            "onehttps_issuance_failures_total",
            "Certificate orders that failed.",
            "issuance_failures",
            get(&STATS.issuance_failures),
        ),
        counter(
            "onehttps_issuance_held_total",
            "Certificate orders held back by the CA's limits, as counted here (no request sent).",
            "issuance_held",
            get(&STATS.issuance_held),
        ),
        counter(
            "onehttps_self_checks_total",
            "Certificate swaps the self-check saw served through server.self_check_address.",
            "self_checks",
            get(&STATS.self_checks),
        ),
        counter(
            "onehttps_self_check_failures_total",
            "Self-checks that were served another certificate than the one swapped in.",
            "self_check_failures",
            get(&STATS.self_check_failures),
        ),
        counter(
            "onehttps_refused_connections_total",
            "Connections closed at accept: over a per-address limit.",
            "refused_connections",
            get(&STATS.refused_connections),
        ),
        counter(
            "onehttps_stalled_connections_total",
            "Connections closed for moving too little data, or idle tunnels.",
            "stalled_connections",
            get(&STATS.stalled_connections),
        ),
        counter(
            "onehttps_webhook_failures_total",
            "Webhook deliveries that failed after every attempt, or were dropped from a full queue.",
            "webhook_failures",
            get(&STATS.webhook_failures),
        ),
    ]
}

/// Proxied requests by status class: (`"2xx"`, count), 1xx to 5xx.
pub(crate) fn requests_by_class() -> impl Iterator<Item = (String, u64)> {
    STATS
        .requests
        .iter()
        .enumerate()
        .skip(1)
        .map(|(class, counter)| (format!("{class}xx"), get(counter)))
}
