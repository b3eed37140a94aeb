//! Stored tracks as the state machine sees them.

use crate::db::{track_key, CF_TRACKS};
use rocksdb::DB;
use statemachine::{TrackReader, VolumeId};

pub(crate) struct DbTracks<'a> {
    pub(crate) db: &'a DB,
}

impl TrackReader for DbTracks<'_> {
    type Error = rocksdb::Error;

    fn read_track(&self, volume: VolumeId, track: u32) -> Result<Option<Vec<u8>>, Self::Error> {
        let cf = self
            .db
            .cf_handle(CF_TRACKS)
            .expect("column families are created at open");
        self.db.get_cf(cf, track_key(volume, track))
    }
}
