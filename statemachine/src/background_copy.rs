//! The background-copy step: copy up to N out-of-sync tracks of one relationship, lowest first.
//! The leader proposes these; bounding N keeps each apply short. Tracks stored on neither side
//! (thin volumes) are brought in sync in bulk, up to `MAX_SKIPPED_TRACKS` per step.

use crate::command::Pair;
use crate::error::CommandError;
use crate::event::Event;
use crate::pairs::find_existing;
use crate::revertible::refuse_revertible;
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};

/// Tracks one step may bring in sync without copying anything: 2^20 (64 GiB of unwritten space),
/// a few 8 KiB bitmap blocks to persist.
pub const MAX_SKIPPED_TRACKS: u32 = 1 << 20;
/// Skipped ranges one step may take: bounds the seeks when written and unwritten tracks alternate.
const MAX_SKIPPED_RANGES: u32 = 1024;

pub(crate) fn copy_step<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    source: &str,
    target: &str,
    max_tracks: u32,
) -> Result<(), Failure<R::Error>> {
    let pair = Pair::new(source, target);
    let target_id = find_existing(tx.state(), std::slice::from_ref(&pair))?[0];
    // A step proposed before the increment was taken: it waits for the commit or the revert.
    refuse_revertible(tx.state(), std::slice::from_ref(&pair), &[target_id])?;
    let rel = tx.state().incoming(target_id).expect("found");
    if !rel.background_copy {
        return Err(CommandError::BackgroundCopyOff { pair: pair.to_string() }.into());
    }
    let (source_id, total) = (rel.source, rel.out_of_sync.tracks());
    let (mut tracks, mut data_tracks, mut skipped, mut ranges) = (0u64, 0u32, 0u32, 0u32);
    let mut from = 0;
    while let Some(track) = tx
        .state()
        .incoming(target_id)
        .expect("found")
        .out_of_sync
        .first_from(from)
    {
        // Tracks never written on either side (nor up the source's cascade) and not kept copy
        // as nothing: mark them in sync in bulk.
        let kept = tx
            .state()
            .incoming(target_id)
            .expect("found")
            .kept
            .range(track..)
            .next();
        let stored = [
            tx.next_stored_upstream(source_id, track)?,
            tx.next_stored(target_id, track)?,
            kept,
        ];
        let next_data = stored.into_iter().flatten().min().unwrap_or(total);
        if next_data > track {
            let end = next_data.min(track.saturating_add(MAX_SKIPPED_TRACKS - skipped));
            tracks += tx.mark_range_copied(target_id, track..end)?;
            skipped += end - track;
            ranges += 1;
            from = end;
            if skipped >= MAX_SKIPPED_TRACKS || ranges >= MAX_SKIPPED_RANGES {
                break;
            }
            continue;
        }
        if data_tracks == max_tracks {
            break;
        }
        tx.copy_to_target(target_id, track)?;
        tracks += 1;
        data_tracks += 1;
        from = track + 1;
    }
    let remaining = tx.state().incoming(target_id).map_or(0, |r| r.out_of_sync.len());
    tx.push_event(Event::TracksCopied {
        source: source.to_string(),
        target: target.to_string(),
        tracks,
        data_tracks,
        remaining,
    });
    Ok(())
}
