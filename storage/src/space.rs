//! Disk space: what the filesystem holding a data directory has, what the state and the
//! snapshots use of it, and giving back what deleted volumes and zeroed tracks held.
//!
//! RocksDB gives space back only through compaction: a deleted range stays on disk (as
//! tombstones over its table and blob files) until it is compacted, and a blob file goes only
//! once no table file points into it. The apply path notes every volume whose tracks it
//! dropped; [`Space::reclaim`] compacts those volumes' key ranges, and when garbage makes up a
//! large share of the blob files, collects it (which rewrites the live blocks it shares files
//! with). The current snapshot's checkpoint still pins the files it links: the caller takes a
//! new snapshot afterwards (see the node's space keeper).

use crate::db::{volume_track_range, CF_BLOCKS, CF_SUMS, SNAPSHOT_CFS};
use rocksdb::DB;
use statemachine::VolumeId;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Volumes whose tracks an apply dropped (deleted, or zeroed), not compacted yet.
pub(crate) type Dropped = Arc<Mutex<BTreeSet<VolumeId>>>;

/// Garbage in the blob files is collected once it is at least this share of them.
const COLLECT_AT: f64 = 0.25;

/// This node's disk as storage sees it.
#[derive(Clone)]
pub struct Space {
    pub(crate) db: Arc<DB>,
    pub(crate) dir: PathBuf,
    pub(crate) dropped: Dropped,
    /// The last `usage` measured, for readers that must not wait on RocksDB's properties.
    pub(crate) last: Arc<Mutex<Usage>>,
}

/// What the state and its snapshots hold on disk, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live state: table files, and blob files less the garbage in them.
    pub state: u64,
    /// Garbage in the blob files: deleted or overwritten blocks not collected yet.
    pub garbage: u64,
}

/// What one [`Space::reclaim`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Volumes whose key ranges were compacted.
    pub volumes: usize,
    /// Whether blob garbage was collected.
    pub collected: bool,
}

impl Space {
    /// The usage as last measured by [`Space::usage`] (the space keeper measures it every
    /// second, off the async workers): the admin API and metrics read this.
    pub fn last_usage(&self) -> Usage {
        *self.last.lock().expect("not poisoned")
    }

    /// What the state holds on disk (as RocksDB reports it, every state column family).
    /// Blocking: RocksDB's properties wait on its mutex, busy under heavy writes.
    pub fn usage(&self) -> Usage {
        let usage = self.measure();
        *self.last.lock().expect("not poisoned") = usage;
        usage
    }

    fn measure(&self) -> Usage {
        let property = |cf: &str, name: &str| {
            let handle = self.db.cf_handle(cf).expect("column families are created at open");
            self.db.property_int_value_cf(handle, name).ok().flatten().unwrap_or(0)
        };
        SNAPSHOT_CFS.iter().fold(Usage::default(), |total, cf| {
            let garbage = property(cf, "rocksdb.live-blob-file-garbage-size");
            let blobs = property(cf, "rocksdb.live-blob-file-size").saturating_sub(garbage);
            Usage {
                state: total.state + property(cf, "rocksdb.live-sst-files-size") + blobs,
                garbage: total.garbage + garbage,
            }
        })
    }

    /// Bytes of the filesystem holding the data directory: (size, free to this process).
    pub fn filesystem(&self) -> io::Result<(u64, u64)> {
        Ok((total_bytes(&self.dir)?, free_bytes(&self.dir)?))
    }

    /// Whether an apply dropped tracks that are not compacted yet.
    pub fn has_dropped(&self) -> bool {
        !self.dropped.lock().expect("not poisoned").is_empty()
    }

    /// Compacts the key ranges of the volumes whose tracks were dropped, then collects the blob
    /// garbage if it is a large share (or any, with `pressed`: the disk is short). Blocking: it
    /// reads and writes table and blob files; run it off the async workers.
    pub fn reclaim(&self, pressed: bool) -> Result<Reclaimed, rocksdb::Error> {
        let volumes = std::mem::take(&mut *self.dropped.lock().expect("not poisoned"));
        let (sums, blocks) = (self.cf(CF_SUMS), self.cf(CF_BLOCKS));
        for volume in &volumes {
            let (from, to) = volume_track_range(*volume);
            self.db.compact_range_cf(sums, Some(from), Some(to));
            self.db.compact_range_cf(blocks, Some(from), Some(to));
        }
        let usage = self.usage();
        let share = usage.garbage as f64 / (usage.state + usage.garbage).max(1) as f64;
        // Collecting writes the live blocks again before it drops the old files: only with
        // room for that, or RocksDB itself would run out of space mid-compaction.
        let room = free_bytes(&self.dir).unwrap_or(0) > usage.state;
        let collect = usage.garbage > 0 && (share >= COLLECT_AT || pressed) && room;
        if collect {
            // Every blob file is old enough for this one compaction: live blocks move to new
            // files and the old ones go. Then back to the everyday setting (see `db.rs`).
            self.db
                .set_options_cf(blocks, &[("blob_garbage_collection_age_cutoff", "1.0")])?;
            let mut options = rocksdb::CompactOptions::default();
            options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            self.db
                .compact_range_cf_opt(blocks, None::<&[u8]>, None::<&[u8]>, &options);
            self.db.set_options_cf(
                blocks,
                &[("blob_garbage_collection_age_cutoff", crate::db::BLOB_GC_AGE_CUTOFF)],
            )?;
        }
        Ok(Reclaimed {
            volumes: volumes.len(),
            collected: collect,
        })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }
}

/// Bytes of the filesystem holding `dir`.
pub fn total_bytes(dir: &Path) -> io::Result<u64> {
    let stats = statvfs(dir)?;
    #[allow(clippy::unnecessary_cast)]
    Ok((stats.f_blocks as u64).saturating_mul(stats.f_frsize as u64))
}

fn statvfs(dir: &Path) -> io::Result<libc::statvfs> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stats` a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats)
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stats = statvfs(dir)?;
    // The field types differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_real_directory_has_some_free_space_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::free_bytes(dir.path()).unwrap() > 0);
        assert!(super::free_bytes(&dir.path().join("missing")).is_err());
    }
}
