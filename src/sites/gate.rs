//! A registered site's issuance gate: open while its DNS points here, so a certificate may be
//! requested. One flag and one notifier per site (a million sites carry a million gates: a
//! broadcast channel each would be ~450 bytes, this is ~60); onboarding opens and closes it,
//! the site's renewal work waits on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Shared by onboarding (which sets it) and the site (whose renewal waits for it).
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<State>);

#[derive(Debug, Default)]
struct State {
    open: AtomicBool,
    opened: Notify,
}

impl Gate {
    pub fn new(open: bool) -> Self {
        let gate = Self::default();
        gate.0.open.store(open, Ordering::SeqCst);
        gate
    }

    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::SeqCst)
    }

    /// Opens or closes the gate; opening it wakes whoever waits.
    pub fn set(&self, open: bool) {
        let was = self.0.open.swap(open, Ordering::SeqCst);
        if open && !was {
            self.0.opened.notify_waiters();
        }
    }

    /// Returns once the gate is open (at once if it is).
    pub async fn opened(&self) {
        loop {
            let notified = self.0.opened.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so an opening between the two is not missed.
            notified.as_mut().enable();
            if self.is_open() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_returns_when_the_gate_opens_and_not_before() {
        let gate = Gate::new(false);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.opened().await }
        });
        tokio::task::yield_now().await;
        gate.set(false);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "returned while the gate was closed");
        gate.set(true);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter did not return once the gate opened")
            .unwrap();
        assert!(gate.is_open());
        // An open gate lets a new waiter through at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), gate.opened())
            .await
            .unwrap();
    }
}
