//! `/metrics` in the Prometheus text format: sites by status, certificates by state and
//! source, seconds to the earliest expiry, and lifecycle events by kind.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::Api;
use crate::certs::record::unix;

pub(crate) async fn render(State(api): State<Api>) -> impl IntoResponse {
    let mut out = String::new();
    let sites = api.edge.onboarding.count_by_status();
    let _ = writeln!(
        out,
        "# HELP onehttps_sites Registered sites by onboarding status.\n# TYPE onehttps_sites gauge"
    );
    for (status, n) in &sites {
        let _ = writeln!(out, "onehttps_sites{{status=\"{status}\"}} {n}");
    }

    let mut states: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut earliest: Option<u64> = None;
    let now = SystemTime::now();
    let certificates = &api.edge.certificates;
    for site in api.edge.table.sites() {
        let record = certificates.status(site.hosts());
        let (state, source) = certificates.state(&site, record.as_deref(), now);
        let source = source.map_or_else(|| "none".to_owned(), |s| s.to_string());
        *states.entry((state.to_string(), source)).or_default() += 1;
        if let Some(cert) = site.served_cert() {
            let at = unix(cert.bundle.info.not_after);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    let _ = writeln!(
        out,
        "# HELP onehttps_certificates Certificates by state and source.\n# TYPE onehttps_certificates gauge"
    );
    for ((state, source), n) in &states {
        let _ = writeln!(
            out,
            "onehttps_certificates{{state=\"{state}\",source=\"{source}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP onehttps_certificate_earliest_expiry_seconds Seconds until the first certificate in service expires.\n# TYPE onehttps_certificate_earliest_expiry_seconds gauge"
    );
    let now = unix(SystemTime::now());
    let left = earliest.map_or(0, |e| e.saturating_sub(now));
    let _ = writeln!(out, "onehttps_certificate_earliest_expiry_seconds {left}");

    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for event in api.edge.events.since(0) {
        *kinds.entry(event.kind).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP onehttps_events_total Lifecycle events recorded (issuance attempts, failures, renewals…).\n# TYPE onehttps_events_total counter"
    );
    for (kind, n) in &kinds {
        let _ = writeln!(out, "onehttps_events_total{{kind=\"{kind}\"}} {n}");
    }
    use crate::stats::{STATS, get};
    let counters = [
        (
            "onehttps_tls_handshakes_total",
            "Completed TLS handshakes.",
            get(&STATS.handshakes),
        ),
        (
            "onehttps_tls_resumptions_total",
            "Handshakes that resumed a session.",
            get(&STATS.resumed),
        ),
        (
            "onehttps_origin_errors_total",
            "Requests that failed at the origin (502/504).",
            get(&STATS.origin_errors),
        ),
        (
            "onehttps_issuance_attempts_total",
            "Certificate orders started.",
            get(&STATS.issuance_attempts),
        ),
        (
            "onehttps_issuance_failures_total",
            "Certificate orders that failed.",
            get(&STATS.issuance_failures),
        ),
        (
            "onehttps_issuance_held_total",
            "Certificate orders held back by the CA's limits, as counted here (no request sent).",
            get(&STATS.issuance_held),
        ),
        (
            "onehttps_self_checks_total",
            "Certificate swaps the self-check saw served through server.self_check_address.",
            get(&STATS.self_checks),
        ),
        (
            "onehttps_self_check_failures_total",
            "Self-checks that were served another certificate than the one swapped in.",
            get(&STATS.self_check_failures),
        ),
        (
            "onehttps_refused_connections_total",
            "Connections closed at accept: over a per-address limit.",
            get(&STATS.refused_connections),
        ),
        (
            "onehttps_stalled_connections_total",
            "Connections closed for moving too little data, or idle tunnels.",
            get(&STATS.stalled_connections),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP onehttps_requests_total Proxied requests by status class.\n# TYPE onehttps_requests_total counter"
    );
    for (class, counter) in STATS.requests.iter().enumerate().skip(1) {
        let _ = writeln!(
            out,
            "onehttps_requests_total{{code=\"{class}xx\"}} {}",
            get(counter)
        );
    }
    if let Some(acme) = api.edge.certificates.acme() {
        let (uses, renewals_waiting, _) = acme.ledger().usage().await;
        type Read = fn(&crate::issue::ledger::LimitUse) -> u32;
        let gauges: [(&str, &str, Read); 2] = [
            (
                "onehttps_ca_limit_used",
                "Orders counted against each CA limit in its window (at its busiest key).",
                |u| u.used,
            ),
            ("onehttps_ca_limit", "The CA's limit per window.", |u| u.max),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for used in &uses {
                let _ = writeln!(out, "{name}{{limit=\"{}\"}} {}", used.key, value(used));
            }
        }
        let _ = writeln!(
            out,
            "# HELP onehttps_ca_renewals_waiting Renewals held back by a CA limit now.\n# TYPE onehttps_ca_renewals_waiting gauge\nonehttps_ca_renewals_waiting {renewals_waiting}"
        );
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
