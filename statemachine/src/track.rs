//! Tracks: the unit of copy. Track operations are what the storage layer executes for an apply;
//! a `TrackReader` is how the state machine sees stored tracks without doing I/O itself.

use serde::{Deserialize, Serialize};

/// The FlashCopy track size: 64 KiB.
pub const TRACK_SIZE: u32 = 64 * 1024;

/// A volume's internal identity. Names can be reused after a delete; ids never are, so stored
/// tracks of a deleted volume can never be mistaken for a new volume's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VolumeId(pub u64);

/// One change to stored tracks. Every op of one apply must be made durable atomically, together
/// with the metadata and the applied index. A track that is absent reads as zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackOp {
    /// Store `data` (a whole track) as the track's content.
    Write {
        volume: VolumeId,
        track: u32,
        data: Vec<u8>,
    },
    /// Store a copy of the same track of volume `from` (copy-on-write or background copy). The
    /// bytes are carried so the store executes it without reading.
    Copy {
        from: VolumeId,
        volume: VolumeId,
        track: u32,
        data: Vec<u8>,
    },
    /// The track reads as zeros from now on: drop what is stored.
    Zero { volume: VolumeId, track: u32 },
    /// The volume is gone: drop every stored track of it.
    DropVolume { volume: VolumeId },
}

/// Read access to the stored tracks as of the last applied entry.
pub trait TrackReader {
    type Error;
    /// The stored content of a track (exactly one track long), or `None` if it reads as zeros.
    fn read_track(&self, volume: VolumeId, track: u32) -> Result<Option<Vec<u8>>, Self::Error>;
    /// The lowest track at or after `from` that has stored content: lets the background copy
    /// skip what was never written instead of copying zeros.
    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error>;
}

/// Whether a track's bytes are all zeros.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}
