//! State-wide values that belong to no volume: the track size, the next volume id, and the
//! state's own clock, moved by the leaders' stamps (the state machine never reads a clock).

use crate::timestamp::{Stamp, Timestamp};
use serde::{Deserialize, Serialize};

/// State-wide values that are not part of any volume record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Globals {
    pub track_size: u32,
    pub next_volume_id: u64,
    /// The state's clock: the time of the last applied entry. It never goes backwards and it
    /// moves at the rate of the leaders' clocks, whatever their offsets (see `advance_clock`).
    pub last_time: Timestamp,
    /// The latest stamp of the current term's leader.
    pub last_stamp: Timestamp,
    /// The term of the last applied entry's leader.
    pub stamp_term: u64,
}

impl Globals {
    /// The clock for an entry stamped `stamp`. Within a term it moves by as much as the leader's
    /// clock moved past its latest stamp (entries may reach the log slightly out of stamp
    /// order: that moves nothing). A new term's leader moves it to its own time if that is
    /// later, else leaves it. So it never goes backwards, a leader whose clock ran ahead moves
    /// it ahead once while later leaders still move it at their rate — a timer on it (the
    /// automatic thaw) fires after its duration — and it drifts from the leaders' clocks by at
    /// most their largest offset.
    pub(crate) fn advance_clock(&self, stamp: Stamp) -> Timestamp {
        if stamp.term == self.stamp_term {
            Timestamp(self.last_time.0 + stamp.time.0.saturating_sub(self.last_stamp.0))
        } else {
            self.last_time.max(stamp.time)
        }
    }

    /// Applies `stamp` to the clock; returns the entry's time.
    pub(crate) fn tick_clock(&mut self, stamp: Stamp) -> Timestamp {
        let now = self.advance_clock(stamp);
        if stamp.term == self.stamp_term {
            self.last_stamp = self.last_stamp.max(stamp.time);
        } else {
            self.last_stamp = stamp.time;
            self.stamp_term = stamp.term;
        }
        self.last_time = now;
        now
    }
}
