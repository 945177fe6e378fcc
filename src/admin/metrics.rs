//! `/metrics` in the Prometheus text format: sites by status, certificates by state and
//! source, seconds to the earliest expiry, lifecycle events by kind, the process counters
//! and the CA's limits (the counts come from `summary.rs`, shared with the console).

use std::fmt::Write;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::Api;
use super::summary;
use crate::certs::record::unix;

pub(crate) async fn render(State(api): State<Api>) -> impl IntoResponse {
    let mut out = String::new();
    let summary = summary::read(&api);
    let _ = writeln!(
        out,
        "# HELP onehttps_sites Registered sites by onboarding status.\n# TYPE onehttps_sites gauge"
    );
    for (status, n) in &summary.sites {
        let _ = writeln!(out, "onehttps_sites{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP onehttps_certificates Certificates by state and source.\n# TYPE onehttps_certificates gauge"
    );
    for ((state, source), n) in &summary.certificates {
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
    let left = summary.earliest_expiry.map_or(0, |e| e.saturating_sub(now));
    let _ = writeln!(out, "onehttps_certificate_earliest_expiry_seconds {left}");
    let _ = writeln!(
        out,
        "# HELP onehttps_events_total Lifecycle events recorded (issuance attempts, failures, renewals…).\n# TYPE onehttps_events_total counter"
    );
    for (kind, n) in &summary.events {
        let _ = writeln!(out, "onehttps_events_total{{kind=\"{kind}\"}} {n}");
    }
    for counter in summary::counters() {
        let (name, help, value) = (counter.metric, counter.help, counter.value);
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP onehttps_requests_total Proxied requests by status class.\n# TYPE onehttps_requests_total counter"
    );
    for (class, n) in summary::requests_by_class() {
        let _ = writeln!(out, "onehttps_requests_total{{code=\"{class}\"}} {n}");
    }
    if let Some(acme) = api.certificates.acme() {
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
