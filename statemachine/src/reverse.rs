//! reverseflash: restore. The relationship turns around (the old target becomes the source) and
//! the old source becomes a point-in-time copy of the old target as of this entry. Only tracks
//! where the two diverged are copied back.

use crate::bitmap::OutOfSync;
use crate::command::{MirrorTarget, Pair};
use crate::error::CommandError;
use crate::event::Event;
use crate::pairs::find_existing;
use crate::relationship::{Relationship, MAX_TARGETS_PER_SOURCE};
use crate::revertible::{held_image, refuse_revertible};
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};
use roaring::RoaringBitmap;

pub(crate) fn reverseflash<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    fast: bool,
    seqnum: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    let targets = find_existing(tx.state(), pairs)?;
    refuse_revertible(tx.state(), pairs, &targets)?;
    for (pair, target) in pairs.iter().zip(&targets) {
        let rel = tx.state().incoming(*target).expect("found");
        if rel.completing {
            return Err(CommandError::WithdrawInProgress { pair: pair.to_string() }.into());
        }
        if !fast && !rel.recording {
            return Err(CommandError::NotRecording {
                pair: pair.to_string(),
                verb: "reverseflash".into(),
            }
            .into());
        }
        if !fast && !rel.out_of_sync.is_empty() {
            return Err(CommandError::CopyNotFinished {
                pair: pair.to_string(),
                remaining: rel.out_of_sync.len(),
            }
            .into());
        }
        // The old source becomes the target: a mirror primary gets what changes on it copied
        // to its secondary (a remote pair runs the same reverse at both sites).
        let reversed = Pair::new(pair.target.clone(), pair.source.clone());
        let how = match (rel.remote_pair, tx.state().is_mirror_secondary(*target)) {
            (true, true) => MirrorTarget::RemotePairSecondary,
            (true, false) => MirrorTarget::RemotePair,
            (false, _) => MirrorTarget::Copy,
        };
        if let Some(error) = crate::establish::mirror_target(tx.state(), *target, rel.source, &reversed, how) {
            return Err(error.into());
        }
        let source = tx.state().record(rel.source).expect("sources exist");
        // Writes a freeze held would land on top of the restored image.
        if source.volume.frozen_until.is_some() || !source.held_writes.is_empty() {
            return Err(CommandError::SourceFrozen {
                source_name: pair.source.clone(),
            }
            .into());
        }
        if let Some(upstream) = &source.incoming {
            return Err(CommandError::CascadeNotAllowed {
                pair: pair.to_string(),
                reason: format!(
                    "\"{}\" is the target of {} and cannot have a second source; withdraw that relationship first",
                    pair.source,
                    tx.state().pair_name(upstream)
                ),
            }
            .into());
        }
        // The old source's image changes; the old target becomes a source, and with a fast
        // reverse its uncopied tracks are stale.
        if let Some(error) = held_image(tx.state(), rel.source)
            .or_else(|| held_image(tx.state(), *target))
            .or_else(|| crate::cascade::dependents_copying(tx.state(), pair, *target))
        {
            return Err(error.into());
        }
        let old_targets = tx.state().record(*target).expect("found").volume.targets.len();
        if old_targets >= MAX_TARGETS_PER_SOURCE {
            return Err(CommandError::TooManyTargets {
                source_name: pair.target.clone(),
                existing: old_targets,
                max: MAX_TARGETS_PER_SOURCE,
            }
            .into());
        }
        if let Some(other) = source.volume.targets.iter().find(|t| *t != target) {
            return Err(CommandError::CascadeNotAllowed {
                pair: pair.to_string(),
                reason: format!(
                    "\"{}\" is also the source of {}:{} and cannot become a target; withdraw that relationship first",
                    pair.source,
                    pair.source,
                    tx.state().name(*other)
                ),
            }
            .into());
        }
    }

    for (pair, old_target) in pairs.iter().zip(targets) {
        let old = tx.record_mut(old_target).incoming.take().expect("found");
        let old_source = old.source;
        tx.bitmaps_replaced(old_target);
        tx.bitmaps_replaced(old_source);
        // Tracks where the two volumes may differ. Tracks still out of sync are identical by
        // construction (the target reads them from the source), so they never diverge.
        let diverged = if old.recording {
            let mut changed = old.source_changes.clone();
            changed |= &old.target_changes;
            OutOfSync::from_set(old.out_of_sync.tracks(), changed)
        } else {
            // Kept tracks hold the point in time, not the source's bytes: they diverged too.
            let mut diverged = old.out_of_sync.complement();
            diverged.mark_out_of_sync(&old.kept);
            diverged
        };
        let tracks_to_copy = diverged.len();
        if !old.remote_pair {
            let changed = diverged.to_set();
            crate::pprc::target_changed(tx, old_source, &changed);
        }
        let reversed = Relationship {
            source: old_target,
            target: old_source,
            seqnum: seqnum.unwrap_or(old.seqnum),
            persistent: old.persistent && !fast,
            recording: old.recording && !fast,
            background_copy: true,
            copy_rate: old.copy_rate,
            target_write_inhibit: false,
            completing: false,
            remote_pair: old.remote_pair,
            out_of_sync: diverged,
            // The old source keeps them; it now reads them as the new target until copied back.
            kept: old.kept.clone(),
            kept_by: old.kept_by,
            source_changes: RoaringBitmap::new(),
            target_changes: RoaringBitmap::new(),
            created_at: old.created_at,
            synced_at: tx.now(),
            revertible: None,
        };
        let empty = reversed.out_of_sync.is_empty();
        tx.record_mut(old_source).volume.targets.remove(&old_target);
        let new_target = tx.record_mut(old_source);
        new_target.incoming = Some(reversed);
        new_target.volume.incomplete = false;
        let new_source = tx.record_mut(old_target);
        new_source.volume.targets.insert(old_source);
        if fast {
            // Its tracks that were never copied hold stale data: not a valid image any more.
            new_source.volume.incomplete = true;
            if !old.out_of_sync.is_empty() {
                // As a withdrawal leaving it incomplete: its mirror secondary gets those
                // tracks, and its recording targets count them as changed.
                crate::cascade::image_changed(tx, old_target, &old.out_of_sync.to_set(), old.remote_pair);
            }
        }
        tx.push_event(Event::Reversed {
            source: pair.target.clone(),
            target: pair.source.clone(),
            fast,
            tracks_to_copy,
        });
        if empty && fast {
            // Nothing to copy back: a fast-reversed relationship ends at once.
            crate::withdraw::withdraw(tx, old_source, true)?;
        }
    }
    Ok(())
}
