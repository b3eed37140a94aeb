//! The tracks one apply sees: stored tracks with the apply's own changes on top, collecting the
//! track ops storage will execute.

use crate::mem_tracks::{blocks_touched, lay_blocks};
use crate::track::{block_size, execute, BlockSums, TrackOp, TrackReader, TrackSink, VolumeId};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// What this apply did to one track so far.
enum Pending {
    /// Not stored any more.
    Zeroed,
    /// Stored with these block hashes. `blocks` holds each block written in this apply (shared
    /// with its op, `None` for zeros); the other blocks are the reader's (`over_reader`) or zeros.
    Stored {
        sums: BlockSums,
        blocks: BTreeMap<u32, Option<Bytes>>,
        over_reader: bool,
    },
}

/// The apply's own changes: a sink of the ops it made, read on top of the stored tracks, and the
/// volumes it dropped (whose stored tracks it no longer sees).
#[derive(Default)]
struct Overlay(BTreeMap<(VolumeId, u32), Pending>, BTreeSet<VolumeId>);

impl TrackSink for Overlay {
    fn put_sums(&mut self, volume: VolumeId, track: u32, new: &BlockSums) {
        let over_reader = !self.1.contains(&volume);
        let pending = self.0.entry((volume, track)).or_insert(Pending::Stored {
            sums: *new,
            blocks: BTreeMap::new(),
            over_reader,
        });
        match pending {
            Pending::Zeroed => {
                *pending = Pending::Stored {
                    sums: *new,
                    blocks: BTreeMap::new(),
                    over_reader: false,
                }
            }
            Pending::Stored { sums, .. } => *sums = *new,
        }
    }

    fn put_block(&mut self, volume: VolumeId, track: u32, block: u32, data: Option<Bytes>) {
        if let Some(Pending::Stored { blocks, .. }) = self.0.get_mut(&(volume, track)) {
            blocks.insert(block, data);
        }
    }

    fn remove_track(&mut self, volume: VolumeId, track: u32) {
        self.0.insert((volume, track), Pending::Zeroed);
    }

    fn remove_volume(&mut self, volume: VolumeId) {
        self.0.retain(|(v, _), _| *v != volume);
        self.1.insert(volume);
    }
}

/// Tracks as seen during one apply: the stored tracks with this apply's own writes on top, so a
/// later step of the same command (a held write released after another) reads its predecessor.
pub(crate) struct TrackView<'a, R> {
    reader: &'a R,
    track_size: u32,
    overlay: Overlay,
    pub(crate) ops: Vec<TrackOp>,
}

impl<'a, R: TrackReader> TrackView<'a, R> {
    pub(crate) fn new(reader: &'a R, track_size: u32) -> Self {
        TrackView {
            reader,
            track_size,
            overlay: Overlay::default(),
            ops: Vec::new(),
        }
    }

    /// The block hashes of a track, or `None` if it is not stored (reads as zeros).
    pub(crate) fn sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, R::Error> {
        match self.overlay.0.get(&(volume, track)) {
            Some(Pending::Zeroed) => Ok(None),
            Some(Pending::Stored { sums, .. }) => Ok(Some(*sums)),
            None if self.dropped(volume) => Ok(None),
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
        let (blocks, over_reader) = match self.overlay.0.get(&(volume, track)) {
            None if self.dropped(volume) => {
                out.fill(0);
                return Ok(());
            }
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
        let bs = block_size(self.track_size) as usize;
        let touched = blocks.range(blocks_touched(within, out.len(), bs));
        lay_blocks(touched.map(|(b, bytes)| (*b, bytes.as_deref())), bs, within, out);
        Ok(())
    }

    /// The lowest track at or after `from` with stored content, this apply's writes included.
    pub(crate) fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, R::Error> {
        let mut cursor = from;
        let stored = loop {
            if self.dropped(volume) {
                break None;
            }
            match self.reader.next_stored(volume, cursor)? {
                // Zeroed earlier in this apply: not stored any more.
                Some(t) if matches!(self.overlay.0.get(&(volume, t)), Some(Pending::Zeroed)) => {
                    match t.checked_add(1) {
                        Some(next) => cursor = next,
                        None => break None,
                    }
                }
                other => break other,
            }
        };
        let written = self
            .overlay
            .0
            .range((volume, from)..=(volume, u32::MAX))
            .find(|(_, pending)| matches!(pending, Pending::Stored { .. }))
            .map(|((_, t), _)| *t);
        Ok(match (stored, written) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Dropped in this apply: none of its stored tracks show any more.
    fn dropped(&self, volume: VolumeId) -> bool {
        self.overlay.1.contains(&volume)
    }

    /// Records `op` and lays it over the stored tracks.
    fn push(&mut self, op: TrackOp) {
        execute(std::slice::from_ref(&op), self.track_size, &mut self.overlay);
        self.ops.push(op);
    }

    /// The track reads as zeros from now on.
    pub(crate) fn zero(&mut self, volume: VolumeId, track: u32) {
        self.push(TrackOp::Zero { volume, track });
    }

    /// Stores whole blocks from `first_block` on; the track's other blocks keep what they had.
    pub(crate) fn write_blocks(
        &mut self,
        volume: VolumeId,
        track: u32,
        first_block: u32,
        data: Bytes,
        sums: BlockSums,
    ) {
        let within = first_block * block_size(self.track_size);
        self.push(TrackOp::Write {
            volume,
            track,
            within,
            data,
            sums,
        });
    }

    /// Stores a whole track: every block is given, so nothing of what was there shows through.
    pub(crate) fn store_track(&mut self, volume: VolumeId, track: u32, data: Bytes, sums: BlockSums) {
        debug_assert_eq!(data.len(), self.track_size as usize);
        self.write_blocks(volume, track, 0, data, sums);
    }

    pub(crate) fn drop_volume(&mut self, volume: VolumeId) {
        self.push(TrackOp::DropVolume { volume });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_tracks::MemTracks;

    const TS: u32 = 16; // Eight blocks of two bytes.

    fn read(reader: &impl TrackReader<Error = std::convert::Infallible>, volume: VolumeId) -> Vec<u8> {
        let mut out = vec![0; TS as usize];
        reader.read_into(volume, 0, 0, &mut out).unwrap();
        out
    }

    impl<R: TrackReader<Error = std::convert::Infallible>> TrackReader for TrackView<'_, R> {
        type Error = std::convert::Infallible;
        fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error> {
            self.sums(volume, track)
        }
        fn read_into(&self, volume: VolumeId, track: u32, within: usize, out: &mut [u8]) -> Result<(), Self::Error> {
            TrackView::read_into(self, volume, track, within, out)
        }
        fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
            TrackView::next_stored(self, volume, from)
        }
    }

    /// The overlay and a store reach the same bytes from the same ops, whatever they stack:
    /// blocks written as zeros over stored bytes, a zeroed track written again in part.
    #[test]
    fn an_apply_reads_its_own_ops_as_a_store_will_hold_them() {
        let v = VolumeId(1);
        let mut stored = MemTracks::new(TS);
        let ones = Bytes::from(vec![1u8; TS as usize]);
        stored.execute(&[TrackOp::Write {
            volume: v,
            track: 0,
            within: 0,
            data: ones,
            sums: [7; 16],
        }]);
        let mut view = TrackView::new(&stored, TS);
        let mut sums = [7; 16];
        sums[1] = 0;
        view.write_blocks(v, 0, 1, Bytes::from(vec![0u8; 2]), sums);
        assert_eq!(read(&view, v), [1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        let mut after = stored.clone();
        after.execute(&view.ops);
        assert_eq!(read(&after, v), read(&view, v), "the store holds what the apply read");

        view.zero(v, 0);
        let mut sums = [0; 16];
        sums[2] = 9;
        view.write_blocks(v, 0, 2, Bytes::from_static(&[5, 5]), sums);
        assert_eq!(read(&view, v), [0, 0, 0, 0, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut after = stored.clone();
        after.execute(&view.ops);
        assert_eq!(read(&after, v), read(&view, v));
        assert_eq!(after.block_sums(v, 0).unwrap(), Some(sums));

        // A dropped volume shows none of its stored tracks for the rest of the apply, and a
        // block written to it again lies over zeros, as in the store.
        let mut view = TrackView::new(&stored, TS);
        view.drop_volume(v);
        assert_eq!(view.sums(v, 0).unwrap(), None);
        assert_eq!(view.next_stored(v, 0).unwrap(), None);
        assert_eq!(read(&view, v), [0; TS as usize]);
        view.write_blocks(v, 0, 2, Bytes::from_static(&[5, 5]), sums);
        assert_eq!(read(&view, v), [0, 0, 0, 0, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut after = stored.clone();
        after.execute(&view.ops);
        assert_eq!(read(&after, v), read(&view, v));
    }
}
