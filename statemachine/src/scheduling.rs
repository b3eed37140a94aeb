//! What the leader's background work asks the state: copy work left, the next automatic thaw,
//! held writes still to release, the clock an entry would see, whether a write is held.

use crate::state::State;
use crate::timestamp::{Stamp, Timestamp};

/// Background-copy work the leader should schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyWork {
    pub source: String,
    pub target: String,
    pub remaining: u64,
    /// MiB/s at most (`None`: as fast as the node allows).
    pub copy_rate: Option<u32>,
}

impl State {
    /// Relationships whose background copy has work left, for the leader's copy scheduler (a
    /// revertible increment's copy waits for its commit).
    pub fn copy_work(&self) -> Vec<CopyWork> {
        self.records
            .values()
            .filter_map(|r| r.incoming.as_ref())
            .filter(|rel| rel.background_copy && rel.revertible.is_none() && !rel.out_of_sync.is_empty())
            .map(|rel| CopyWork {
                source: self.name(rel.source).to_string(),
                target: self.name(rel.target).to_string(),
                remaining: rel.out_of_sync.len(),
                copy_rate: rel.copy_rate,
            })
            .collect()
    }

    /// Volumes with kept tracks left to sweep (see `kept_sweep.rs`), for the leader.
    pub fn kept_sweeps(&self) -> Vec<String> {
        self.records
            .values()
            .filter(|r| r.kept_sweep.is_some())
            .map(|r| r.volume.name.clone())
            .collect()
    }

    /// When the next automatic thaw is due, if any volume is frozen (on the state's clock).
    pub fn next_thaw(&self) -> Option<Timestamp> {
        self.thaw_queue.first().map(|(t, _)| *t)
    }

    /// Whether a thawed volume still has held writes to release (the leader proposes ticks).
    pub fn releasing_held_writes(&self) -> bool {
        !self.draining.is_empty()
    }

    /// What the state's clock would read for an entry the current term's leader stamps `time`.
    pub fn clock_at(&self, time: Timestamp) -> Timestamp {
        self.globals.advance_clock(Stamp {
            time,
            term: self.globals.stamp_term,
        })
    }

    /// Whether the tag's write is waiting in a freeze queue.
    pub fn is_held(&self, volume: &str, tag: u64) -> bool {
        self.volume_id(volume)
            .is_some_and(|id| self.records[&id].held_writes.contains_tag(tag))
    }
}
