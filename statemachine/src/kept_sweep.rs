//! Dropping the kept tracks nobody reads any more, a bounded step at a time. When readers let
//! go of kept tracks in bulk (a withdrawal, a target's range zeroed), those no other
//! relationship reads are dropped in that apply while its budget of [`SWEEP_TRACKS`] lasts;
//! the rest stay stored and the source's sweep bookmark is set
//! ([`VolumeRecord::kept_sweep`](crate::VolumeRecord::kept_sweep)). The leader then proposes
//! [`Command::SweepKept`](crate::Command::SweepKept) steps until the bookmark clears, so no apply
//! drops, or looks at, an unbounded number of tracks however large the volume.

use crate::error::CommandError;
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};
use roaring::RoaringBitmap;

/// Kept tracks one apply drops, at most (16 MiB of 64 KiB tracks); a sweep step also looks up
/// at most twice as many stored tracks.
pub const SWEEP_TRACKS: u32 = 256;

/// One sweep step: from the bookmark on, drops up to `max_tracks` (at most [`SWEEP_TRACKS`])
/// stored kept tracks of `volume` that no relationship reads, skipping the runs some
/// relationship does read without looking them up. No bookmark (an earlier step finished) is
/// not an error: a step may be proposed twice.
pub(crate) fn sweep<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    max_tracks: u32,
) -> Result<(), Failure<R::Error>> {
    let max_tracks = max_tracks.clamp(1, SWEEP_TRACKS);
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
    let held = tx.state().kept_union(owner);
    let (mut dropped, mut lookups) = (0, 0);
    let next = loop {
        let Some(at) = first_absent(&held, from) else {
            break None;
        };
        if lookups == 2 * max_tracks {
            break Some(at);
        }
        lookups += 1;
        let Some(track) = tx.next_stored(owner.kept(), at)? else {
            break None;
        };
        if held.contains(track) {
            // Read by someone: the next turn skips its whole run.
            from = track;
            continue;
        }
        if dropped == max_tracks {
            break Some(track);
        }
        tx.zero(owner.kept(), track)?;
        dropped += 1;
        from = match track.checked_add(1) {
            Some(next) => next,
            None => break None,
        };
    };
    tx.record_mut(owner).kept_sweep = next;
    Ok(())
}

/// The lowest track at or after `from` that `set` does not hold (`None`: it holds all up to the
/// last track). A binary search on ranks, so a long run costs no more than a short one.
fn first_absent(set: &RoaringBitmap, from: u32) -> Option<u32> {
    if !set.contains(from) {
        return Some(from);
    }
    // Held below `from`; then [from, end] is all held iff the set holds end - from + 1 there.
    let below = set.rank(from) - 1;
    let all_held = |end: u32| set.rank(end) - below == u64::from(end - from) + 1;
    if all_held(u32::MAX) {
        return None;
    }
    let (mut lo, mut hi) = (from, u32::MAX - 1);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if all_held(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo + 1)
}

#[cfg(test)]
mod tests {
    use super::first_absent;
    use roaring::RoaringBitmap;

    #[test]
    fn the_first_track_a_set_does_not_hold() {
        let set: RoaringBitmap = [1, 2, 3, 7].into_iter().chain(100..200_000).collect();
        assert_eq!(first_absent(&set, 0), Some(0));
        assert_eq!(first_absent(&set, 1), Some(4));
        assert_eq!(first_absent(&set, 3), Some(4));
        assert_eq!(first_absent(&set, 7), Some(8));
        assert_eq!(first_absent(&set, 150), Some(200_000));
        assert_eq!(first_absent(&RoaringBitmap::new(), 5), Some(5));
        let to_the_end: RoaringBitmap = (u32::MAX - 10..=u32::MAX).collect();
        assert_eq!(first_absent(&to_the_end, u32::MAX - 3), None);
        let all_but_last: RoaringBitmap = (u32::MAX - 10..u32::MAX).collect();
        assert_eq!(first_absent(&all_but_last, u32::MAX - 3), Some(u32::MAX));
    }
}
