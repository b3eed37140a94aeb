//! The RocksDB layout: column families, key encodings and options. (The Raft log itself is in
//! segment files, see `log_files.rs`.)

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use statemachine::VolumeId;
use std::path::Path;

/// Raft metadata: the committed id (the vote and the purge point are kept beside the log).
pub const CF_RAFT: &str = "raft";
/// State-machine metadata: volume records, hosts, globals, applied log id, membership.
pub const CF_META: &str = "meta";
/// Stored tracks' block hashes, keyed by volume id + track (big-endian): present exactly when
/// the track is stored. Small values, so finding stored tracks never touches track data.
pub const CF_SUMS: &str = "sums";
/// Track contents in blocks, keyed by volume id + track + block (big-endian). Absent = zeros.
pub const CF_BLOCKS: &str = "blocks";
/// The audit history, keyed by log index. Never truncated with the log.
pub const CF_AUDIT: &str = "audit";

pub const ALL_CFS: [&str; 5] = [CF_RAFT, CF_META, CF_SUMS, CF_BLOCKS, CF_AUDIT];
/// What a snapshot carries (the state machine), in this order.
pub const SNAPSHOT_CFS: [&str; 4] = [CF_META, CF_SUMS, CF_BLOCKS, CF_AUDIT];
/// Column families of earlier layouts: a data directory holding one was written by an older
/// build (format 4 kept whole tracks in `tracks` and the Raft log in `log`).
const RETIRED_CFS: [&str; 2] = ["tracks", "log"];

pub const KEY_COMMITTED: &[u8] = b"committed";
pub const KEY_GLOBALS: &[u8] = b"globals";
/// Every host with its mappings, in one value (hosts are few; rewritten when they change).
pub const KEY_HOSTS: &[u8] = b"hosts";
/// The cluster id and every Metro Mirror path, in one value (rewritten when they change).
pub const KEY_PATHS: &[u8] = b"paths";
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

/// The key of one block of a track in the blocks column family.
pub fn block_key(volume: VolumeId, track: u32, block: u32) -> [u8; 13] {
    let mut key = [0; 13];
    key[..12].copy_from_slice(&track_key(volume, track));
    key[12] = u8::try_from(block).expect("a track has at most 16 blocks");
    key
}

/// The volume and track a key of the sums column family names.
pub fn parse_track_key(key: &[u8]) -> Option<(VolumeId, u32)> {
    let volume = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let track = u32::from_be_bytes(key.get(8..12)?.try_into().ok()?);
    Some((VolumeId(volume), track))
}

/// The key range holding every track (or block) of a volume.
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

/// Memtables of all column families together, at most. With the state written without a WAL
/// (see `state_machine.rs`), this is also about how much a restart re-applies from the log,
/// and what a flush may write to the disk at any moment (`UNFLUSHED_MAX`).
const WRITE_BUFFERS: usize = 128 << 20;
/// The most the state holds in memory that its next flush writes to the disk: a disk guard
/// keeps this free on top of its reserve.
pub const UNFLUSHED_MAX: u64 = WRITE_BUFFERS as u64;
/// One block cache for every column family.
const BLOCK_CACHE: usize = 32 << 20;

pub(crate) fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // The state is written without a WAL: every column family flushes together, so what is on
    // disk after a crash is always the state after one whole entry.
    opts.set_atomic_flush(true);
    opts.set_db_write_buffer_size(WRITE_BUFFERS);
    opts.set_max_background_jobs(4);
    opts.set_bytes_per_sync(1 << 20);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

/// Per column family: track blocks are kept out of LSM compaction in blob files (written once
/// at flush, rewritten only by blob garbage collection), uncompressed. Garbage collection
/// relocates live blocks from the oldest tenth of the blob files only: at a quarter, sustained
/// writes under perf ran at 166 against 278 MiB/s (one run each, docs/PERFORMANCE.md); files
/// whose blocks were all overwritten are dropped without it.
pub(crate) const BLOB_GC_AGE_CUTOFF: &str = "0.1";

fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut opts = db_options();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(32 << 20);
    if name == CF_BLOCKS {
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(1024);
        opts.set_blob_file_size(256 << 20);
        opts.set_blob_compression_type(rocksdb::DBCompressionType::None);
        opts.set_enable_blob_gc(true);
        opts.set_blob_gc_age_cutoff(BLOB_GC_AGE_CUTOFF.parse().expect("a number"));
        opts.set_write_buffer_size(64 << 20);
    }
    opts
}

fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE);
    ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &cache)))
        .collect()
}

pub(crate) fn open_db(path: &Path) -> Result<DB, OpenError> {
    refuse_retired_layout(path)?;
    let failed = |source| OpenError::Db {
        path: path.display().to_string(),
        source,
    };
    let mut options = db_options();
    // A simulated node never stops cleanly: it crashes, and what was not flushed is gone (the
    // log brings it back). Production flushes at close, which only shortens the next start.
    if crate::runtime::simulating() {
        options = options
            .get_options_from_string("avoid_flush_during_shutdown=true")
            .map_err(failed)?;
    }
    DB::open_cf_descriptors(&options, path, descriptors()).map_err(failed)
}

/// Opens a database read-only (an offline audit, a snapshot's checkpoint).
pub(crate) fn open_db_read_only(path: &Path) -> Result<DB, OpenError> {
    refuse_retired_layout(path)?;
    DB::open_cf_descriptors_read_only(&db_options(), path, descriptors(), false).map_err(|source| OpenError::Db {
        path: path.display().to_string(),
        source,
    })
}

/// A data directory written by an older build is refused with a message that says so, not with
/// RocksDB's complaint about unknown column families.
fn refuse_retired_layout(path: &Path) -> Result<(), OpenError> {
    let Ok(existing) = DB::list_cf(&Options::default(), path) else {
        return Ok(()); // A new directory.
    };
    match existing.iter().find(|cf| RETIRED_CFS.contains(&cf.as_str())) {
        Some(_) => Err(OpenError::Corrupt {
            path: path.display().to_string(),
            reason: format!(
                "stored value has format version 4, this build reads version {}: the data \
                 directory was written by an older flashcopy (no migration exists)",
                crate::codec::FORMAT_VERSION
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a value without the WAL (as the state is written), closes, reopens, reads it.
    fn survives_a_close(dir: &Path) -> bool {
        let mut no_wal = rocksdb::WriteOptions::default();
        no_wal.disable_wal(true);
        {
            let db = open_db(dir).unwrap();
            db.put_cf_opt(db.cf_handle(CF_META).unwrap(), b"k", b"v", &no_wal)
                .unwrap();
        }
        let db = open_db(dir).unwrap();
        let found = db.get_cf(db.cf_handle(CF_META).unwrap(), b"k").unwrap().is_some();
        db.delete_cf(db.cf_handle(CF_META).unwrap(), b"k").unwrap();
        db.flush().unwrap();
        found
    }

    #[test]
    fn a_simulated_node_closes_without_a_flush_and_a_real_one_with() {
        let dir = tempfile::tempdir().unwrap();
        assert!(survives_a_close(dir.path()), "a clean stop flushes");
        crate::runtime::simulate_on_this_thread(1);
        let simulated = survives_a_close(dir.path());
        crate::runtime::stop_simulating_on_this_thread();
        assert!(!simulated, "a simulated crash loses what was not flushed");
    }
}
