//! A process-wide stop flag: signal handlers set it, training loops poll it between steps and
//! stop cleanly (checkpoint first).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running training loop to stop after its current step.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Clears the flag (for tests and for starting a new run in the same process).
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
}
