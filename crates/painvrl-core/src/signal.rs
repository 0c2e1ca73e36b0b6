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

/// A stop flag for one run (or a group of runs), for library users who train several models
/// in one process: hand a clone to a run (`painvrl::pipeline::Run::stop_handle`)
/// and call [`StopHandle::stop`] from any thread. A loop that sees it stops after its current
/// step as it does on a signal (checkpoint first); the process-wide flag stops every run too.
#[derive(Clone, Debug, Default)]
pub struct StopHandle(std::sync::Arc<AtomicBool>);

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the runs holding this handle to stop after their current step.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether this handle was stopped or a process-wide stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst) || stop_requested()
    }
}

/// Whether a loop holding `handle` (or none) should stop: the handle was stopped or a
/// process-wide stop was requested.
pub fn should_stop(handle: Option<&StopHandle>) -> bool {
    handle.map_or_else(stop_requested, StopHandle::is_stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_stops_its_clones_and_nothing_else() {
        let a = StopHandle::new();
        let a2 = a.clone();
        let b = StopHandle::new();
        assert!(!should_stop(Some(&a2)) && !should_stop(Some(&b)));
        a.stop();
        assert!(should_stop(Some(&a2)) && a2.is_stopped());
        assert!(!should_stop(Some(&b)) && !b.is_stopped());
    }
}
