//! Tracks: the unit of copy. Track operations are what the storage layer executes for an apply;
//! a `TrackReader` is how the state machine sees stored tracks without doing I/O itself.
//!
//! A track is stored as blocks (16 per track, 4 KiB each for 64 KiB tracks), so a small host
//! write stores only the blocks it touches, and each stored track keeps one hash per block
//! (its [`BlockSums`]) so the state digest follows a write without reading the old data.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The FlashCopy track size: 64 KiB.
pub const TRACK_SIZE: u32 = 64 * 1024;

/// Blocks in a track (fewer only for the tiny tracks of tests, whose blocks are two bytes so
/// writes of part of a block happen there too).
pub const BLOCKS_PER_TRACK: usize = 16;

/// A stored track's per-block content hashes (0 for a block of zeros, and for unused entries
/// when a track has fewer blocks). Present exactly when the track is stored.
pub type BlockSums = [u64; BLOCKS_PER_TRACK];

/// How many blocks a track of `track_size` bytes has.
pub(crate) fn blocks_per_track(track_size: u32) -> u32 {
    (track_size / 2).clamp(1, BLOCKS_PER_TRACK as u32)
}

/// The block size for tracks of `track_size` bytes.
pub fn block_size(track_size: u32) -> u32 {
    track_size / blocks_per_track(track_size)
}

/// A volume's internal identity. Names can be reused after a delete; ids never are, so stored
/// tracks of a deleted volume can never be mistaken for a new volume's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VolumeId(pub u64);

/// Set in the id of a volume's kept tracks (see [`VolumeId::kept`]); volume ids never reach it.
const KEPT: u64 = 1 << 63;

impl VolumeId {
    /// Where this volume keeps old tracks that several of its targets share (copy-on-write to
    /// many targets stores the old track once, here, not once per target): a track store of its
    /// own, accounted in this volume's record, never a volume hosts see.
    pub fn kept(self) -> VolumeId {
        VolumeId(self.0 | KEPT)
    }

    /// The volume whose record accounts for this store's tracks: the volume itself, or the
    /// volume whose kept tracks these are.
    pub fn owner(self) -> VolumeId {
        VolumeId(self.0 & !KEPT)
    }

    /// This is a volume's store of kept tracks.
    pub fn is_kept(self) -> bool {
        self.0 & KEPT != 0
    }
}

/// One change to stored tracks. Every op of one apply must be made durable atomically, together
/// with the metadata and the applied index. A track that is absent reads as zeros; so does a
/// block of a stored track that has no stored bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackOp {
    /// Store `data` (whole blocks) at byte `within` of the track (a block boundary), and `sums`
    /// as the track's block hashes. The track is stored from now on; its other blocks are
    /// unchanged. A host write of part of a track carries only its blocks; a whole-track write or
    /// a copy (copy-on-write, background copy) the whole track, so the store never reads.
    Write {
        volume: VolumeId,
        track: u32,
        within: u32,
        /// Shared, not copied: a host write's piece of the NBD request, or a copied track.
        data: Bytes,
        sums: BlockSums,
    },
    /// The track reads as zeros from now on: drop what is stored.
    Zero { volume: VolumeId, track: u32 },
    /// The volume is gone: drop every stored track of it.
    DropVolume { volume: VolumeId },
}

/// Where track ops land: the few things a track store does. [`execute`] is the one reading of
/// [`TrackOp`]; every store (RocksDB, memory, a replay's presence-only one, an apply's overlay)
/// is a sink, so what an op means is decided once.
pub trait TrackSink {
    /// The track is stored, with these block hashes (before its blocks are put).
    fn put_sums(&mut self, volume: VolumeId, track: u32, sums: &BlockSums);
    /// Block `block` of a stored track holds `data` (one whole block), or reads as zeros
    /// (`None`: nothing is kept for it).
    fn put_block(&mut self, volume: VolumeId, track: u32, block: u32, data: Option<Bytes>);
    /// Nothing of the track is stored: it reads as zeros.
    fn remove_track(&mut self, volume: VolumeId, track: u32);
    /// Nothing of the volume is stored.
    fn remove_volume(&mut self, volume: VolumeId);
}

/// Executes `ops` against a sink, in order. A written block whose hash is 0 (all zeros) keeps no
/// bytes; the track's hashes still say it is stored.
pub fn execute(ops: &[TrackOp], track_size: u32, sink: &mut impl TrackSink) {
    let bs = block_size(track_size) as usize;
    for op in ops {
        match op {
            TrackOp::Write {
                volume,
                track,
                within,
                data,
                sums,
            } => {
                sink.put_sums(*volume, *track, sums);
                let first = *within as usize / bs;
                for i in 0..data.len() / bs {
                    let block = first + i;
                    let bytes = (sums[block] != 0).then(|| data.slice(i * bs..(i + 1) * bs));
                    sink.put_block(*volume, *track, block as u32, bytes);
                }
            }
            TrackOp::Zero { volume, track } => sink.remove_track(*volume, *track),
            TrackOp::DropVolume { volume } => sink.remove_volume(*volume),
        }
    }
}

/// Read access to the stored tracks as of the last applied entry.
pub trait TrackReader {
    type Error;
    /// The block hashes of a stored track, or `None` if the track is not stored (reads as zeros).
    fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error>;
    /// Fills `out` with the track's content from byte `within` on (`within + out.len()` stays
    /// inside the track); zeros where nothing is stored.
    fn read_into(&self, volume: VolumeId, track: u32, within: usize, out: &mut [u8]) -> Result<(), Self::Error>;
    /// The lowest track at or after `from` that has stored content: lets the background copy
    /// skip what was never written instead of copying zeros.
    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error>;
}

/// Whether a track's bytes are all zeros.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    // OR-folding a chunk vectorises; the chunking keeps the early exit.
    data.chunks(64)
        .all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) == 0)
}
