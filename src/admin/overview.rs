//! `GET /api/v1/overview`: the console's first page in one call — sites by status,
//! certificates by state and source, the earliest expiry, expiries per day for the next 90
//! days, the process counters (the console turns two readings into rates) and webhook
//! delivery. The same counts as `/metrics` (`summary.rs`), as JSON.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::{Api, ApiError, summary};
use crate::certs::record::unix;

pub(crate) async fn show(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let reading = api.clone();
    let summary = tokio::task::spawn_blocking(move || summary::read(&reading))
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )
        })?;
    let now = SystemTime::now();
    let certificates: Vec<_> = summary
        .certificates
        .iter()
        .map(|((state, source), count)| json!({ "state": state, "source": source, "count": count }))
        .collect();
    let earliest = summary.earliest_expiry.map(|at| {
        json!({
            "at": humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)).to_string(),
            "seconds_left": at.saturating_sub(unix(now)),
        })
    });
    let counters: serde_json::Map<String, serde_json::Value> = summary::counters()
        .into_iter()
        .map(|c| (c.key.to_owned(), json!(c.value)))
        .collect();
    let requests: serde_json::Map<String, serde_json::Value> = summary::requests_by_class()
        .map(|(class, n)| (class, json!(n)))
        .collect();
    Ok(Json(json!({
        "time_ms": now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        "sites": summary.sites,
        "certificates": certificates,
        "earliest_expiry": earliest,
        "expiring_per_day": summary.expiring_per_day.to_vec(),
        "expiring_later": summary.expiring_later,
        "events": summary.events,
        "counters": counters,
        "requests": requests,
        "webhook": api.edge.events.webhook_state(),
    })))
}
