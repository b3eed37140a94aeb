//! What an apply changed below the level of a volume record, so storage rewrites only that:
//! one block of a relationship bitmap, one held write. Without this, persisting a host write
//! would cost the size of the bitmaps (megabytes on a large volume mid-copy).

use crate::track::VolumeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Tracks per persisted bitmap block (one roaring container).
pub const BITMAP_BLOCK_TRACKS: u32 = 1 << 16;

/// The bitmaps of a relationship (stored under its target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BitmapKind {
    OutOfSync = 0,
    SourceChanges = 1,
    TargetChanges = 2,
    /// A revertible increment's previous change recording (`Revertible`).
    PreviousSourceChanges = 3,
    PreviousTargetChanges = 4,
    /// Out-of-sync tracks kept once for several targets (`Relationship::kept`).
    Kept = 5,
}

impl BitmapKind {
    pub const ALL: [BitmapKind; 6] = [
        BitmapKind::OutOfSync,
        BitmapKind::SourceChanges,
        BitmapKind::TargetChanges,
        BitmapKind::PreviousSourceChanges,
        BitmapKind::PreviousTargetChanges,
        BitmapKind::Kept,
    ];
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetailChanges {
    /// One block (`track / BITMAP_BLOCK_TRACKS`) of a relationship bitmap changed.
    pub bitmap_blocks: BTreeSet<(VolumeId, BitmapKind, u32)>,
    /// Every bitmap of the relationship targeting this volume was replaced (or removed).
    pub bitmaps_replaced: BTreeSet<VolumeId>,
    /// Held writes appended at the back of a volume's queue: (volume, seq).
    pub held_pushed: Vec<(VolumeId, u64)>,
    /// The front of a volume's held-write queue was released (a thaw), through this seq.
    pub held_released: BTreeMap<VolumeId, u64>,
}
