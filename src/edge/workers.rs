//! The threads that serve client connections: `server.workers` threads (one per core by
//! default), each running its own single-threaded tokio runtime and one accept loop per
//! listener, all on the same socket. A connection is accepted by the worker that serves it,
//! and everything it needs — TLS, HTTP, the origin connections it uses, its timers — is
//! registered with that thread's reactor and polled on that thread: no work-stealing, no
//! wake-up that crosses cores, no lock that two cores take for one request. The admin API
//! and the certificate work stay on the main (multi-threaded) runtime.

use std::future::Future;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The connection workers; dropping this stops their threads (their runtimes drop whatever
/// tasks are left).
pub(crate) struct Workers {
    handles: Vec<Handle>,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `n` worker threads (at least one).
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("onehttps-worker-{index}"))
                .spawn(move || {
                    crate::worker::enter(index);
                    runtime.block_on(stop.cancelled());
                })?;
        }
        Ok(Self { handles, stop })
    }

    /// How many workers there are.
    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    /// Runs `task` on worker `index` (modulo their number).
    pub(crate) fn spawn_on<F>(&self, index: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handles[index % self.handles.len()].spawn(task));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::current;

    #[test]
    fn tasks_run_on_the_worker_asked_for() {
        let workers = Workers::start(2).expect("start workers");
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..4 {
            let tx = tx.clone();
            workers.spawn_on(i, async move {
                let _ = tx.send(current());
            });
        }
        let mut seen: Vec<Option<usize>> = (0..4)
            .map(|_| {
                rx.recv_timeout(std::time::Duration::from_secs(5))
                    .expect("task ran")
            })
            .collect();
        seen.sort();
        assert_eq!(seen, vec![Some(0), Some(0), Some(1), Some(1)]);
        assert_eq!(current(), None, "the test thread is no worker");
    }
}
