//! Tracks: the unit of copy. Track operations are what the storage layer executes for an apply;
//! a `TrackReader` is how the state machine sees stored tracks without doing I/O itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// An in-memory track store: the reference implementation of `TrackReader`, used by tests and
/// by the simulation. `execute` applies track operations.
#[derive(Clone, Debug, Default)]
pub struct MemTracks {
    tracks: BTreeMap<(VolumeId, u32), Vec<u8>>,
}

impl MemTracks {
    pub fn execute(&mut self, ops: &[TrackOp]) {
        for op in ops {
            match op {
                TrackOp::Write { volume, track, data }
                | TrackOp::Copy {
                    volume, track, data, ..
                } => {
                    self.tracks.insert((*volume, *track), data.clone());
                }
                TrackOp::Zero { volume, track } => {
                    self.tracks.remove(&(*volume, *track));
                }
                TrackOp::DropVolume { volume } => self.tracks.retain(|(v, _), _| v != volume),
            }
        }
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

impl TrackReader for MemTracks {
    type Error = std::convert::Infallible;
    fn read_track(&self, volume: VolumeId, track: u32) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.tracks.get(&(volume, track)).cloned())
    }

    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
        Ok(self
            .tracks
            .range((volume, from)..=(volume, u32::MAX))
            .next()
            .map(|((_, t), _)| *t))
    }
}

/// Tracks as seen during one apply: the stored tracks with this apply's own writes on top, so a
/// later step of the same command (a held write released after another) reads its predecessor.
pub(crate) struct TrackView<'a, R> {
    reader: &'a R,
    track_size: usize,
    overlay: BTreeMap<(VolumeId, u32), Option<Vec<u8>>>,
    pub(crate) ops: Vec<TrackOp>,
}

impl<'a, R: TrackReader> TrackView<'a, R> {
    pub(crate) fn new(reader: &'a R, track_size: u32) -> Self {
        TrackView {
            reader,
            track_size: track_size as usize,
            overlay: BTreeMap::new(),
            ops: Vec::new(),
        }
    }

    /// The stored content of a track, or `None` if it is not stored (reads as zeros).
    pub(crate) fn stored(&self, volume: VolumeId, track: u32) -> Result<Option<Vec<u8>>, R::Error> {
        match self.overlay.get(&(volume, track)) {
            Some(data) => Ok(data.clone()),
            None => self.reader.read_track(volume, track),
        }
    }

    /// The lowest track at or after `from` with stored content, this apply's writes included.
    pub(crate) fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, R::Error> {
        let mut cursor = from;
        let stored = loop {
            match self.reader.next_stored(volume, cursor)? {
                // Zeroed earlier in this apply: not stored any more.
                Some(t) if matches!(self.overlay.get(&(volume, t)), Some(None)) => match t.checked_add(1) {
                    Some(next) => cursor = next,
                    None => break None,
                },
                other => break other,
            }
        };
        let written = self
            .overlay
            .range((volume, from)..=(volume, u32::MAX))
            .find(|(_, data)| data.is_some())
            .map(|((_, t), _)| *t);
        Ok(match (stored, written) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The track reads as zeros from now on.
    pub(crate) fn zero(&mut self, volume: VolumeId, track: u32) {
        self.overlay.insert((volume, track), None);
        self.ops.push(TrackOp::Zero { volume, track });
    }

    /// Records the new content of a track (stored even if it is all zeros: see
    /// `Tx::store`); `from` names the copied-from volume for a copy.
    pub(crate) fn store(&mut self, volume: VolumeId, track: u32, data: Vec<u8>, from: Option<VolumeId>) {
        debug_assert_eq!(data.len(), self.track_size);
        self.overlay.insert((volume, track), Some(data.clone()));
        self.ops.push(match from {
            Some(from) => TrackOp::Copy {
                from,
                volume,
                track,
                data,
            },
            None => TrackOp::Write { volume, track, data },
        });
    }

    pub(crate) fn drop_volume(&mut self, volume: VolumeId) {
        self.overlay.retain(|(v, _), _| *v != volume);
        self.ops.push(TrackOp::DropVolume { volume });
    }
}

pub(crate) fn is_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

/// Which tracks are stored, without their bytes: the track store of a journal replay (see
/// `crate::replay`). A stored track reads as zeros.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoredTracks {
    track_size: usize,
    stored: BTreeMap<VolumeId, roaring::RoaringBitmap>,
}

impl StoredTracks {
    pub(crate) fn new(track_size: u32) -> Self {
        StoredTracks {
            track_size: track_size as usize,
            stored: BTreeMap::new(),
        }
    }

    pub(crate) fn execute(&mut self, ops: &[TrackOp]) {
        for op in ops {
            match op {
                TrackOp::Write { volume, track, .. } | TrackOp::Copy { volume, track, .. } => {
                    self.stored.entry(*volume).or_default().insert(*track);
                }
                TrackOp::Zero { volume, track } => {
                    if let Some(bits) = self.stored.get_mut(volume) {
                        bits.remove(*track);
                    }
                }
                TrackOp::DropVolume { volume } => {
                    self.stored.remove(volume);
                }
            }
        }
    }
}

impl StoredTracks {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (VolumeId, u32)> + '_ {
        self.stored
            .iter()
            .flat_map(|(volume, bits)| bits.iter().map(move |t| (*volume, t)))
    }
}

impl TrackReader for StoredTracks {
    type Error = std::convert::Infallible;
    fn read_track(&self, volume: VolumeId, track: u32) -> Result<Option<Vec<u8>>, Self::Error> {
        let stored = self.stored.get(&volume).is_some_and(|bits| bits.contains(track));
        Ok(stored.then(|| vec![0; self.track_size]))
    }

    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
        let Some(bits) = self.stored.get(&volume) else {
            return Ok(None);
        };
        // The first element at or after `from` is the one after the `rank(from - 1)` smaller ones.
        let before = from.checked_sub(1).map_or(0, |f| bits.rank(f));
        Ok(u32::try_from(before).ok().and_then(|n| bits.select(n)))
    }
}
