//! The tracks one apply sees: stored tracks with the apply's own changes on top, collecting the
//! track ops storage will execute.

use crate::track::{TrackOp, TrackReader, VolumeId};
use std::collections::BTreeMap;

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
