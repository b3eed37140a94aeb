//! The RocksDB layout: column families and key encodings.

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use statemachine::VolumeId;
use std::path::Path;

/// Raft log entries, keyed by index (big-endian, so keys sort by index).
pub const CF_LOG: &str = "log";
/// Raft metadata: vote, committed, last purged.
pub const CF_RAFT: &str = "raft";
/// State-machine metadata: volume records, globals, applied log id, membership.
pub const CF_META: &str = "meta";
/// Track contents, keyed by volume id + track (big-endian). Absent = zeros.
pub const CF_TRACKS: &str = "tracks";
/// The audit history, keyed by log index. Never truncated with the log.
pub const CF_AUDIT: &str = "audit";

pub const ALL_CFS: [&str; 5] = [CF_LOG, CF_RAFT, CF_META, CF_TRACKS, CF_AUDIT];
/// What a snapshot carries (the state machine), in this order.
pub const SNAPSHOT_CFS: [&str; 3] = [CF_META, CF_TRACKS, CF_AUDIT];

pub const KEY_VOTE: &[u8] = b"vote";
pub const KEY_COMMITTED: &[u8] = b"committed";
pub const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub const KEY_GLOBALS: &[u8] = b"globals";
pub const KEY_APPLIED: &[u8] = b"applied";
pub const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Present while a snapshot install is under way; see `StateMachineStore::open`.
pub const KEY_INSTALLING: &[u8] = b"installing";
// Volume records, bitmap blocks and held writes: see `records.rs`.

pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn track_key(volume: VolumeId, track: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&volume.0.to_be_bytes());
    key[8..].copy_from_slice(&track.to_be_bytes());
    key
}

/// The volume and track a key of the tracks column family names.
pub fn parse_track_key(key: &[u8]) -> Option<(VolumeId, u32)> {
    let volume = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let track = u32::from_be_bytes(key.get(8..12)?.try_into().ok()?);
    Some((VolumeId(volume), track))
}

/// The key range holding every track of a volume.
pub fn volume_track_range(volume: VolumeId) -> ([u8; 8], [u8; 8]) {
    (volume.0.to_be_bytes(), (volume.0 + 1).to_be_bytes())
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database in {path}: {source}")]
    Db { path: String, source: rocksdb::Error },
    #[error("the data in {path} cannot be read: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("cannot prepare {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub(crate) fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

pub(crate) fn open_db(path: &Path) -> Result<DB, OpenError> {
    let cfs = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, db_options()));
    DB::open_cf_descriptors(&db_options(), path, cfs).map_err(|source| OpenError::Db {
        path: path.display().to_string(),
        source,
    })
}
