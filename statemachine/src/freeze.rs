//! Consistency-group freeze: writes to a frozen source wait in a replicated queue (they are not
//! failed) until `unfreezeflash` or the automatic thaw, then complete in order.

use crate::error::CommandError;
use crate::event::Event;
use crate::held_writes::HeldWrite;
use crate::host_write::{refusal, write_now};
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};
use std::collections::BTreeSet;

pub(crate) fn unfreezeflash<R: TrackReader>(tx: &mut Tx<'_, R>, sources: &[String]) -> Result<(), Failure<R::Error>> {
    if sources.is_empty() {
        return Err(CommandError::InvalidOption {
            option: "unfreezeflash".into(),
            reason: "name at least one frozen source volume".into(),
        }
        .into());
    }
    let mut ids = BTreeSet::new();
    for name in sources {
        let volume = tx
            .state()
            .volume(name)
            .ok_or_else(|| CommandError::VolumeNotFound { name: name.clone() })?;
        if volume.frozen_until.is_none() {
            return Err(CommandError::NotFrozen { name: name.clone() }.into());
        }
        ids.insert(volume.id);
    }
    for id in ids {
        thaw(tx, id, false)?;
    }
    Ok(())
}

/// Held writes released per entry: thawing a long queue is spread over several entries (the
/// leader proposes ticks while any is left), so no apply runs long. Until the queue is empty,
/// new writes to the volume queue behind it: they never overtake a held write.
pub const THAW_BATCH: usize = 256;
/// Bytes of held data released per volume and entry, at most (unless one write is larger).
const THAW_BATCH_BYTES: u64 = 8 << 20;

/// Thaws a volume and releases the first batch of its held writes.
pub(crate) fn thaw<R: TrackReader>(tx: &mut Tx<'_, R>, id: VolumeId, automatic: bool) -> Result<(), Failure<R::Error>> {
    tx.set_frozen(id, None);
    // The event comes before the writes it released.
    let at = tx.event_count();
    let released_writes = release(tx, id)?;
    let volume = tx.name(id);
    tx.insert_event(
        at,
        Event::Thawed {
            volume,
            automatic,
            released_writes,
        },
    );
    Ok(())
}

/// Applies the next batch of a thawed volume's held writes, in arrival order: at most
/// `THAW_BATCH` writes and one write command's worth of data per entry.
pub(crate) fn release<R: TrackReader>(tx: &mut Tx<'_, R>, id: VolumeId) -> Result<usize, Failure<R::Error>> {
    let batch = tx.record_mut(id).held_writes.take_front(THAW_BATCH, THAW_BATCH_BYTES);
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    let released = batch.len();
    tx.note_held_released(id, last.seq);
    #[cfg(feature = "sabotage")]
    let batch = if crate::sabotage::active(crate::sabotage::Sabotage::ReleaseHeldOutOfOrder) {
        batch.into_iter().rev().collect()
    } else {
        batch
    };
    for HeldWrite { write, .. } in batch {
        // The range was checked when the write arrived and sizes never change; only what
        // changed since can refuse it now (a relationship established, an increment taken).
        let refusal = refusal(tx.state(), id, &write);
        match refusal {
            Some(error) => tx.push_event(Event::HeldWriteRefused {
                volume: write.volume.clone(),
                tag: write.tag,
                error,
            }),
            None => write_now(tx, id, &write)?,
        }
    }
    Ok(released)
}
