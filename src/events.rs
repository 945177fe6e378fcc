//! Lifecycle events (site verified / active / failed / dns_moved, certificate issued /
//! renewed / expiring / failed / replaced) kept in a bounded in-memory log that the admin API
//! reads. Recording never blocks the caller.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// How many events are kept; older ones are dropped.
const CAPACITY: usize = 1000;

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increasing number, so readers can ask for what is new.
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    /// e.g. `site.verified`, `certificate.issued`.
    pub kind: String,
    /// The site's first name (or the certificate's names).
    pub subject: String,
    pub message: String,
}

/// The bounded event log.
#[derive(Debug, Default)]
pub struct Events {
    inner: Mutex<(u64, VecDeque<Event>)>,
}

impl Events {
    pub fn record(&self, kind: &str, subject: &str, message: impl Into<String>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.0 += 1;
        let event = Event {
            seq: inner.0,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            message: message.into(),
        };
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        inner.1.push_back(event);
    }

    /// Events after `since` (all with 0), oldest first.
    pub fn since(&self, since: u64) -> Vec<Event> {
        self.inner
            .lock()
            .map(|inner| inner.1.iter().filter(|e| e.seq > since).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_ordered() {
        let events = Events::default();
        for i in 0..CAPACITY + 5 {
            events.record("site.verified", &format!("s{i}"), "ok");
        }
        let all = events.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 6);
        assert_eq!(events.since(all[CAPACITY - 2].seq).len(), 1);
    }
}
