//! The tracks one apply sees: stored tracks with the apply's own changes on top, collecting the
//! track ops storage will execute.

use crate::track::{block_size, BlockSums, TrackOp, TrackReader, VolumeId};
use std::collections::BTreeMap;

/// What this apply did to one track so far.
enum Pending {
    /// Not stored any more.
    Zeroed,
    /// Stored with these block hashes. `blocks` maps each block written in this apply to the op
    /// holding its bytes (op index, byte offset in the op's data), so nothing is copied twice;
    /// the other blocks are the reader's (`over_reader`) or zeros.
    Stored {
        sums: BlockSums,
        blocks: BTreeMap<u32, (usize, usize)>,
        over_reader: bool,
    },
}

/// Tracks as seen during one apply: the stored tracks with this apply's own writes on top, so a
/// later step of the same command (a held write released after another) reads its predecessor.
pub(crate) struct TrackView<'a, R> {
    reader: &'a R,
    block_size: usize,
    overlay: BTreeMap<(VolumeId, u32), Pending>,
    pub(crate) ops: Vec<TrackOp>,
}

impl<'a, R: TrackReader> TrackView<'a, R> {
    pub(crate) fn new(reader: &'a R, track_size: u32) -> Self {
        TrackView {
            reader,
            block_size: block_size(track_size) as usize,
            overlay: BTreeMap::new(),
            ops: Vec::new(),
        }
    }

    /// The block hashes of a track, or `None` if it is not stored (reads as zeros).
    pub(crate) fn sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, R::Error> {
        match self.overlay.get(&(volume, track)) {
            Some(Pending::Zeroed) => Ok(None),
            Some(Pending::Stored { sums, .. }) => Ok(Some(*sums)),
            None => self.reader.block_sums(volume, track),
        }
    }

    /// Fills `out` with the track's content from byte `within` on.
    pub(crate) fn read_into(
        &self,
        volume: VolumeId,
        track: u32,
        within: usize,
        out: &mut [u8],
    ) -> Result<(), R::Error> {
        let (blocks, over_reader) = match self.overlay.get(&(volume, track)) {
            None => return self.reader.read_into(volume, track, within, out),
            Some(Pending::Zeroed) => {
                out.fill(0);
                return Ok(());
            }
            Some(Pending::Stored {
                blocks, over_reader, ..
            }) => (blocks, *over_reader),
        };
        if over_reader {
            self.reader.read_into(volume, track, within, out)?;
        } else {
            out.fill(0);
        }
        let bs = self.block_size;
        let end = within + out.len();
        let first = (within / bs) as u32;
        let last = ((end - 1) / bs) as u32;
        for (&block, &(op, offset)) in blocks.range(first..=last) {
            let block_start = block as usize * bs;
            let (from, to) = (block_start.max(within), (block_start + bs).min(end));
            let data = op_data(&self.ops[op]);
            out[from - within..to - within]
                .copy_from_slice(&data[offset + from - block_start..offset + to - block_start]);
        }
        Ok(())
    }

    /// The lowest track at or after `from` with stored content, this apply's writes included.
    pub(crate) fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, R::Error> {
        let mut cursor = from;
        let stored = loop {
            match self.reader.next_stored(volume, cursor)? {
                // Zeroed earlier in this apply: not stored any more.
                Some(t) if matches!(self.overlay.get(&(volume, t)), Some(Pending::Zeroed)) => match t.checked_add(1) {
                    Some(next) => cursor = next,
                    None => break None,
                },
                other => break other,
            }
        };
        let written = self
            .overlay
            .range((volume, from)..=(volume, u32::MAX))
            .find(|(_, pending)| matches!(pending, Pending::Stored { .. }))
            .map(|((_, t), _)| *t);
        Ok(match (stored, written) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The track reads as zeros from now on.
    pub(crate) fn zero(&mut self, volume: VolumeId, track: u32) {
        self.overlay.insert((volume, track), Pending::Zeroed);
        self.ops.push(TrackOp::Zero { volume, track });
    }

    /// Stores whole blocks from `first_block` on; the track's other blocks keep what they had.
    pub(crate) fn write_blocks(
        &mut self,
        volume: VolumeId,
        track: u32,
        first_block: u32,
        data: Vec<u8>,
        sums: BlockSums,
    ) {
        let op = self.ops.len();
        let written = block_offsets(first_block, data.len(), self.block_size, op);
        let pending = self.overlay.entry((volume, track)).or_insert(Pending::Stored {
            sums,
            blocks: BTreeMap::new(),
            over_reader: true,
        });
        match pending {
            Pending::Zeroed => {
                *pending = Pending::Stored {
                    sums,
                    blocks: written,
                    over_reader: false,
                }
            }
            Pending::Stored { sums: old, blocks, .. } => {
                *old = sums;
                blocks.extend(written);
            }
        }
        self.ops.push(TrackOp::Write {
            volume,
            track,
            within: first_block * self.block_size as u32,
            data,
            sums,
        });
    }

    /// Stores a whole track: nothing of what was there shows through.
    pub(crate) fn store_track(&mut self, volume: VolumeId, track: u32, data: Vec<u8>, sums: BlockSums) {
        self.overlay.insert((volume, track), Pending::Zeroed);
        self.write_blocks(volume, track, 0, data, sums);
    }

    pub(crate) fn drop_volume(&mut self, volume: VolumeId) {
        self.overlay.retain(|(v, _), _| *v != volume);
        self.ops.push(TrackOp::DropVolume { volume });
    }
}

/// Where each block of an op's data starts: block number → (op index, offset).
fn block_offsets(first_block: u32, len: usize, block_size: usize, op: usize) -> BTreeMap<u32, (usize, usize)> {
    (0..len / block_size)
        .map(|i| (first_block + i as u32, (op, i * block_size)))
        .collect()
}

fn op_data(op: &TrackOp) -> &[u8] {
    match op {
        TrackOp::Write { data, .. } => data,
        TrackOp::Zero { .. } | TrackOp::DropVolume { .. } => unreachable!("the overlay points only at ops with data"),
    }
}
