//! Stored tracks as the state machine sees them.

use crate::db::{track_key, CF_TRACKS};
use rocksdb::{Direction, IteratorMode, DB};
use statemachine::{TrackReader, VolumeId};

pub(crate) struct DbTracks<'a> {
    pub(crate) db: &'a DB,
}

impl DbTracks<'_> {
    fn cf(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(CF_TRACKS)
            .expect("column families are created at open")
    }
}

impl TrackReader for DbTracks<'_> {
    type Error = rocksdb::Error;

    fn read_track(&self, volume: VolumeId, track: u32) -> Result<Option<Vec<u8>>, Self::Error> {
        self.db.get_cf(self.cf(), track_key(volume, track))
    }

    fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Self::Error> {
        let start = track_key(volume, from);
        // Stay within this volume's keys.
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound((volume.0 + 1).to_be_bytes().to_vec());
        let mut iter = self
            .db
            .iterator_cf_opt(self.cf(), options, IteratorMode::From(&start, Direction::Forward));
        match iter.next().transpose()? {
            Some((key, _)) if key[..8] == volume.0.to_be_bytes() => Ok(Some(u32::from_be_bytes(
                key[8..12].try_into().expect("track keys are 12 bytes"),
            ))),
            _ => Ok(None),
        }
    }
}
