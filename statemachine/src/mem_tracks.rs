//! The in-memory track store: the reference `TrackReader` for tests and the simulation.

use crate::track::{BlockSums, TrackOp, TrackReader, VolumeId};
use std::collections::BTreeMap;

/// An in-memory track store: the reference implementation of `TrackReader`, used by tests and
/// by the simulation. `execute` applies track operations.
#[derive(Clone, Debug, Default)]
pub struct MemTracks {
    /// Each stored track's block hashes and bytes (shorter than a track: the rest is zeros).
    tracks: BTreeMap<(VolumeId, u32), (BlockSums, Vec<u8>)>,
}

impl MemTracks {
    pub fn execute(&mut self, ops: &[TrackOp]) {
        for op in ops {
            match op {
                TrackOp::Write {
                    volume,
                    track,
                    within,
                    data,
                    sums,
                } => {
                    let (stored_sums, bytes) = self.tracks.entry((*volume, *track)).or_default();
                    let within = *within as usize;
                    if bytes.len() < within + data.len() {
                        bytes.resize(within + data.len(), 0);
                    }
                    bytes[within..within + data.len()].copy_from_slice(data);
                    *stored_sums = *sums;
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

    fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error> {
        Ok(self.tracks.get(&(volume, track)).map(|(sums, _)| *sums))
    }

    fn read_into(&self, volume: VolumeId, track: u32, within: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        out.fill(0);
        if let Some((_, bytes)) = self.tracks.get(&(volume, track)) {
            let end = (within + out.len()).min(bytes.len());
            if end > within {
                out[..end - within].copy_from_slice(&bytes[within..end]);
            }
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
