//! Stored tracks as the state machine sees them: block hashes in the sums column family, bytes
//! in blocks. Also how a track op becomes writes in a batch.

use crate::db::{block_key, track_key, volume_track_range, CF_BLOCKS, CF_SUMS};
use bytes::Bytes;
use rocksdb::{Direction, IteratorMode, ReadOptions, Snapshot, WriteBatch, DB};
use statemachine::{BlockSums, TrackOp, TrackReader, TrackSink, VolumeId, BLOCKS_PER_TRACK};

pub(crate) struct DbTracks<'a> {
    db: &'a DB,
    /// Read as of this snapshot, or the latest data if none.
    snapshot: Option<&'a Snapshot<'a>>,
    track_size: u32,
    block_size: usize,
}

impl<'a> DbTracks<'a> {
    pub(crate) fn new(db: &'a DB, track_size: u32) -> Self {
        DbTracks {
            db,
            snapshot: None,
            track_size,
            block_size: statemachine::block_size(track_size) as usize,
        }
    }

    /// The tracks as they were when `snapshot` was taken.
    pub(crate) fn at(db: &'a DB, snapshot: &'a Snapshot<'a>, track_size: u32) -> Self {
        DbTracks {
            snapshot: Some(snapshot),
            ..DbTracks::new(db, track_size)
        }
    }

    fn read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(snapshot) = self.snapshot {
            options.set_snapshot(snapshot);
        }
        options
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Adds the writes of `ops` to `batch`. Blocks of zeros are not stored (absent reads as
    /// zeros); the sums say the track is stored all the same.
    pub(crate) fn stage(&self, batch: &mut WriteBatch, ops: &[TrackOp]) {
        let mut staging = Staging {
            batch,
            sums: self.cf(CF_SUMS),
            blocks: self.cf(CF_BLOCKS),
        };
        statemachine::execute_track_ops(ops, self.track_size, &mut staging);
    }
}

/// About how many bytes staging `ops` adds to a batch: their track bytes and a key for each.
pub(crate) fn staged_len(ops: &[TrackOp]) -> usize {
    ops.iter()
        .map(|op| match op {
            TrackOp::Write { data, .. } => data.len() + 64 + 16 * 32,
            TrackOp::Zero { .. } | TrackOp::DropVolume { .. } => 64,
        })
        .sum()
}

/// Track ops as the writes of one batch.
struct Staging<'a> {
    batch: &'a mut WriteBatch,
    sums: &'a rocksdb::ColumnFamily,
    blocks: &'a rocksdb::ColumnFamily,
}

impl TrackSink for Staging<'_> {
    fn put_sums(&mut self, volume: VolumeId, track: u32, sums: &BlockSums) {
        self.batch
            .put_cf(self.sums, track_key(volume, track), encode_sums(sums));
    }

    fn put_block(&mut self, volume: VolumeId, track: u32, block: u32, data: Option<Bytes>) {
        let key = block_key(volume, track, block);
        match data {
            Some(data) => self.batch.put_cf(self.blocks, key, data),
            None => self.batch.delete_cf(self.blocks, key),
        }
    }

    fn remove_track(&mut self, volume: VolumeId, track: u32) {
        self.batch.delete_cf(self.sums, track_key(volume, track));
        self.batch.delete_range_cf(
            self.blocks,
            block_key(volume, track, 0),
            block_key(volume, track, BLOCKS_PER_TRACK as u32),
        );
    }

    fn remove_volume(&mut self, volume: VolumeId) {
        let (from, to) = volume_track_range(volume);
        self.batch.delete_range_cf(self.sums, from, to);
        self.batch.delete_range_cf(self.blocks, from, to);
    }
}

fn encode_sums(sums: &BlockSums) -> [u8; 8 * BLOCKS_PER_TRACK] {
    let mut out = [0; 8 * BLOCKS_PER_TRACK];
    for (chunk, sum) in out.chunks_exact_mut(8).zip(sums) {
        chunk.copy_from_slice(&sum.to_le_bytes());
    }
    out
}

fn decode_sums(bytes: &[u8]) -> Option<BlockSums> {
    let mut sums = [0; BLOCKS_PER_TRACK];
    if bytes.len() != 8 * BLOCKS_PER_TRACK {
        return None;
    }
    for (sum, chunk) in sums.iter_mut().zip(bytes.chunks_exact(8)) {
        *sum = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(sums)
}

/// Why reading stored tracks failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(transparent)]
    Db(#[from] rocksdb::Error),
    #[error("the block hashes of track {track} of volume #{volume} are damaged")]
    CorruptSums { volume: u64, track: u32 },
}

impl TrackReader for DbTracks<'_> {
    type Error = TrackError;

    fn block_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Self::Error> {
        match self
            .db
            .get_pinned_cf_opt(self.cf(CF_SUMS), track_key(volume, track), &self.read_options())?
        {
            None => Ok(None),
            Some(bytes) => decode_sums(&bytes).map(Some).ok_or(TrackError::CorruptSums {
                volume: volume.0,
                track,
            }),
        }
    }

    fn read_into(&self, volume: VolumeId, track: u32, within: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        let bs = self.block_size;
        let end = within + out.len();
        let (first, last) = ((within / bs) as u32, ((end - 1) / bs) as u32);
        let copy = |out: &mut [u8], block: u32, bytes: &[u8]| {
            let start = block as usize * bs;
            let (from, to) = (start.max(within), (start + bs).min(end));
            out[from - within..to - within].copy_from_slice(&bytes[from - start..to - start]);
        };
        if first == last {
            // One block: a point lookup.
            match self.db.get_pinned_cf_opt(
                self.cf(CF_BLOCKS),
                block_key(volume, track, first),
                &self.read_options(),
            )? {
                Some(bytes) => copy(out, first, &bytes),
                None => out.fill(0),
            }
            return Ok(());
        }
        out.fill(0);
        let mut options = self.read_options();
        options.set_iterate_upper_bound(block_key(volume, track, last + 1).to_vec());
        let from = block_key(volume, track, first);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_BLOCKS),
            options,
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in iter {
            let (key, bytes) = item?;
            copy(out, u32::from(key[12]), &bytes);
        }
        Ok(())
    }

    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
        let start = track_key(volume, from);
        // Stay within this volume's keys.
        let mut options = self.read_options();
        options.set_iterate_upper_bound((volume.0 + 1).to_be_bytes().to_vec());
        let mut iter = self.db.iterator_cf_opt(
            self.cf(CF_SUMS),
            options,
            IteratorMode::From(&start, Direction::Forward),
        );
        match iter.next().transpose()? {
            Some((key, _)) if key[..8] == volume.0.to_be_bytes() => Ok(Some(u32::from_be_bytes(
                key[8..12].try_into().expect("track keys are 12 bytes"),
            ))),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use statemachine::MemTracks;

    const TS: u32 = 16; // Eight blocks of two bytes.

    /// One change to track 0: a whole-track write, a write of blocks (some of zeros), or a zeroing.
    #[derive(Clone, Debug)]
    enum Change {
        Whole(Vec<u8>),
        Blocks(u32, Vec<u8>),
        Zero,
    }

    fn change() -> impl Strategy<Value = Change> {
        // Bytes from {0, 1, 2}: blocks of zeros come up often.
        let byte = prop_oneof![Just(0u8), Just(1u8), Just(2u8)];
        prop_oneof![
            prop::collection::vec(byte.clone(), TS as usize).prop_map(Change::Whole),
            (0..8u32, 1..=4usize)
                .prop_flat_map(move |(first, n)| {
                    let n = n.min(8 - first as usize);
                    (Just(first), prop::collection::vec(byte.clone(), n * 2))
                })
                .prop_map(|(first, data)| Change::Blocks(first, data)),
            Just(Change::Zero),
        ]
    }

    fn op(change: &Change, stored: Option<BlockSums>) -> TrackOp {
        let (volume, track) = (VolumeId(1), 0);
        let mut sums = stored.unwrap_or([0; BLOCKS_PER_TRACK]);
        let (within, data) = match change {
            Change::Zero => return TrackOp::Zero { volume, track },
            Change::Whole(data) => (0, data.clone()),
            Change::Blocks(first, data) => (first * 2, data.clone()),
        };
        for (i, block) in data.chunks(2).enumerate() {
            // Any nonzero stand-in for a hash will do: 0 exactly for zeros.
            sums[within as usize / 2 + i] = u64::from(block[0]) * 3 + u64::from(block[1]);
        }
        TrackOp::Write {
            volume,
            track,
            within,
            data: Bytes::from(data),
            sums,
        }
    }

    proptest! {
        /// Whole tracks, blocks written over them and blocks of zeros read back as the reference
        /// store has them, through every window of the track.
        #[test]
        fn stored_tracks_read_back_as_the_reference_store_holds_them(changes in prop::collection::vec(change(), 1..8)) {
            let dir = tempfile::tempdir().unwrap();
            let db = crate::db::open_db(dir.path()).unwrap();
            let mut reference = MemTracks::new(TS);
            for change in &changes {
                let op = op(change, reference.block_sums(VolumeId(1), 0).unwrap());
                let mut batch = WriteBatch::default();
                DbTracks::new(&db, TS).stage(&mut batch, std::slice::from_ref(&op));
                db.write(batch).unwrap();
                reference.execute(&[op]);
                let tracks = DbTracks::new(&db, TS);
                prop_assert_eq!(tracks.block_sums(VolumeId(1), 0).unwrap(), reference.block_sums(VolumeId(1), 0).unwrap());
                for within in 0..TS as usize {
                    for len in 1..=TS as usize - within {
                        let (mut got, mut want) = (vec![9; len], vec![9; len]);
                        tracks.read_into(VolumeId(1), 0, within, &mut got).unwrap();
                        reference.read_into(VolumeId(1), 0, within, &mut want).unwrap();
                        prop_assert_eq!(&got, &want, "after {:?}, {} bytes at {}", changes, len, within);
                    }
                }
            }
        }
    }
}
