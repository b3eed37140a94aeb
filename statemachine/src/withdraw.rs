//! rmflash: withdraw relationships, now or (with --cp) when the background copy completes.

use crate::command::Pair;
use crate::event::Event;
use crate::pairs::{check_seqnum, find_existing};
use crate::revertible::refuse_revertible;
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};

pub(crate) fn rmflash<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    cp: bool,
    seqnum: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    let targets = find_existing(tx.state(), pairs)?;
    check_seqnum(tx.state(), pairs, &targets, seqnum)?;
    refuse_revertible(tx.state(), pairs, &targets)?;
    for (pair, target) in pairs.iter().zip(&targets) {
        // Withdrawn now, a target with tracks still to copy is incomplete: nothing may read it.
        let incomplete = !tx.state().incoming(*target).expect("found").out_of_sync.is_empty();
        if let Some(error) = (incomplete && !cp)
            .then(|| {
                crate::revertible::held_image(tx.state(), *target)
                    .or_else(|| crate::cascade::dependents_copying(tx.state(), pair, *target))
            })
            .flatten()
        {
            return Err(error.into());
        }
    }
    for (pair, target) in pairs.iter().zip(targets) {
        let rel = tx.relationship_mut(target);
        if cp && !rel.out_of_sync.is_empty() {
            rel.completing = true;
            rel.background_copy = true;
            tx.push_event(Event::WithdrawScheduled {
                source: pair.source.clone(),
                target: pair.target.clone(),
            });
        } else {
            withdraw(tx, target, false)?;
        }
    }
    Ok(())
}

/// Ends the relationship whose target is `target`. A target with tracks still out of sync
/// becomes `incomplete`.
pub(crate) fn withdraw<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    target: VolumeId,
    automatic: bool,
) -> Result<(), Failure<R::Error>> {
    tx.bitmaps_replaced(target);
    // Kept tracks it still reads are out of sync: an incomplete target reads none of them.
    tx.let_go_all(target)?;
    let record = tx.record_mut(target);
    let rel = record.incoming.take().expect("withdraw of an existing relationship");
    let incomplete = !rel.out_of_sync.is_empty();
    if incomplete {
        record.volume.incomplete = true;
    }
    tx.record_mut(rel.source).volume.targets.remove(&target);
    if incomplete {
        // Its uncopied tracks no longer read the source's: a mirror secondary must get them,
        // and its own recording targets count them as changed.
        crate::cascade::image_changed(tx, target, &rel.out_of_sync.to_set(), rel.remote_pair);
    }
    tx.push_event(Event::Withdrawn {
        source: tx.name(rel.source),
        target: tx.name(target),
        incomplete,
        automatic,
    });
    Ok(())
}
