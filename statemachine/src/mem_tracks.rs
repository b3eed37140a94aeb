//! The in-memory track store: the reference `TrackReader` for tests.

use crate::track::{block_size, execute, BlockSums, TrackOp, TrackReader, TrackSink, VolumeId};
use bytes::Bytes;
use std::collections::BTreeMap;

/// A stored track: its block hashes and the blocks that are not zeros (shared, not copied).
#[derive(Clone, Debug, Default)]
struct MemTrack {
    sums: BlockSums,
    blocks: BTreeMap<u32, Bytes>,
}

/// An in-memory track store: the reference implementation of `TrackReader`, used by tests.
/// `execute` applies track operations.
#[derive(Clone, Debug)]
pub struct MemTracks {
    block_size: usize,
    track_size: u32,
    tracks: BTreeMap<(VolumeId, u32), MemTrack>,
}

impl MemTracks {
    /// A store for tracks of `track_size` bytes.
    pub fn new(track_size: u32) -> Self {
        MemTracks {
            block_size: block_size(track_size) as usize,
            track_size,
            tracks: BTreeMap::new(),
        }
    }

    pub fn execute(&mut self, ops: &[TrackOp]) {
        execute(ops, self.track_size, self);
    }

    /// Number of stored tracks.
    pub fn stored_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Every stored track, in (volume, track) order.
    pub fn stored(&self) -> impl Iterator<Item = (VolumeId, u32)> + '_ {
        self.tracks.keys().copied()
    }
}

impl TrackSink for MemTracks {
    fn put_sums(&mut self, volume: VolumeId, track: u32, sums: &BlockSums) {
        self.tracks.entry((volume, track)).or_default().sums = *sums;
    }

    fn put_block(&mut self, volume: VolumeId, track: u32, block: u32, data: Option<Bytes>) {
        let blocks = &mut self.tracks.entry((volume, track)).or_default().blocks;
        match data {
            Some(data) => blocks.insert(block, data),
            None => blocks.remove(&block),
        };
    }

    fn remove_track(&mut self, volume: VolumeId, track: u32) {
        self.tracks.remove(&(volume, track));
    }

    fn remove_volume(&mut self, volume: VolumeId) {
        self.tracks.retain(|(v, _), _| *v != volume);
    }
}

impl TrackReader for MemTracks {
    type Error = std::convert::Infallible;

    fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error> {
        Ok(self.tracks.get(&(volume, track)).map(|t| t.sums))
    }

    fn read_into(&self, volume: VolumeId, track: u32, within: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        out.fill(0);
        if let Some(stored) = self.tracks.get(&(volume, track)) {
            let touched = stored.blocks.range(blocks_touched(within, out.len(), self.block_size));
            lay_blocks(
                touched.map(|(b, bytes)| (*b, Some(&bytes[..]))),
                self.block_size,
                within,
                out,
            );
        }
        Ok(())
    }

    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
        Ok(self
            .tracks
            .range((volume, from)..=(volume, u32::MAX))
            .next()
            .map(|((_, t), _)| *t))
    }
}

/// The blocks a read of `len` bytes from byte `within` of a track touches.
pub(crate) fn blocks_touched(within: usize, len: usize, block_size: usize) -> std::ops::RangeInclusive<u32> {
    (within / block_size) as u32..=((within + len - 1) / block_size) as u32
}

/// Lays blocks over `out`, which holds a track's bytes from byte `within` on: the part of each
/// block inside that range becomes its bytes, or zeros for `None`.
pub(crate) fn lay_blocks<'b>(
    blocks: impl IntoIterator<Item = (u32, Option<&'b [u8]>)>,
    block_size: usize,
    within: usize,
    out: &mut [u8],
) {
    let end = within + out.len();
    for (block, bytes) in blocks {
        let start = block as usize * block_size;
        let (from, to) = (start.max(within), (start + block_size).min(end));
        let dst = &mut out[from - within..to - within];
        match bytes {
            Some(bytes) => dst.copy_from_slice(&bytes[from - start..to - start]),
            None => dst.fill(0),
        }
    }
}
