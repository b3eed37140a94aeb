//! Snapshots on disk: the directory of snapshot files (which one is current), building one from
//! a RocksDB checkpoint, and installing one into the DB so that a cut-off install redoes itself.

use crate::applied_state::cf;
use crate::db::*;
use crate::snapshot::{self, Meta};
use crate::types::TypeConfig;
use openraft::storage::Snapshot;
use openraft::{RaftSnapshotBuilder, StorageError, StorageIOError};
use rocksdb::{WriteBatch, DB};
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// The saved current snapshot: its meta and file, if any.
pub(crate) fn current_snapshot(dir: &Path) -> std::io::Result<Option<(Meta, PathBuf)>> {
    let name = match std::fs::read_to_string(dir.join("current")) {
        Ok(name) => name,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let path = dir.join(name.trim());
    let meta = snapshot::Reader::open(&path)?.meta;
    Ok(Some((meta, path)))
}

/// Makes `file` (in `dir`, complete and synced) the current snapshot, durably, then removes
/// older snapshot files.
pub(crate) fn set_current_snapshot(dir: &Path, file: &str) -> std::io::Result<()> {
    let tmp = dir.join("current.tmp");
    std::fs::write(&tmp, file)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("current"))?;
    sync_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".snap") && name != file {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes what a crash can leave behind: checkpoints of unfinished snapshot builds and partial
/// files. Their hard links would otherwise keep old SST files alive forever.
pub(crate) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("checkpoint-") {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with("incoming-") || name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Replaces the whole state-machine content of the DB with a snapshot file's. A marker key
/// makes an interrupted install redo itself at the next open.
pub(crate) fn install_from_file(db: &DB, path: &Path) -> std::io::Result<()> {
    let io = |e: rocksdb::Error| std::io::Error::other(e.to_string());
    let mut synced = rocksdb::WriteOptions::default();
    synced.set_sync(true);
    let mut reader = snapshot::Reader::open(path)?;
    let mut batch = WriteBatch::default();
    for name in SNAPSHOT_CFS {
        batch.delete_range_cf(cf(db, name), &[][..], &[0xFFu8; 16][..]);
    }
    batch.put_cf(cf(db, CF_META), KEY_INSTALLING, b"1");
    db.write_opt(batch, &synced).map_err(io)?;
    let mut batch = WriteBatch::default();
    while let Some((name, key, value)) = reader.next_frame()? {
        if name == CF_META && key == KEY_INSTALLING {
            continue;
        }
        batch.put_cf(cf(db, name), key, value);
        if batch.size_in_bytes() > 16 << 20 {
            db.write(std::mem::take(&mut batch)).map_err(io)?;
        }
    }
    batch.delete_cf(cf(db, CF_META), KEY_INSTALLING);
    db.write_opt(batch, &synced).map_err(io)
}

pub(crate) fn snapshot_error(e: impl std::fmt::Display) -> StorageError<u64> {
    io_error!(write_snapshot, None, openraft::AnyError::error(e.to_string()))
}

/// Builds a snapshot from a checkpoint taken when the builder was made (between two applies).
pub struct SnapshotBuilder {
    pub(crate) checkpoint: std::result::Result<PathBuf, String>,
    pub(crate) dir: PathBuf,
    pub(crate) meta: Meta,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let checkpoint = self.checkpoint.clone().map_err(snapshot_error)?;
        let (dir, meta) = (self.dir.clone(), self.meta.clone());
        let file_name = format!("{}.snap", meta.snapshot_id);
        let path = dir.join(&file_name);
        let written = tokio::task::spawn_blocking({
            let (meta, path, checkpoint) = (meta.clone(), path.clone(), checkpoint.clone());
            move || -> std::io::Result<()> {
                let db = open_db_read_only(&checkpoint).map_err(|e| std::io::Error::other(e.to_string()))?;
                snapshot::write(&db, &meta, &path)?;
                drop(db);
                set_current_snapshot(&dir, &file_name)
            }
        })
        .await
        .expect("snapshot task does not panic");
        let _ = std::fs::remove_dir_all(&checkpoint);
        written.map_err(snapshot_error)?;
        let file = tokio::fs::File::open(&path).await.map_err(snapshot_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

/// Removes partial files of received snapshots (their content has been copied or abandoned).
pub(crate) fn remove_incoming(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("incoming-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
