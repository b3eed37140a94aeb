//! Revertible increments, the two-phase refresh Global Mirror forms its consistency groups with:
//! `setflashrevertible` takes a point in time as `resyncflash` does but keeps the previous one,
//! `commitflash` keeps the new one, `revertflash` throws it away and the target holds the
//! previous point in time again.
//!
//! While an increment is revertible, hosts write neither the source nor the target (refused
//! with `revertible-write-inhibited`, EPERM over NBD) and the relationship's background copy
//! waits. So nothing physical changes until the commit or the revert: the increment only put the
//! changed tracks out of sync (the target reads them from the source), the target still stores
//! their previous image, and a revert only puts them back in sync. Both ends cost one bitmap
//! operation, whatever the increment's size.

use crate::command::Pair;
use crate::error::CommandError;
use crate::event::Event;
use crate::pairs::{check_seqnum, find_existing};
use crate::relationship::{Relationship, Revertible};
use crate::state::State;
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};

/// `setflashrevertible`: each relationship takes a revertible increment; all or nothing.
pub(crate) fn set_revertible<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    seqnum: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    let targets = find_existing(tx.state(), pairs)?;
    if let Some(error) = crate::cascade::chained(pairs, &crate::cascade::ends(tx.state(), &targets)) {
        return Err(error.into());
    }
    for (pair, target) in pairs.iter().zip(&targets) {
        let rel = tx.state().incoming(*target).expect("found");
        if let Some(error) = cannot_take_increment(tx.state(), pair, rel) {
            return Err(error.into());
        }
    }
    for (pair, target) in pairs.iter().zip(targets) {
        let now = tx.now();
        tx.bitmaps_replaced(target);
        let rel = tx.relationship_mut(target);
        let previous = Revertible {
            seqnum: rel.seqnum,
            synced_at: rel.synced_at,
            source_changes: std::mem::take(&mut rel.source_changes),
            target_changes: std::mem::take(&mut rel.target_changes),
        };
        let changed = previous.increment();
        rel.out_of_sync.mark_out_of_sync(&changed);
        rel.seqnum = seqnum.unwrap_or(rel.seqnum);
        rel.synced_at = now;
        rel.revertible = Some(previous);
        let seqnum = rel.seqnum;
        crate::cascade::image_changed(tx, target, &changed, false);
        tx.push_event(Event::IncrementTaken {
            source: pair.source.clone(),
            target: pair.target.clone(),
            seqnum,
            tracks: changed.len(),
        });
    }
    Ok(())
}

fn cannot_take_increment(state: &State, pair: &Pair, rel: &Relationship) -> Option<CommandError> {
    let pair_name = pair.to_string();
    let not_possible = |reason: String| CommandError::RevertibleNotPossible {
        pair: pair_name.clone(),
        reason,
    };
    let source = state.record(rel.source).expect("sources exist");
    if rel.revertible.is_some() {
        Some(CommandError::RelationshipRevertible { pair: pair_name })
    } else if !rel.recording {
        Some(CommandError::NotRecording {
            pair: pair_name,
            verb: "setflashrevertible".into(),
        })
    } else if rel.completing {
        Some(CommandError::WithdrawInProgress { pair: pair_name })
    } else if rel.remote_pair {
        Some(not_possible(
            "it is a Remote Pair FlashCopy (--pmir), whose increments could not be kept the same at both sites".into(),
        ))
    } else if let Some(volume) = [(rel.source, &pair.source), (rel.target, &pair.target)]
        .into_iter()
        .find(|(id, _)| state.is_mirror_secondary(*id))
        .map(|(_, name)| name)
    {
        Some(not_possible(format!(
            "\"{volume}\" is a Metro Mirror secondary, which the mirror writes"
        )))
    } else if source.volume.frozen_until.is_some() || !source.held_writes.is_empty() {
        Some(CommandError::SourceFrozen {
            source_name: pair.source.clone(),
        })
    } else {
        // The increment changes what the target reads, as a refresh does; so would a revert.
        crate::resync::refresh_refusal(state, pair, rel)
    }
}

/// `commitflash`: the increments become the relationships' points in time; all or nothing.
pub(crate) fn commit<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    seqnum: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    let targets = revertible_targets(tx.state(), pairs, seqnum)?;
    for (pair, target) in pairs.iter().zip(targets) {
        tx.bitmaps_replaced(target);
        let rel = tx.relationship_mut(target);
        rel.revertible = None;
        let seqnum = rel.seqnum;
        tx.push_event(Event::IncrementCommitted {
            source: pair.source.clone(),
            target: pair.target.clone(),
            seqnum,
        });
    }
    Ok(())
}

/// `revertflash`: the increments are thrown away and each target holds its previous point in
/// time again, with the change recording it had; all or nothing.
pub(crate) fn revert<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    seqnum: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    let targets = revertible_targets(tx.state(), pairs, seqnum)?;
    for (pair, target) in pairs.iter().zip(targets) {
        tx.bitmaps_replaced(target);
        let rel = tx.relationship_mut(target);
        let previous = rel.revertible.take().expect("checked");
        let increment = previous.increment();
        rel.out_of_sync.mark_in_sync(&increment);
        rel.seqnum = previous.seqnum;
        rel.synced_at = previous.synced_at;
        rel.source_changes = previous.source_changes;
        rel.target_changes = previous.target_changes;
        let seqnum = rel.seqnum;
        crate::cascade::image_changed(tx, target, &increment, false);
        tx.push_event(Event::IncrementReverted {
            source: pair.source.clone(),
            target: pair.target.clone(),
            seqnum,
            tracks: increment.len(),
        });
    }
    Ok(())
}

/// The targets of `pairs`, each a relationship with a revertible increment carrying `seqnum`
/// when one is given.
fn revertible_targets(state: &State, pairs: &[Pair], seqnum: Option<u32>) -> Result<Vec<VolumeId>, CommandError> {
    let targets = find_existing(state, pairs)?;
    check_seqnum(state, pairs, &targets, seqnum)?;
    for (pair, target) in pairs.iter().zip(&targets) {
        if state.incoming(*target).expect("found").revertible.is_none() {
            return Err(CommandError::NotRevertible { pair: pair.to_string() });
        }
    }
    Ok(targets)
}

/// Refuses a command that would change a relationship whose increment is revertible
/// (withdraw, refresh, reverse, background copy): it is committed or reverted first.
pub(crate) fn refuse_revertible(state: &State, pairs: &[Pair], targets: &[VolumeId]) -> Result<(), CommandError> {
    for (pair, target) in pairs.iter().zip(targets) {
        if state.incoming(*target).is_some_and(|r| r.revertible.is_some()) {
            return Err(CommandError::RelationshipRevertible { pair: pair.to_string() });
        }
    }
    Ok(())
}

/// Refuses a command that would change what `volume` reads as while it is in a relationship
/// whose increment is revertible: its image is held until the commit or the revert.
pub(crate) fn held_image(state: &State, volume: VolumeId) -> Option<CommandError> {
    state
        .revertible_of(volume)
        .map(|rel| CommandError::RelationshipRevertible {
            pair: state.pair_name(rel),
        })
}

/// Refuses a point in time of `source` (a relationship from it established or refreshed) while
/// it is the target of a revertible increment, which a revert would change underneath.
pub(crate) fn revertible_source(state: &State, source: VolumeId) -> Option<CommandError> {
    state
        .incoming(source)
        .filter(|r| r.revertible.is_some())
        .map(|rel| CommandError::RelationshipRevertible {
            pair: state.pair_name(rel),
        })
}

impl State {
    /// The revertible relationship that keeps hosts from writing `id` (as its source or its
    /// target), if any.
    pub(crate) fn revertible_of(&self, id: VolumeId) -> Option<&Relationship> {
        let record = self.record(id)?;
        record
            .incoming
            .iter()
            .chain(record.volume.targets.iter().filter_map(|t| self.incoming(*t)))
            .find(|r| r.revertible.is_some())
    }
}
