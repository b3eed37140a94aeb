//! A warning that repeats at most once a second, with how many were held back: what a node
//! logs about clients it refuses, so a flood of bad requests cannot flood the log too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Throttled {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttled {
    pub const fn new() -> Self {
        Throttled {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Runs `log` with the count of warnings held back since the last one, or holds it back.
    pub fn warn(&self, log: impl FnOnce(u64)) {
        let mut last = self.last.lock().expect("not poisoned");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        log(self.suppressed.swap(0, Ordering::Relaxed));
    }
}

impl Default for Throttled {
    fn default() -> Self {
        Self::new()
    }
}
