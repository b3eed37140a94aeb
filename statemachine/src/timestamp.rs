//! Leader-stamped wall-clock time. The state machine never reads a clock: the leader puts the
//! time into every command it proposes and every replica applies that same value.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as stamped by the leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus_millis(self, millis: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-24T20:31:02.123Z`.
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0)).to_string()
    }
}

/// What the leader stamps on an entry: its wall-clock time, and the term it leads in (so the
/// state's clock can tell one leader's clock from the next).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub time: Timestamp,
    pub term: u64,
}

impl From<Timestamp> for Stamp {
    /// A stamp within one term (tests and tools that model a single leader).
    fn from(time: Timestamp) -> Stamp {
        Stamp { time, term: 0 }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// A time a user typed that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time: write it in UTC as 2026-11-24T20:31:02Z (or 2026-11-24, 2026-11-24T20:31)")]
pub struct BadTime(pub String);

impl std::str::FromStr for Timestamp {
    type Err = BadTime;
    /// RFC 3339 in UTC (`Z` and fractions optional, `T` or a space), or a date, or minutes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let full = match text.len() {
            10 => format!("{text}T00:00:00Z"),
            16 => format!("{text}:00Z"),
            _ => text.to_string(),
        };
        let time = humantime::parse_rfc3339_weak(&full).map_err(|_| BadTime(s.to_string()))?;
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| BadTime(s.to_string()))?
            .as_millis();
        u64::try_from(millis).map(Timestamp).map_err(|_| BadTime(s.to_string()))
    }
}
