//! resyncflash: incremental refresh. The target becomes a point-in-time copy of the source as of
//! this entry; only tracks changed on either side since the last point in time go out of sync.

use crate::command::Pair;
use crate::error::CommandError;
use crate::establish::target_frozen;
use crate::event::Event;
use crate::pairs::find_existing;
use crate::relationship::Relationship;
use crate::revertible::{held_image, refuse_revertible, revertible_source};
use crate::state::State;
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
            return Err(CommandError::NotRecording {
                pair: pair.to_string(),
                verb: "resyncflash".into(),
            }
            .into());
        }
        if rel.completing {
            return Err(CommandError::WithdrawInProgress { pair: pair.to_string() }.into());
        }
        if let Some(error) = refresh_refusal(tx.state(), pair, rel) {
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
        crate::cascade::image_changed(tx, target, &changed, remote_pair);
        tx.push_event(Event::Resynced {
            source: pair.source.clone(),
            target: pair.target.clone(),
            tracks_to_copy,
        });
    }
    Ok(())
}

/// Why the target of an existing relationship may not take a new point in time of its source
/// now (a refresh or a revertible increment): it became a mirror secondary, it is frozen, its
/// image is held by an increment or still read by a copy, or the source is an increment's target.
pub(crate) fn refresh_refusal(state: &State, pair: &Pair, rel: &Relationship) -> Option<CommandError> {
    if !rel.remote_pair && state.is_mirror_secondary(rel.target) {
        // A target that became a mirror secondary (a failback): only the mirror writes it.
        return Some(CommandError::TargetIsMirrorSecondary {
            volume: pair.target.clone(),
            pair: pair.to_string(),
        });
    }
    target_frozen(state, pair, rel.target)
        .or_else(|| held_image(state, rel.target))
        .or_else(|| revertible_source(state, rel.source))
        .or_else(|| crate::cascade::dependents_copying(state, pair, rel.target))
}
