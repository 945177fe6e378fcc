//! `GET /api/v1/overview`: the console's first page in one call — sites by status,
//! certificates by state and source, the earliest expiry, expiries per day for the next 90
//! days, the process counters (the console turns two readings into rates) and webhook
//! delivery. The same counts as `/metrics` (`summary.rs`), as JSON. The inventory's pass over
//! every site is reused for twenty times as long as it took (at least a second), so consoles
//! left open on a million sites cost at most a twentieth of a core; the counters are always
//! read fresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::{Api, ApiError, summary};
use crate::certs::record::unix;

/// The last reading: when it was taken, how long it took, what it found.
#[derive(Default)]
pub(crate) struct Cache(Mutex<Option<(Instant, Duration, Arc<summary::Summary>)>>);

impl Cache {
    /// The last reading while it is fresh enough.
    fn fresh(&self) -> Option<Arc<summary::Summary>> {
        let last = self.0.lock().ok()?;
        let (at, took, summary) = last.as_ref()?;
        (at.elapsed() < (*took * 20).max(Duration::from_secs(1))).then(|| summary.clone())
    }

    fn keep(&self, at: Instant, summary: Arc<summary::Summary>) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some((at, at.elapsed(), summary));
        }
    }
}

pub(crate) async fn show(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let summary = match api.overview.fresh() {
        Some(summary) => summary,
        None => {
            let reading = api.clone();
            let started = Instant::now();
            let summary = tokio::task::spawn_blocking(move || Arc::new(summary::read(&reading)))
                .await
                .map_err(ApiError::internal)?;
            api.overview.keep(started, summary.clone());
            summary
        }
    };
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
        "webhook": api.events.webhook_state(),
    })))
}
