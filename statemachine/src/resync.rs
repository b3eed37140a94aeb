//! resyncflash: incremental refresh. The target becomes a point-in-time copy of the source as of
//! this entry; only tracks changed on either side since the last point in time go out of sync.

use crate::command::Pair;
use crate::error::CommandError;
use crate::establish::target_frozen;
use crate::event::Event;
use crate::pairs::find_existing;
use crate::revertible::{held_image, refuse_revertible, revertible_source};
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};

pub(crate) fn resyncflash<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    nocp: bool,
    tgtinhibit: bool,
    seqnum: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    let targets = find_existing(tx.state(), pairs)?;
    refuse_revertible(tx.state(), pairs, &targets)?;
    if let Some(error) = crate::cascade::chained(pairs, &crate::cascade::ends(tx.state(), &targets)) {
        return Err(error.into());
    }
    for (pair, target) in pairs.iter().zip(&targets) {
        let rel = tx.state().incoming(*target).expect("found");
        if !rel.recording {
            return Err(CommandError::NotRecording { pair: pair.to_string() }.into());
        }
        if rel.completing {
            return Err(CommandError::WithdrawInProgress { pair: pair.to_string() }.into());
        }
        if !rel.remote_pair && tx.state().is_mirror_secondary(*target) {
            // A target that became a mirror secondary (a failback): only the mirror writes it.
            return Err(CommandError::TargetIsMirrorSecondary {
                volume: pair.target.clone(),
                pair: pair.to_string(),
            }
            .into());
        }
        if let Some(error) = target_frozen(tx.state(), pair, *target)
            .or_else(|| held_image(tx.state(), *target))
            .or_else(|| revertible_source(tx.state(), rel.source))
            .or_else(|| crate::cascade::dependents_copying(tx.state(), pair, *target))
        {
            return Err(error.into());
        }
    }
    for (pair, target) in pairs.iter().zip(targets) {
        let now = tx.now();
        tx.bitmaps_replaced(target);
        let rel = tx.relationship_mut(target);
        let mut changed = std::mem::take(&mut rel.source_changes);
        changed |= std::mem::take(&mut rel.target_changes);
        rel.out_of_sync.mark_out_of_sync(&changed);
        let remote_pair = rel.remote_pair;
        rel.background_copy = !nocp;
        rel.target_write_inhibit = tgtinhibit;
        if let Some(seqnum) = seqnum {
            rel.seqnum = seqnum;
        }
        rel.synced_at = now;
        let tracks_to_copy = rel.out_of_sync.len();
        if !remote_pair {
            // A target that is a mirror primary: what the refresh changes goes to its secondary.
            crate::pprc::target_changed(tx, target, &changed);
        }
        crate::cascade::image_changed(tx, target, &changed);
        tx.push_event(Event::Resynced {
            source: pair.source.clone(),
            target: pair.target.clone(),
            tracks_to_copy,
        });
    }
    Ok(())
}
