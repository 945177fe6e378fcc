//! Which connection worker thread is running the code (`edge/workers.rs` starts them): what
//! the proxy keys its per-worker origin pools by, so a request never takes another core's
//! pool lock.

use std::cell::Cell;

thread_local! {
    /// Which worker this thread is (`None` off the workers).
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks this thread as connection worker `index` (once, when the worker starts).
pub fn enter(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

/// The index of the connection worker running this code, if any.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}
