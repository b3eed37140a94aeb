//! Cascading FlashCopy (A→B, B→C): a target may be the source of other relationships and a
//! source a target. Reads of C's uncopied tracks resolve through B to A (`State::resolve_read`),
//! and a copy to a target copies what its source reads there (`Tx::copy_to_target`), so a host
//! write anywhere first gives each target that still shares the track the writer's current
//! image: a write to B copies to C what B reads (perhaps A's), a write to A copies to B, where
//! C then finds it.
//!
//! What cannot be kept so is refused: a cycle, and any command that would change what a volume
//! reads as (establish onto it, refresh, reverse, a revertible increment) or leave it incomplete
//! (withdrawing it early) while a relationship it is the source of still has tracks to copy,
//! since those tracks read its image.

use crate::command::Pair;
use crate::error::CommandError;
use crate::state::State;
use crate::track::VolumeId;

/// Refuses a command on `pair` that would change what `volume` reads as, or leave it
/// incomplete, while a relationship it is the source of still has tracks that read it.
pub(crate) fn dependents_copying(state: &State, pair: &Pair, volume: VolumeId) -> Option<CommandError> {
    let record = state.record(volume)?;
    record.volume.targets.iter().find_map(|t| {
        let rel = state.incoming(*t)?;
        (!rel.out_of_sync.is_empty()).then(|| CommandError::CascadeCopyRunning {
            pair: pair.to_string(),
            volume: state.name(volume).to_string(),
            relationship: state.pair_name(rel),
            remaining: rel.out_of_sync.len(),
        })
    })
}

/// Refuses `source`→`target` when the target is already up the source's cascade: a cycle,
/// whose reads would never resolve.
pub(crate) fn cycle(state: &State, pair: &Pair, source: VolumeId, target: VolumeId) -> Option<CommandError> {
    state
        .upstream(source)
        .any(|v| v == target)
        .then(|| CommandError::CascadeNotAllowed {
            pair: pair.to_string(),
            reason: format!(
                "\"{}\" is up the cascade of \"{}\" already: the relationship would make a cycle",
                pair.target, pair.source
            ),
        })
}
