//! Host writes (and write-zeroes/trim): copy-on-write to every target still sharing a track,
//! bring a target's track home before overwriting part of it, record changes, then write.
//! Cost is O(tracks written × relationships of the volume), never O(volume size); zeroing
//! whole tracks costs what is stored in the range, not its length (a whole-volume TRIM is one
//! command).

use crate::changes::BitmapKind;
use crate::command::{HostWrite, WriteData};
use crate::error::CommandError;
use crate::event::Event;
use crate::state::State;
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};
use bytes::Bytes;
use std::ops::Range;

/// The most bytes one write command may carry, and zero on a volume that is a source (whose
/// targets may need its tracks copied first): keeps every apply short.
pub const MAX_WRITE_BYTES: u64 = 32 << 20;

pub(crate) fn write<R: TrackReader>(tx: &mut Tx<'_, R>, write: &HostWrite) -> Result<(), Failure<R::Error>> {
    let zeroing = matches!(write.data, WriteData::Zeroes(_));
    if write.data.len() > MAX_WRITE_BYTES && !zeroing {
        return Err(CommandError::WriteTooLarge {
            length: write.data.len(),
            max: MAX_WRITE_BYTES,
        }
        .into());
    }
    if matches!(write.data, WriteData::Summary { .. }) && !tx.replaying() {
        return Err(CommandError::WriteWithoutData {
            volume: write.volume.clone(),
        }
        .into());
    }
    let id = tx
        .state()
        .check_range(&write.volume, write.opened, write.offset, write.data.len())?;
    if let Some(error) = refusal(tx.state(), id, write) {
        return Err(error.into());
    }
    let record = tx.state().record(id).expect("checked");
    // Held while frozen, and after a thaw until the writes held before it are all released.
    if record.volume.frozen_until.is_some() || !record.held_writes.is_empty() {
        let seq = tx.record_mut(id).held_writes.push(write.clone());
        tx.note_held_pushed(id, seq);
        tx.push_event(Event::WriteHeld {
            volume: write.volume.clone(),
            offset: write.offset,
            length: write.data.len(),
            tag: write.tag,
        });
        return Ok(());
    }
    write_now(tx, id, write)
}

/// Why a host write to a volume that exists, in range, may not be applied now: the volume is a
/// Metro Mirror secondary, the target of a `--tgtinhibit` relationship, in a relationship whose
/// increment is revertible, or the write is a zeroing too long for a source. The one rule for a
/// new write and for a held write released by a thaw (the volume may have changed in between).
pub(crate) fn refusal(state: &State, id: VolumeId, write: &HostWrite) -> Option<CommandError> {
    let volume = || write.volume.clone();
    if state.is_mirror_secondary(id) {
        return Some(CommandError::MirrorSecondary { volume: volume() });
    }
    if let Some(rel) = state.incoming(id).filter(|r| r.target_write_inhibit) {
        return Some(CommandError::TargetWriteInhibited {
            volume: volume(),
            relationship: state.pair_name(rel),
        });
    }
    if let Some(rel) = state.revertible_of(id) {
        return Some(CommandError::RevertibleWriteInhibited {
            volume: volume(),
            relationship: state.pair_name(rel),
        });
    }
    unbounded_zeroing(state, id, write)
}

/// A zeroing longer than one write command, on a volume that is a source: its targets may need
/// every stored track of the range copied first, so it is refused (also when a freeze held it
/// and the volume became a source since).
fn unbounded_zeroing(state: &State, id: VolumeId, write: &HostWrite) -> Option<CommandError> {
    let zeroing = matches!(write.data, WriteData::Zeroes(_));
    let copies = state.zeroing_copies(id) == Some(true);
    (zeroing && write.data.len() > MAX_WRITE_BYTES && copies).then(|| CommandError::ZeroingTooLarge {
        volume: write.volume.clone(),
        length: write.data.len(),
        max: MAX_WRITE_BYTES,
    })
}

/// Applies a group-committed batch in order. The data the batch carries is bounded like one
/// write (each zeroing is bounded on its own); a write in it that is refused is reported and
/// changes nothing, the others go on.
pub(crate) fn write_batch<R: TrackReader>(tx: &mut Tx<'_, R>, writes: &[HostWrite]) -> Result<(), Failure<R::Error>> {
    let total = writes
        .iter()
        .filter(|w| !matches!(w.data, WriteData::Zeroes(_)))
        .map(|w| w.data.len())
        .fold(0u64, u64::saturating_add);
    if total > MAX_WRITE_BYTES {
        return Err(CommandError::WriteTooLarge {
            length: total,
            max: MAX_WRITE_BYTES,
        }
        .into());
    }
    for w in writes {
        match write(tx, w) {
            Ok(()) => {}
            Err(Failure::Refused(error)) => tx.push_event(Event::WriteRefused {
                volume: w.volume.clone(),
                offset: w.offset,
                length: w.data.len(),
                tag: w.tag,
                error,
            }),
            Err(storage) => return Err(storage),
        }
    }
    Ok(())
}

/// Applies a write that is allowed and not held.
pub(crate) fn write_now<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    id: VolumeId,
    write: &HostWrite,
) -> Result<(), Failure<R::Error>> {
    let track_size = u64::from(tx.state().track_size());
    let end = write.offset + write.data.len();
    let whole_tracks = write.offset.div_ceil(track_size)..end / track_size;
    if matches!(write.data, WriteData::Zeroes(_)) && !whole_tracks.is_empty() {
        let (first, last) = (whole_tracks.start * track_size, whole_tracks.end * track_size);
        write_range(tx, id, write, write.offset..first)?;
        zero_tracks(tx, id, whole_tracks.start as u32..whole_tracks.end as u32)?;
        write_range(tx, id, write, last..end)?;
    } else {
        write_range(tx, id, write, write.offset..end)?;
    }
    crate::pprc::note_write(tx, id, write);
    tx.push_event(Event::Written {
        volume: write.volume.clone(),
        offset: write.offset,
        length: write.data.len(),
        tag: write.tag,
    });
    Ok(())
}

/// Applies the part `range` (volume byte offsets) of a write, track by track.
fn write_range<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    id: VolumeId,
    write: &HostWrite,
    range: Range<u64>,
) -> Result<(), Failure<R::Error>> {
    let track_size = u64::from(tx.state().track_size());
    let record = tx.state().record(id).expect("checked");
    let targets: Vec<VolumeId> = record.volume.targets.iter().copied().collect();
    let is_target = record.incoming.is_some();

    let Range { start: mut pos, end } = range;
    while pos < end {
        let track = (pos / track_size) as u32;
        let within = (pos % track_size) as usize;
        let take = (track_size - within as u64).min(end - pos) as usize;

        // As a source: every target still sharing this track gets the old content first.
        if !targets.is_empty() {
            tx.preserve_for_targets(id, track)?;
        }
        for &target in &targets {
            if tx
                .state()
                .incoming(target)
                .expect("targets have relationships")
                .recording
            {
                tx.note_change(target, BitmapKind::SourceChanges, track);
            }
        }

        // As a target: the track stops living on the source; a partial write keeps the rest of
        // what it read there (the source's track, one up the cascade, or a kept one). It is
        // marked copied once stored: that may drop the kept track it reads from.
        let mut base = id;
        if is_target {
            let rel = tx.state().incoming(id).expect("checked");
            let (recording, shared) = (rel.recording, rel.out_of_sync.contains(track));
            if recording {
                tx.note_change(id, BitmapKind::TargetChanges, track);
            }
            if shared {
                base = tx.state().resolve_read(id, track);
            }
        }

        let whole = take as u64 == track_size;
        let from = (pos - write.offset) as usize;
        // The new bytes of this piece; `None` for a journal replay's `Summary` (bytes unknown,
        // only that the track is stored).
        let bytes = match &write.data {
            WriteData::Bytes(bytes) => Some(bytes.slice(from..from + take)),
            WriteData::Zeroes(_) | WriteData::Summary { .. } => None,
        };
        let zeroes = matches!(write.data, WriteData::Zeroes(_));
        if whole {
            // A whole track needs nothing of what was there: no read.
            if zeroes {
                tx.zero(id, track)?;
            } else {
                // The request's bytes themselves, not a copy; a replay's summary stores zeros.
                let data = bytes.unwrap_or_else(|| Bytes::from(vec![0; take]));
                tx.store_track(id, track, data)?;
            }
        } else if base != id {
            // The track comes home from the source whole, with the new bytes on top.
            match tx.stored_sums(base, track)? {
                None if zeroes => tx.zero(id, track)?,
                stored => {
                    let mut data = vec![0; track_size as usize];
                    if stored.is_some() {
                        tx.read_into(base, track, 0, &mut data)?;
                    }
                    put(&mut data[within..within + take], bytes.as_deref());
                    tx.store_track(id, track, data.into())?;
                }
            }
        } else if !zeroes || tx.stored_sums(id, track)?.is_some() {
            // Only the blocks the write touches are read (partial blocks at either end) and
            // stored. Zeroing part of a track stored nowhere leaves it unstored.
            let bs = tx.block_size();
            let first = within / bs;
            let end_block = (within + take).div_ceil(bs);
            let mut data = vec![0; (end_block - first) * bs];
            let head = !within.is_multiple_of(bs);
            if head {
                tx.read_into(id, track, first * bs, &mut data[..bs])?;
            }
            // (One block covered in part at both ends is read once.)
            let tail = !(within + take).is_multiple_of(bs);
            if tail && !(head && end_block - first == 1) {
                let last = data.len() - bs;
                tx.read_into(id, track, (end_block - 1) * bs, &mut data[last..])?;
            }
            let start = within - first * bs;
            put(&mut data[start..start + take], bytes.as_deref());
            tx.store_blocks(id, track, first as u32, data.into())?;
        }
        if base != id {
            tx.mark_copied(id, track)?;
        }
        pos += take as u64;
    }
    Ok(())
}

/// Zeroes whole tracks, with the effect `write_range` has track by track, in time proportional
/// to the tracks stored in the range on this volume and its targets, not to its length.
fn zero_tracks<R: TrackReader>(tx: &mut Tx<'_, R>, id: VolumeId, tracks: Range<u32>) -> Result<(), Failure<R::Error>> {
    let record = tx.state().record(id).expect("checked");
    let targets: Vec<VolumeId> = record.volume.targets.iter().copied().collect();
    let is_target = record.incoming.is_some();

    // As a source: a target still sharing a track this volume stores gets it first (what this
    // volume reads may be stored up its cascade too). A shared track stored on neither side
    // reads as zeros on both: it is in sync as it stands.
    if !targets.is_empty() {
        let mut next = next_stored_upstream(tx, id, tracks.start, &tracks)?;
        while let Some(track) = next {
            tx.preserve_for_targets(id, track)?;
            next = next_stored_upstream(tx, id, track + 1, &tracks)?;
        }
    }
    for target in targets {
        let shared = |tx: &Tx<'_, R>, track| {
            let rel = tx.state().incoming(target).expect("targets have relationships");
            rel.out_of_sync.contains(track) && !rel.kept.contains(track)
        };
        let mut next = next_stored(tx, target, tracks.start, &tracks)?;
        while let Some(track) = next {
            if shared(tx, track) {
                tx.zero(target, track)?;
            }
            next = next_stored(tx, target, track + 1, &tracks)?;
        }
        tx.mark_unkept_range_copied(target, tracks.clone())?;
        if tx
            .state()
            .incoming(target)
            .expect("targets have relationships")
            .recording
        {
            tx.note_range_changed(target, BitmapKind::SourceChanges, tracks.clone());
        }
    }
    // As a target: the tracks stop living on the source.
    if is_target {
        if tx.state().incoming(id).expect("checked").recording {
            tx.note_range_changed(id, BitmapKind::TargetChanges, tracks.clone());
        }
        tx.mark_range_copied(id, tracks.clone())?;
    }
    let mut next = next_stored(tx, id, tracks.start, &tracks)?;
    while let Some(track) = next {
        tx.zero(id, track)?;
        next = next_stored(tx, id, track + 1, &tracks)?;
    }
    Ok(())
}

/// The first track at or after `from` that the volume stores, within `range`. (Track numbers
/// stay far below `u32::MAX`: volumes are at most 16 TiB.)
fn next_stored<R: TrackReader>(
    tx: &Tx<'_, R>,
    volume: VolumeId,
    from: u32,
    range: &Range<u32>,
) -> Result<Option<u32>, Failure<R::Error>> {
    Ok(tx.next_stored(volume, from)?.filter(|t| *t < range.end))
}

/// [`next_stored`] of the volume or a source up its cascade.
fn next_stored_upstream<R: TrackReader>(
    tx: &Tx<'_, R>,
    volume: VolumeId,
    from: u32,
    range: &Range<u32>,
) -> Result<Option<u32>, Failure<R::Error>> {
    Ok(tx.next_stored_upstream(volume, from)?.filter(|t| *t < range.end))
}

/// Puts a write's bytes into place; zeroes (or a replay's unknown bytes) write zeros.
fn put(place: &mut [u8], bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => place.copy_from_slice(bytes),
        None => place.fill(0),
    }
}
