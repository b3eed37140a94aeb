//! Dropping the kept tracks nobody reads any more, a bounded step at a time. A withdrawal lets
//! go of every kept track its relationship read; those no other relationship reads are dropped
//! in its own apply when they are few, and otherwise left stored with the source's sweep
//! bookmark set ([`VolumeRecord::kept_sweep`](crate::VolumeRecord::kept_sweep)): the leader then
//! proposes [`Command::SweepKept`](crate::Command::SweepKept) steps until the bookmark clears, so
//! no apply looks at or drops more than [`SWEEP_TRACKS`] tracks, however large the volume.

use crate::error::CommandError;
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};

/// Kept tracks one apply lets go of or sweeps, at most (16 MiB of 64 KiB tracks).
pub const SWEEP_TRACKS: u32 = 256;

/// One sweep step: drops up to `max_tracks` stored kept tracks of `volume` that no relationship
/// reads, looking at no more stored tracks than that, from the bookmark on. Nothing to do (no
/// bookmark: an earlier step finished) is not an error: steps may be proposed twice.
pub(crate) fn sweep<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    max_tracks: u32,
) -> Result<(), Failure<R::Error>> {
    let owner = tx
        .state()
        .volume_id(volume)
        .ok_or_else(|| CommandError::VolumeNotFound { name: volume.into() })?;
    let Some(mut from) = tx.state().record(owner).expect("found").kept_sweep else {
        return Ok(());
    };
    if !tx.state().keeps_any(owner) {
        tx.drop_kept_store(owner);
        return Ok(());
    }
    let mut looked = 0;
    let next = loop {
        let Some(track) = tx.next_stored(owner.kept(), from)? else {
            break None;
        };
        if looked == max_tracks {
            break Some(track);
        }
        if !tx.state().holds_kept(owner, track) {
            tx.zero(owner.kept(), track)?;
        }
        looked += 1;
        from = match track.checked_add(1) {
            Some(next) => next,
            None => break None,
        };
    };
    tx.record_mut(owner).kept_sweep = next;
    Ok(())
}
