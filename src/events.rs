//! Lifecycle events (site verified / active / failed / dns_moved, certificate issued /
//! renewed / expiring / failed / replaced) kept in a bounded in-memory log that the admin API
//! reads and, when `[events] webhook` is set, POSTed as JSON in order, with a timeout and
//! three attempts each. Recording never blocks the caller: a slow or dead webhook only makes
//! its own queue fill up (events beyond it are dropped from delivery, never from the log).
//! In a fleet each event is also handed to the fleet's log (`fleet/events.rs`), and events
//! recorded by other nodes join this log (marked with their node, never re-delivered).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How many events are kept; older ones are dropped.
pub const CAPACITY: usize = 1000;
/// Events waiting for webhook delivery.
const WEBHOOK_QUEUE: usize = 1000;
/// Attempts per event.
const WEBHOOK_ATTEMPTS: u32 = 3;

/// What an event is about: a closed set, each spelled on the wire (the API, the webhook,
/// the fleet's log) in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SiteAdded,
    SiteVerified,
    SiteActive,
    SiteFailed,
    SiteQueued,
    SiteDnsMoved,
    SiteRemoved,
    SiteRecordRejected,
    CertificateIssued,
    CertificateRenewed,
    CertificateExpiring,
    CertificateFailed,
    CertificateQueued,
    CertificateReplaced,
    CertificateUploaded,
    CertificateRecordRejected,
    CertificateSelfCheckFailed,
}

impl EventKind {
    /// The kind as the API and the webhook spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SiteAdded => "site.added",
            Self::SiteVerified => "site.verified",
            Self::SiteActive => "site.active",
            Self::SiteFailed => "site.failed",
            Self::SiteQueued => "site.queued",
            Self::SiteDnsMoved => "site.dns_moved",
            Self::SiteRemoved => "site.removed",
            Self::SiteRecordRejected => "site.record_rejected",
            Self::CertificateIssued => "certificate.issued",
            Self::CertificateRenewed => "certificate.renewed",
            Self::CertificateExpiring => "certificate.expiring",
            Self::CertificateFailed => "certificate.failed",
            Self::CertificateQueued => "certificate.queued",
            Self::CertificateReplaced => "certificate.replaced",
            Self::CertificateUploaded => "certificate.uploaded",
            Self::CertificateRecordRejected => "certificate.record_rejected",
            Self::CertificateSelfCheckFailed => "certificate.self_check_failed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Increasing number, so readers can ask for what is new.
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    /// An [`EventKind`] as spelled on the wire (another node's may be one this version
    /// does not know).
    pub kind: String,
    /// The site's first name (or the certificate's names).
    pub subject: String,
    pub message: String,
    /// The fleet node that recorded it (`storage.node_id`); absent on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// How webhook delivery is going (the console's events page shows it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookState {
    /// Events the webhook accepted (2xx).
    pub delivered: u64,
    /// Events given up after every attempt.
    pub failed: u64,
    /// Events never sent: the delivery queue was full.
    pub dropped: u64,
    /// The last event delivered.
    pub last_delivered_seq: Option<u64>,
    /// Why the last failed attempt failed, and when (RFC 3339).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// The bounded event log.
#[derive(Debug, Default)]
pub struct Events {
    inner: Mutex<(u64, VecDeque<Event>)>,
    /// Woken at every append (long polls of `GET /api/v1/events?wait=`).
    appended: tokio::sync::Notify,
    /// `Some` when a webhook is configured.
    webhook_state: Mutex<Option<WebhookState>>,
    webhook: Option<tokio::sync::mpsc::Sender<Event>>,
    /// The receiving end until `deliver` takes it.
    pending: Mutex<Option<tokio::sync::mpsc::Receiver<Event>>>,
    /// In a fleet: this node's id and where its events go to be shared.
    fleet: Mutex<Option<(String, tokio::sync::mpsc::Sender<Event>)>>,
}

impl Events {
    /// An event log that also queues every event for a webhook.
    pub fn with_webhook() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(WEBHOOK_QUEUE);
        Self {
            webhook: Some(tx),
            pending: Mutex::new(Some(rx)),
            webhook_state: Mutex::new(Some(WebhookState::default())),
            ..Self::default()
        }
    }

    /// POSTs queued events to `url` one after the other until `cancel`.
    pub async fn deliver(
        &self,
        url: http::Uri,
        timeout: std::time::Duration,
        allow_private: bool,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let Some(queue) = self.pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let builder =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        let connector = crate::proxy::client::connector(timeout);
        if allow_private {
            deliver_with(self, builder.build(connector), queue, url, timeout, cancel).await;
        } else {
            let connector = crate::proxy::guard::PublicOnly::new(connector);
            deliver_with(self, builder.build(connector), queue, url, timeout, cancel).await;
        }
    }

    /// From now on every event recorded here is marked as node `node`'s and sent to
    /// `share` (the fleet's log).
    pub fn join_fleet(&self, node: String, share: tokio::sync::mpsc::Sender<Event>) {
        if let Ok(mut fleet) = self.fleet.lock() {
            *fleet = Some((node, share));
        }
    }

    pub fn record(&self, kind: EventKind, subject: &str, message: impl Into<String>) {
        let fleet = self.fleet.lock().ok().and_then(|f| f.clone());
        let event = Event {
            seq: 0,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind: kind.as_str().to_owned(),
            subject: subject.to_owned(),
            message: message.into(),
            node: fleet.as_ref().map(|(node, _)| node.clone()),
        };
        let Some(event) = self.append(event) else {
            return;
        };
        if let Some(webhook) = &self.webhook
            && webhook.try_send(event.clone()).is_err()
        {
            tracing::warn!(seq = event.seq, "webhook queue full: event not delivered");
            self.note_webhook(|state| state.dropped += 1);
            crate::stats::bump(&crate::stats::STATS.webhook_failures);
        }
        if let Some((_, share)) = fleet
            && share.try_send(event.clone()).is_err()
        {
            tracing::warn!(
                seq = event.seq,
                "fleet event queue full: event kept on this node only"
            );
        }
    }

    /// Adds an event another node of the fleet recorded (its webhook delivery is that
    /// node's); it gets this log's next number.
    pub fn record_from_fleet(&self, event: Event) {
        self.append(event);
    }

    /// Numbers `event` and appends it, dropping the oldest beyond the capacity.
    fn append(&self, mut event: Event) -> Option<Event> {
        let mut inner = self.inner.lock().ok()?;
        inner.0 += 1;
        event.seq = inner.0;
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        inner.1.push_back(event.clone());
        drop(inner);
        self.appended.notify_waiters();
        Some(event)
    }

    /// Events after `since`, waiting up to `wait` for the first one when there is none yet
    /// (empty when none came).
    pub async fn wait_since(&self, since: u64, wait: std::time::Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let events = self.since(since);
            if !events.is_empty() {
                return events;
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// How webhook delivery is going; `None` without a webhook.
    pub fn webhook_state(&self) -> Option<WebhookState> {
        self.webhook_state.lock().ok().and_then(|s| s.clone())
    }

    fn note_webhook(&self, change: impl FnOnce(&mut WebhookState)) {
        if let Ok(mut state) = self.webhook_state.lock()
            && let Some(state) = state.as_mut()
        {
            change(state);
        }
    }

    /// Events after `since` (all with 0), oldest first.
    pub fn since(&self, since: u64) -> Vec<Event> {
        self.inner
            .lock()
            .map(|inner| inner.1.iter().filter(|e| e.seq > since).cloned().collect())
            .unwrap_or_default()
    }
}

/// Delivers queued events in order through `client` until `cancel`.
async fn deliver_with<C>(
    events: &Events,
    client: hyper_util::client::legacy::Client<C, http_body_util::Full<bytes::Bytes>>,
    mut queue: tokio::sync::mpsc::Receiver<Event>,
    url: http::Uri,
    timeout: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = queue.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let body = bytes::Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
        let mut delivered = false;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let request = http::Request::post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "onehttps-webhook")
                .body(http_body_util::Full::new(body.clone()));
            let Ok(request) = request else { break };
            let outcome = tokio::time::timeout(timeout, client.request(request)).await;
            match outcome {
                Ok(Ok(response)) if response.status().is_success() => {
                    delivered = true;
                    break;
                }
                other => {
                    let why = match other {
                        Ok(Ok(response)) => format!("HTTP {}", response.status()),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_owned(),
                    };
                    tracing::warn!(webhook = %url, seq = event.seq, attempt, reason = %why, "webhook delivery failed");
                    events.note_webhook(|state| {
                        state.last_error = Some(format!("event {}: {why}", event.seq));
                        state.last_error_at =
                            Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
                    });
                    if attempt < WEBHOOK_ATTEMPTS {
                        tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt)))
                            .await;
                    }
                }
            }
        }
        if delivered {
            events.note_webhook(|state| {
                state.delivered += 1;
                state.last_delivered_seq = Some(event.seq);
            });
        } else {
            events.note_webhook(|state| state.failed += 1);
            crate::stats::bump(&crate::stats::STATS.webhook_failures);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_ordered() {
        let events = Events::default();
        for i in 0..CAPACITY + 5 {
            events.record(EventKind::SiteVerified, &format!("s{i}"), "ok");
        }
        let all = events.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 6);
        assert_eq!(events.since(all[CAPACITY - 2].seq).len(), 1);
    }

    #[tokio::test]
    async fn a_long_poll_returns_at_the_first_new_event_or_empty_at_its_deadline() {
        let events = std::sync::Arc::new(Events::default());
        events.record(EventKind::SiteVerified, "a.example", "ok");
        // Something after `since` already: no wait.
        assert_eq!(
            events
                .wait_since(0, std::time::Duration::from_secs(30))
                .await
                .len(),
            1
        );
        let recorder = events.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            recorder.record(EventKind::SiteActive, "a.example", "served");
        });
        let started = std::time::Instant::now();
        let got = events
            .wait_since(1, std::time::Duration::from_secs(30))
            .await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, "site.active");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        later.await.unwrap();
        assert!(
            events
                .wait_since(2, std::time::Duration::from_millis(20))
                .await
                .is_empty()
        );
    }
}
