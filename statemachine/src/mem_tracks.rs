//! The in-memory track store: the reference `TrackReader` for tests and the simulation.

use crate::track::{TrackOp, TrackReader, VolumeId};
use std::collections::BTreeMap;

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
