//! The edge's background tasks: spawned under one tracker, cancelled together at shutdown
//! and waited for within its grace period. A module that runs tasks of its own is handed a
//! `Tasks`, never the edge.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where background tasks run, and the signal that stops them.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// Runs `task` until it ends or the edge shuts down, whichever comes first.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Resolves when the edge shuts down.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The shutdown signal, for tasks that stop on their own terms.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The tracker every task runs under (connections are tracked by it too).
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}
