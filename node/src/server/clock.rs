//! The wall clock the leader stamps commands with (freeze deadlines, relationship times, mirror
//! generations). Production reads the system's; a simulation passes its own, and can run one
//! member's ahead or behind. Intervals and deadlines use tokio's clock (`tokio::time::Instant`),
//! which the runtime owns and a simulation already controls.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
