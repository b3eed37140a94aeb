//! A volume record: everything the state keeps about one volume, and the unit of persistence
//! (an apply reports which records it touched and storage rewrites exactly those).

use crate::held_writes::HeldWrites;
use crate::mirror::MirrorPair;
use crate::relationship::Relationship;
use crate::volume::Volume;
use serde::{Deserialize, Serialize};

/// Everything the state keeps about one volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub volume: Volume,
    /// The relationship whose target this volume is (a target has exactly one source).
    pub incoming: Option<Relationship>,
    /// Host writes held by a freeze, in arrival order.
    pub held_writes: HeldWrites,
    /// Sum of the track hashes of this volume's stored content, kept tracks included.
    pub content_digest: u64,
    /// How many of its tracks are stored (the space it uses is this many tracks).
    pub stored_tracks: u64,
    /// How many old tracks it keeps for its targets to share ([`crate::VolumeId::kept`]), and
    /// their part of `content_digest`, so the store can be dropped at once.
    pub kept_tracks: u64,
    pub kept_digest: u64,
    /// Kept tracks from this one on may be read by no relationship any more: an apply that let
    /// go of more such tracks than [`crate::SWEEP_TRACKS`] leaves them to the leader's bounded
    /// sweep steps ([`crate::Command::SweepKept`]), so no one apply drops an unbounded number.
    pub kept_sweep: Option<u32>,
    /// The Metro Mirror pair it is in, at either end.
    pub mirror: Option<MirrorPair>,
}

impl VolumeRecord {
    /// Thawed, with held writes still to release.
    pub(crate) fn drains(&self) -> bool {
        self.volume.frozen_until.is_none() && !self.held_writes.is_empty()
    }
}
