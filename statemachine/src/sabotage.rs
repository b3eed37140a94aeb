//! Deliberately broken variants of the product, compiled in only with the `sabotage` feature
//! (never in a product build), so the simulation can show that its checkers catch each one
//! (`tests/sim/tests/sabotage.rs`). One variant is active at a time, per thread: the
//! simulation runs a whole cluster on its one thread.

use crate::bitmap::OutOfSync;
use crate::state::State;
use std::cell::Cell;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// A host write to a source overwrites a track its targets still share (no copy-on-write).
    SkipCopyOnWrite,
    /// A host write is acknowledged as soon as it is queued, before it is committed.
    AckBeforeCommit,
    /// A follower that installs a snapshot loses the relationships' out-of-sync bitmaps.
    SnapshotDropsBitmaps,
    /// A thaw releases the writes a freeze held newest first.
    ReleaseHeldOutOfOrder,
    /// One node (the one whose data directory is named [`APPLIES_TWICE_IN`]) applies every
    /// command twice. (Most are idempotent by design: a second establish or withdraw is
    /// refused, a write again is the same bytes; a write a freeze holds is held twice.)
    OneNodeAppliesTwice,
    /// The vote is saved without a sync (a power loss can take it back).
    VoteNotSynced,
    /// A target that lets go of kept tracks drops them even where another target still reads
    /// them (the old track shared by a source's targets freed by the first to go).
    KeptDroppedWhileRead,
}

/// The data directory's name of the node `OneNodeAppliesTwice` breaks (the simulation's node 2).
pub const APPLIES_TWICE_IN: &str = "n2";

impl Sabotage {
    pub const ALL: [Sabotage; 7] = [
        Sabotage::SkipCopyOnWrite,
        Sabotage::AckBeforeCommit,
        Sabotage::SnapshotDropsBitmaps,
        Sabotage::ReleaseHeldOutOfOrder,
        Sabotage::OneNodeAppliesTwice,
        Sabotage::VoteNotSynced,
        Sabotage::KeptDroppedWhileRead,
    ];
}

thread_local! {
    static ACTIVE: Cell<Option<Sabotage>> = const { Cell::new(None) };
}

/// Makes `variant` (or nothing) the broken behaviour on this thread.
pub fn set(variant: Option<Sabotage>) {
    ACTIVE.set(variant);
}

/// The broken behaviour on this thread, if any.
pub fn current() -> Option<Sabotage> {
    ACTIVE.get()
}

pub fn active(variant: Sabotage) -> bool {
    ACTIVE.get() == Some(variant)
}

impl State {
    /// `SnapshotDropsBitmaps`: every relationship forgets which tracks its target still shares.
    pub fn sabotage_drop_bitmaps(&mut self) {
        for record in self.records.values_mut() {
            if let Some(rel) = record.incoming.as_mut() {
                rel.out_of_sync = OutOfSync::from_set(rel.out_of_sync.tracks(), Default::default());
            }
        }
    }
}
