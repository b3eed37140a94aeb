//! Host writes (and write-zeroes/trim): copy-on-write to every target still sharing a track,
//! bring a target's track home before overwriting part of it, record changes, then write.
//! Cost is O(tracks written × relationships of the volume), never O(volume size).

use crate::apply::{Failure, Tx};
use crate::changes::BitmapKind;
use crate::command::{HostWrite, WriteData};
use crate::error::CommandError;
use crate::event::Event;
use crate::track::{TrackReader, VolumeId};

/// The most bytes one write command may cover (data or zeroes): keeps every apply short.
pub const MAX_WRITE_BYTES: u64 = 32 << 20;

pub(crate) fn write<R: TrackReader>(tx: &mut Tx<'_, R>, write: &HostWrite) -> Result<(), Failure<R::Error>> {
    if write.data.len() > MAX_WRITE_BYTES {
        return Err(CommandError::WriteTooLarge {
            length: write.data.len(),
            max: MAX_WRITE_BYTES,
        }
        .into());
    }
    if matches!(write.data, WriteData::Summary { .. }) && !tx.replaying {
        return Err(CommandError::WriteWithoutData {
            volume: write.volume.clone(),
        }
        .into());
    }
    let id = tx.state.check_range(&write.volume, write.offset, write.data.len())?;
    let record = tx.state.record(id).expect("checked");
    if let Some(rel) = record.incoming.as_ref().filter(|r| r.target_write_inhibit) {
        return Err(CommandError::TargetWriteInhibited {
            volume: write.volume.clone(),
            relationship: tx.state.pair_name(rel),
        }
        .into());
    }
    // Held while frozen, and after a thaw until the writes held before it are all released.
    if record.volume.frozen_until.is_some() || !record.held_writes.is_empty() {
        let seq = tx.record_mut(id).held_writes.push(write.clone());
        tx.changes.held_pushed.push((id, seq));
        tx.events.push(Event::WriteHeld {
            volume: write.volume.clone(),
            offset: write.offset,
            length: write.data.len(),
            tag: write.tag,
        });
        return Ok(());
    }
    write_now(tx, id, write)
}

/// Applies a group-committed batch in order. The batch as a whole is bounded like one write; a
/// write in it that is refused is reported and changes nothing, the others go on.
pub(crate) fn write_batch<R: TrackReader>(tx: &mut Tx<'_, R>, writes: &[HostWrite]) -> Result<(), Failure<R::Error>> {
    let total = writes.iter().map(|w| w.data.len()).fold(0u64, u64::saturating_add);
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
            Err(Failure::Refused(error)) => tx.events.push(Event::WriteRefused {
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
    let track_size = u64::from(tx.state.track_size());
    let record = tx.state.record(id).expect("checked");
    let targets: Vec<VolumeId> = record.volume.targets.iter().copied().collect();
    let source = record.incoming.as_ref().map(|r| r.source);

    let end = write.offset + write.data.len();
    let mut pos = write.offset;
    while pos < end {
        let track = (pos / track_size) as u32;
        let within = (pos % track_size) as usize;
        let take = (track_size - within as u64).min(end - pos) as usize;

        // As a source: every target still sharing this track gets the old content first.
        for &target in &targets {
            let rel = tx.state.incoming(target).expect("targets have relationships");
            let (shared, recording) = (rel.out_of_sync.contains(track), rel.recording);
            if shared {
                tx.copy_to_target(id, target, track)?;
            }
            if recording {
                tx.note_change(target, BitmapKind::SourceChanges, track);
            }
        }

        // As a target: the track stops living on the source; a partial write keeps the rest of
        // the source's track.
        let mut base = id;
        if let Some(source) = source {
            let rel = tx.state.incoming(id).expect("checked");
            let (recording, shared) = (rel.recording, rel.out_of_sync.contains(track));
            if recording {
                tx.note_change(id, BitmapKind::TargetChanges, track);
            }
            if shared {
                base = source;
                tx.mark_copied(id, track);
            }
        }

        let whole = take as u64 == track_size;
        let from = (pos - write.offset) as usize;
        match &write.data {
            // Zeroing a whole track, or part of one that is stored nowhere, leaves it unstored.
            WriteData::Zeroes(_) if whole => tx.zero(id, track)?,
            WriteData::Zeroes(_) => match tx.stored_track(base, track)? {
                Some(mut data) => {
                    data[within..within + take].fill(0);
                    tx.store(id, track, data, None)?;
                }
                None => tx.zero(id, track)?,
            },
            WriteData::Bytes(_) | WriteData::Summary { .. } => {
                // A whole track needs nothing of what was there: no read.
                let stored = if whole { None } else { tx.stored_track(base, track)? };
                let mut data = stored.unwrap_or_else(|| vec![0; track_size as usize]);
                // A journal replay's `Summary`: the bytes are unknown, only that the track is stored.
                if let WriteData::Bytes(bytes) = &write.data {
                    data[within..within + take].copy_from_slice(&bytes[from..from + take]);
                }
                tx.store(id, track, data, None)?;
            }
        }
        pos += take as u64;
    }
    tx.events.push(Event::Written {
        volume: write.volume.clone(),
        offset: write.offset,
        length: write.data.len(),
        tag: write.tag,
    });
    Ok(())
}
