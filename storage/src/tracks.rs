//! Stored tracks as the state machine sees them: block hashes in the sums column family, bytes
//! in the blocks column family. Also how a track op becomes writes in a batch.
//!
//! A track written whole (a whole-track host write, a copy) is one value under the track's
//! `WHOLE` key, after its blocks' keys; a later write of part of it puts those blocks under their
//! own keys, which read before the whole value. So a large write or a copy puts one value, and
//! reading the track back or copying it gets one, while a small write still stores only its
//! blocks and never reads. A block of zeros under its own key is an empty value (it must hide a
//! whole value beneath); a track with no whole value may also just lack the key.

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

    /// Adds the writes of `ops` to `batch` (see the module's comment for the layout).
    pub(crate) fn stage(&self, batch: &mut WriteBatch, ops: &[TrackOp]) {
        let mut staging = Staging {
            batch,
            blocks_per_track: self.track_size / self.block_size as u32,
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
            TrackOp::Zero { .. } | TrackOp::DropVolume { .. } => 17 * 32,
        })
        .sum()
}

/// The block number of a track's whole value: after its blocks' keys.
const WHOLE: u32 = BLOCKS_PER_TRACK as u32;

impl Staging<'_> {
    /// Removes the values a track's blocks were written under since it was last written whole.
    /// Point deletes: a range tombstone per track written would slow every read and flush after.
    fn remove_blocks(&mut self, volume: VolumeId, track: u32) {
        for block in 0..self.blocks_per_track {
            self.batch.delete_cf(self.blocks, block_key(volume, track, block));
        }
    }
}

/// Track ops as the writes of one batch.
struct Staging<'a> {
    batch: &'a mut WriteBatch,
    blocks_per_track: u32,
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
            None => self.batch.put_cf(self.blocks, key, b""),
        }
    }

    fn put_track(&mut self, volume: VolumeId, track: u32, data: &Bytes, sums: &BlockSums, replaces: bool) {
        // Blocks written in part since the track was last written whole would read before
        // the new value; a track that was not stored has none.
        if replaces {
            self.remove_blocks(volume, track);
        }
        if sums.iter().any(|s| *s != 0) {
            self.batch.put_cf(self.blocks, block_key(volume, track, WHOLE), data);
        } else if replaces {
            self.batch.delete_cf(self.blocks, block_key(volume, track, WHOLE));
        }
    }

    fn remove_track(&mut self, volume: VolumeId, track: u32) {
        self.batch.delete_cf(self.sums, track_key(volume, track));
        self.remove_blocks(volume, track);
        self.batch.delete_cf(self.blocks, block_key(volume, track, WHOLE));
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
    #[error("the stored bytes of track {track} of volume #{volume} are damaged (wrong length)")]
    CorruptWhole { volume: u64, track: u32 },
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
        out.fill(0);
        // The blocks read so far under their own keys (an empty value is a block of zeros).
        let mut found = 0u32;
        if first == last {
            // One block: a point lookup.
            let key = block_key(volume, track, first);
            if let Some(bytes) = self
                .db
                .get_pinned_cf_opt(self.cf(CF_BLOCKS), key, &self.read_options())?
            {
                if !bytes.is_empty() {
                    copy(out, first, &bytes);
                }
                return Ok(());
            }
        } else {
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
                let block = u32::from(key[12]);
                found |= 1 << block;
                if !bytes.is_empty() {
                    copy(out, block, &bytes);
                }
            }
        }
        let wanted = (first..=last).fold(0u32, |bits, b| bits | 1 << b);
        if found == wanted {
            return Ok(());
        }
        // The rest is the track's whole value, if it has one.
        let key = block_key(volume, track, WHOLE);
        if let Some(whole) = self
            .db
            .get_pinned_cf_opt(self.cf(CF_BLOCKS), key, &self.read_options())?
        {
            if whole.len() != self.track_size as usize {
                return Err(TrackError::CorruptWhole {
                    volume: volume.0,
                    track,
                });
            }
            for block in (first..=last).filter(|b| found & (1 << b) == 0) {
                let start = block as usize * bs;
                copy(out, block, &whole[start..start + bs]);
            }
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
            replaces: stored.is_some(),
        }
    }

    proptest! {
        /// Whole values, blocks written in part over them and blocks of zeros read back as the
        /// reference store has them, through every window of the track.
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
