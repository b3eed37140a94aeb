//! Snapshots on disk: the directory of snapshot files (which one is current), building one from
//! a RocksDB checkpoint, and installing one into the DB so that a cut-off install redoes itself.

use crate::applied_state::cf;
use crate::codec;
use crate::db::*;
use crate::snapshot::{self, Meta};
use crate::snapshot_data::SnapshotData;
use crate::types::TypeConfig;
use openraft::storage::Snapshot;
use openraft::{RaftSnapshotBuilder, StorageError, StorageIOError};
use rocksdb::{WriteBatch, DB};
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// The current snapshot as it is kept on disk.
pub(crate) enum Kept {
    /// Built here: a RocksDB checkpoint (hard links to the state's files as of the snapshot)
    /// in `<id>.ckpt`, its meta in `<id>.meta`. The stream a follower needs is written from it
    /// only when one asks (`stream_of`).
    Checkpoint(PathBuf),
    /// Received from the leader: the stream itself, `<id>.snap`.
    Stream(PathBuf),
}

/// The saved current snapshot: its meta and where it is, if any.
pub(crate) fn current_snapshot(dir: &Path) -> std::io::Result<Option<(Meta, Kept)>> {
    let id = match std::fs::read_to_string(dir.join("current")) {
        Ok(id) => id.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Directories written before snapshots were checkpoints name the stream file itself.
    let id = id.strip_suffix(".snap").unwrap_or(&id).to_string();
    let checkpoint = dir.join(format!("{id}.ckpt"));
    if checkpoint.is_dir() {
        let bytes = std::fs::read(dir.join(format!("{id}.meta")))?;
        let meta =
            codec::decode(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        return Ok(Some((meta, Kept::Checkpoint(checkpoint))));
    }
    let path = dir.join(format!("{id}.snap"));
    let meta = snapshot::Reader::open(&path)?.meta;
    Ok(Some((meta, Kept::Stream(path))))
}

/// Makes snapshot `id` (complete and synced in `dir`) the current one, durably, then removes
/// every other snapshot: older checkpoints pin the state's files as they were, so space freed
/// since (a deleted volume, say) comes back only once they go.
pub(crate) fn set_current_snapshot(dir: &Path, id: &str) -> std::io::Result<()> {
    let tmp = dir.join("current.tmp");
    std::fs::write(&tmp, id)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("current"))?;
    sync_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((stem, kind)) = name.rsplit_once('.') else {
            continue;
        };
        if stem == id || !matches!(kind, "snap" | "meta" | "ckpt") {
            continue;
        }
        let _ = if kind == "ckpt" {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
    }
    Ok(())
}

/// Makes a checkpoint (taken at `checkpoint`, in `dir`) the current snapshot with `meta`: the
/// meta is on disk before the checkpoint takes its name, so a kept checkpoint always has one.
pub(crate) fn keep_checkpoint(dir: &Path, checkpoint: &Path, meta: &Meta) -> std::io::Result<()> {
    let id = &meta.snapshot_id;
    let bytes = codec::encode(meta).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!("{id}.meta.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{id}.meta")))?;
    std::fs::rename(checkpoint, dir.join(format!("{id}.ckpt")))?;
    sync_dir(dir)?;
    set_current_snapshot(dir, id)?;
    // A received stream of the same id is not needed once its checkpoint is kept.
    let _ = std::fs::remove_file(dir.join(format!("{id}.snap")));
    Ok(())
}

/// The data of the current snapshot as openraft moves it: a received stream is its file; a
/// checkpoint becomes a stream only when read (a follower being sent it), from private hard
/// links to its files taken now, so a newer snapshot may replace it meanwhile. Call under the
/// snapshot lock (see `StateMachineStore`).
pub(crate) fn data_of(dir: &Path, meta: &Meta, kept: &Kept, seq: u64) -> std::io::Result<SnapshotData> {
    match kept {
        Kept::Stream(path) => Ok(SnapshotData::file(crate::runtime::File::from_std(std::fs::File::open(
            path,
        )?))),
        Kept::Checkpoint(checkpoint) => {
            let links = dir.join(format!("sending-{seq}"));
            std::fs::create_dir(&links)?;
            for entry in std::fs::read_dir(checkpoint)? {
                let entry = entry?;
                std::fs::hard_link(entry.path(), links.join(entry.file_name()))?;
            }
            let (meta, stream) = (meta.clone(), dir.join(format!("sending-{seq}.stream")));
            let from = links.clone();
            let make = Box::new(move || {
                let written = open_db_read_only(&from)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|db| snapshot::write(&db, &meta, &stream));
                let _ = std::fs::remove_dir_all(&from);
                let file = written.and_then(|()| std::fs::File::open(&stream));
                // Open handles keep the bytes: the stream costs space only while it is read.
                let _ = std::fs::remove_file(&stream);
                file
            });
            Ok(SnapshotData::lazy(make, &links))
        }
    }
}

/// A kept snapshot as a stream file, for redoing an interrupted install at open: a received
/// one is its file; a checkpoint is written out (`true`: remove it after use).
pub(crate) fn stream_of(dir: &Path, meta: &Meta, kept: &Kept) -> std::io::Result<(PathBuf, bool)> {
    match kept {
        Kept::Stream(path) => Ok((path.clone(), false)),
        Kept::Checkpoint(checkpoint) => {
            let path = dir.join(format!("{}.stream.tmp", meta.snapshot_id));
            let db = open_db_read_only(checkpoint).map_err(|e| std::io::Error::other(e.to_string()))?;
            snapshot::write(&db, meta, &path)?;
            Ok((path, true))
        }
    }
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes what a crash can leave behind: checkpoints of unfinished snapshot builds and partial
/// files (streams being written or sent included). Their hard links would otherwise keep old
/// state files alive forever.
pub(crate) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("checkpoint-") || name.starts_with("sending-") {
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(entry.path());
        } else if name.starts_with("incoming-") || name.ends_with(".tmp") || name.ends_with(".part") {
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

/// Builds a snapshot from a checkpoint taken when the builder was made (between two applies):
/// the checkpoint is the snapshot. Building costs a flush and hard links, never a copy of the
/// state, so the log can be purged as often as it needs to be.
pub struct SnapshotBuilder {
    pub(crate) checkpoint: std::result::Result<PathBuf, String>,
    pub(crate) dir: PathBuf,
    pub(crate) meta: Meta,
    /// Held while the current snapshot changes or is being linked for sending.
    pub(crate) lock: SnapshotLock,
}

/// Serialises changes of the current snapshot with reads of it: a build runs in its own task.
pub type SnapshotLock = std::sync::Arc<std::sync::Mutex<()>>;

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let checkpoint = self.checkpoint.clone().map_err(snapshot_error)?;
        let (dir, meta) = (self.dir.clone(), self.meta.clone());
        let meta_path = dir.join(format!("{}.meta", meta.snapshot_id));
        crate::runtime::offload({
            let (meta, lock) = (meta.clone(), self.lock.clone());
            move || {
                let _current = lock.lock().expect("not poisoned");
                keep_checkpoint(&dir, &checkpoint, &meta)
            }
        })
        .await
        .expect("snapshot task does not panic")
        .map_err(snapshot_error)?;
        // openraft keeps only the meta of a snapshot it built (the data goes to followers
        // through `get_current_snapshot`): the meta file stands in for the data here.
        let file = crate::runtime::File::open(meta_path).await.map_err(snapshot_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::file(file)),
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
