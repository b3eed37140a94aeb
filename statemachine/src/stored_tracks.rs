//! The presence-only track store of a journal replay: which tracks are stored, not their bytes.

use crate::track::{BlockSums, TrackReader, TrackSink, VolumeId, BLOCKS_PER_TRACK};
use bytes::Bytes;
use std::collections::BTreeMap;

/// Which tracks are stored, without their bytes: the track store of a journal replay (see
/// `crate::replay`). A stored track reads as zeros.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoredTracks {
    stored: BTreeMap<VolumeId, roaring::RoaringBitmap>,
}

impl TrackSink for StoredTracks {
    fn put_sums(&mut self, volume: VolumeId, track: u32, _: &BlockSums) {
        self.stored.entry(volume).or_default().insert(track);
    }

    fn put_block(&mut self, _: VolumeId, _: u32, _: u32, _: Option<Bytes>) {}

    fn remove_track(&mut self, volume: VolumeId, track: u32) {
        if let Some(bits) = self.stored.get_mut(&volume) {
            bits.remove(track);
        }
    }

    fn remove_volume(&mut self, volume: VolumeId) {
        self.stored.remove(&volume);
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

    fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error> {
        let stored = self.stored.get(&volume).is_some_and(|bits| bits.contains(track));
        Ok(stored.then_some([0; BLOCKS_PER_TRACK]))
    }

    fn read_into(&self, _: VolumeId, _: u32, _: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        out.fill(0);
        Ok(())
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
