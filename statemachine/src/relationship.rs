//! Relationships: one source, one target, a point in time, and the bitmaps that say where each
//! target track lives.

use crate::bitmap::OutOfSync;
use crate::timestamp::Timestamp;
use crate::track::VolumeId;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

/// Multiple-relationship FlashCopy: at most this many targets per source.
pub const MAX_TARGETS_PER_SOURCE: usize = 12;

/// A relationship's background copy rate, at most, in MiB/s (about 100 GiB/s: any disk).
pub const MAX_COPY_RATE: u32 = 100_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub source: VolumeId,
    pub target: VolumeId,
    pub seqnum: u32,
    pub persistent: bool,
    /// Change recording: `source_changes` and `target_changes` are kept.
    pub recording: bool,
    pub background_copy: bool,
    /// MiB/s of background copy at most (`None`: as fast as the node's `--copy-rate` allows).
    /// Raft state, so it holds through a leader change.
    pub copy_rate: Option<u32>,
    pub target_write_inhibit: bool,
    /// `rmflash --cp` in progress: withdraw when the copy completes.
    pub completing: bool,
    /// Remote Pair FlashCopy (`--pmir`): the same relationship exists between the mirror
    /// secondaries, and every command on it runs at both sites.
    pub remote_pair: bool,
    pub out_of_sync: OutOfSync,
    /// Out-of-sync tracks whose point-in-time content is not on the source any more but kept
    /// once in `kept_by`'s kept tracks ([`VolumeId::kept`]), shared with other targets that
    /// needed the same old track. A kept track reads from there until it is copied, written
    /// or the relationship ends; the last relationship to let go of a kept track drops it.
    pub kept: RoaringBitmap,
    /// The volume whose kept tracks `kept` names: the source, or, after a fast reverse, the
    /// new target (the old source, which kept them).
    pub kept_by: VolumeId,
    /// Tracks written on the source since the last point in time (only while recording).
    pub source_changes: RoaringBitmap,
    /// Tracks written on the target since the last point in time (only while recording).
    pub target_changes: RoaringBitmap,
    pub created_at: Timestamp,
    pub synced_at: Timestamp,
    /// An uncommitted increment (`setflashrevertible`) and the point in time it replaced.
    pub revertible: Option<Revertible>,
}

/// What a relationship was at its last committed point in time, kept while an increment is
/// revertible so `revertflash` can return to it. Nothing physical has to be kept: while an
/// increment is revertible hosts write neither volume and the background copy waits, so the
/// target still stores the previous image of every track the increment put out of sync (a
/// changed track is always in sync: the write that changed it copied or claimed it first), and
/// a revert puts those tracks back in sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revertible {
    pub seqnum: u32,
    pub synced_at: Timestamp,
    /// The change recording up to the increment: the tracks it put out of sync.
    pub source_changes: RoaringBitmap,
    pub target_changes: RoaringBitmap,
}

impl Revertible {
    /// The tracks the increment put out of sync.
    pub fn increment(&self) -> RoaringBitmap {
        &self.source_changes | &self.target_changes
    }
}

/// The state `lsflash` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationshipState {
    Copying,
    Nocopy,
    Copied,
    Completing,
}

impl RelationshipState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipState::Copying => "copying",
            RelationshipState::Nocopy => "nocopy",
            RelationshipState::Copied => "copied",
            RelationshipState::Completing => "completing",
        }
    }
}

impl Relationship {
    pub fn state(&self) -> RelationshipState {
        if self.completing {
            RelationshipState::Completing
        } else if self.out_of_sync.is_empty() {
            RelationshipState::Copied
        } else if self.background_copy {
            RelationshipState::Copying
        } else {
            RelationshipState::Nocopy
        }
    }

    /// The six switches, in one fixed order: persistent, recording, background copy, target
    /// write inhibit, completing, remote pair. Storage and the digest both use this order.
    pub fn flags(&self) -> [bool; 6] {
        [
            self.persistent,
            self.recording,
            self.background_copy,
            self.target_write_inhibit,
            self.completing,
            self.remote_pair,
        ]
    }

    /// Whether a copy that just emptied the out-of-sync bitmap ends the relationship.
    pub(crate) fn ends_when_copied(&self) -> bool {
        !self.persistent || self.completing
    }

    pub(crate) fn kind(&self) -> &'static str {
        if self.persistent {
            "persistent"
        } else {
            "non-persistent"
        }
    }
}
