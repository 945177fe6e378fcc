//! A listener's connection slots: what a connection holds while it lives (its slot and its
//! place in the per-address count), how full the listener is, and the deadline that gives
//! way under pressure, so clients waiting in the backlog get the places of connections that
//! are not making progress.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// How full a listener is. Under pressure — fewer than a tenth of its slots, or of its
/// waiting room, free — connections that are not making progress (still silent or in their
/// handshake after `PRESSURE_GRACE`, or idle between requests) give their place to the
/// clients waiting in the backlog. Read from the semaphores themselves, so it is never
/// stale.
pub(super) struct Gauge {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    low: usize,
}

impl Gauge {
    pub(super) fn new(slots: Arc<Semaphore>, waiting: Arc<Semaphore>, low: usize) -> Self {
        Self {
            slots,
            waiting,
            low,
        }
    }

    pub(super) fn pressed(&self) -> bool {
        self.slots.available_permits() < self.low || self.waiting.available_permits() < self.low
    }
}

/// Under pressure, how long a handshake may take before it gives way.
pub(super) const PRESSURE_GRACE: Duration = Duration::from_millis(500);

/// What a connection holds while it lives: its listener slot and its place in the
/// per-address count.
pub(super) type Slot = Arc<(
    tokio::sync::OwnedSemaphorePermit,
    super::admission::Admitted,
)>;

/// `work` within `timeout`, or, while `pressed()`, within `PRESSURE_GRACE`: a client that
/// has not got that far by then gives way. `None` when it did not finish in time.
pub(super) async fn in_time_unless_pressed<F: Future>(
    work: F,
    timeout: Duration,
    pressed: impl Fn() -> bool,
) -> Option<F::Output> {
    let started = Instant::now();
    tokio::pin!(work);
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        tokio::select! {
            done = work.as_mut() => return Some(done),
            () = tokio::time::sleep(left.min(PRESSURE_GRACE / 2)) => {
                if pressed() && started.elapsed() >= PRESSURE_GRACE {
                    return None;
                }
            }
        }
    }
}
