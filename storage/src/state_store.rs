//! The state-machine store: the in-memory `State` (volume metadata) over RocksDB (records,
//! tracks, audit). Applying an entry writes its track ops, touched records, audit record and
//! the applied log id in one `WriteBatch`, so what is on disk is always the state after some
//! whole entry. Those writes are not synced: the log entry they come from is, and replay after a
//! crash re-applies whatever the state lost.

use crate::audit::{AuditFilter, AuditRecord, Journal, JournalError, Rebuilt, Until, Verification};
use crate::codec;
use crate::db::*;
use crate::records::{self, Loader, MetaWrite};
use crate::snapshot::{self, Meta};
use crate::tracks::DbTracks;
use crate::types::{NodeInfo, Response, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, DB};
use statemachine::{CommandError, Event, Globals, State, TrackOp};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// Builds a `StorageError` from openraft's `StorageIOError` constructors.
macro_rules! io_error {
    ($kind:ident, $($arg:expr),+) => {
        StorageError::from(StorageIOError::$kind($($arg),+))
    };
}

/// Sent after every applied command, so a proposer can learn how a held write ended.
#[derive(Clone, Debug)]
pub struct AppliedNotice {
    pub index: u64,
    pub events: Arc<Vec<Event>>,
}

struct Inner {
    state: State,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, NodeInfo>,
}

/// Told how long each apply batch took and how many entries it held (for metrics).
pub type ApplyObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    inner: Arc<RwLock<Inner>>,
    snapshots: PathBuf,
    notices: broadcast::Sender<AppliedNotice>,
    sequence: Arc<AtomicU64>,
    observer: Option<ApplyObserver>,
}

/// The read side of the state machine, shared with the node.
#[derive(Clone)]
pub struct StateView {
    db: Arc<DB>,
    inner: Arc<RwLock<Inner>>,
    notices: broadcast::Sender<AppliedNotice>,
}

/// Why a read of volume data failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Refused(#[from] CommandError),
    #[error("storage read failed: {0}")]
    Storage(#[from] rocksdb::Error),
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column families are created at open")
}

fn corrupt(path: &str, reason: impl ToString) -> OpenError {
    OpenError::Corrupt {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads the state-machine metadata from the meta column family.
fn load(db: &DB) -> std::result::Result<Inner, OpenError> {
    let mut globals = State::new().globals();
    let mut records = Loader::default();
    let mut last_applied = None;
    let mut membership = StoredMembership::default();
    for item in db.iterator_cf(cf(db, CF_META), IteratorMode::Start) {
        let (key, value) = item.map_err(|e| corrupt("meta", e))?;
        let key = key.as_ref();
        if records.take(key, &value).map_err(|e| corrupt("volume record", e))? {
            continue;
        } else if key == KEY_GLOBALS {
            globals = codec::decode::<Globals>(&value).map_err(|e| corrupt("globals", e))?;
        } else if key == KEY_APPLIED {
            last_applied = codec::decode(&value).map_err(|e| corrupt("applied", e))?;
        } else if key == KEY_MEMBERSHIP {
            membership = codec::decode(&value).map_err(|e| corrupt("membership", e))?;
        }
    }
    Ok(Inner {
        state: State::from_records(globals, records.finish()),
        last_applied,
        membership,
    })
}

/// Whether a snapshot install was cut off (its marker is still there).
fn install_interrupted(db: &DB) -> std::result::Result<bool, OpenError> {
    Ok(db
        .get_cf(cf(db, CF_META), KEY_INSTALLING)
        .map_err(|e| corrupt("meta", e))?
        .is_some())
}

impl StateMachineStore {
    pub(crate) fn open(db: Arc<DB>, snapshots: PathBuf) -> std::result::Result<Self, OpenError> {
        if install_interrupted(&db)? {
            // A snapshot install was cut off: redo it from the saved snapshot file.
            let (_, path) = current_snapshot(&snapshots)
                .map_err(|e| corrupt("snapshots", e))?
                .ok_or_else(|| corrupt("snapshots", "an install was interrupted and its snapshot file is gone"))?;
            install_from_file(&db, &path).map_err(|e| corrupt("snapshot install", e))?;
        }
        remove_leftovers(&snapshots);
        let inner = load(&db)?;
        // Snapshot ids must not repeat across restarts: start the sequence at the start time.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(StateMachineStore {
            db,
            inner: Arc::new(RwLock::new(inner)),
            snapshots,
            notices: broadcast::channel(1024).0,
            sequence: Arc::new(AtomicU64::new(start)),
            observer: None,
        })
    }

    /// Reports every apply batch to `observer`.
    pub fn with_apply_observer(mut self, observer: ApplyObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn view(&self) -> StateView {
        StateView {
            db: self.db.clone(),
            inner: self.inner.clone(),
            notices: self.notices.clone(),
        }
    }

    fn apply_blocking(&self, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<Response>> {
        let started = Instant::now();
        let count = entries.len();
        let _span = tracing::debug_span!(
            "apply",
            first = entries.first().map(|e| e.log_id.index),
            last = entries.last().map(|e| e.log_id.index),
            entries = count,
        )
        .entered();
        let responses = self.apply_entries(entries)?;
        let elapsed = started.elapsed();
        tracing::debug!(elapsed_us = elapsed.as_micros() as u64, "applied");
        if let Some(observer) = &self.observer {
            observer(count, elapsed);
        }
        Ok(responses)
    }

    fn apply_entries(&self, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<Response>> {
        let mut inner = self.inner.write().expect("state lock is not poisoned");
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.log_id.index;
            let mut batch = WriteBatch::default();
            let mut response = Response::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                    batch.put_cf(cf(&self.db, CF_META), KEY_MEMBERSHIP, encode(&inner.membership)?);
                }
                EntryPayload::Normal(request) => {
                    let tracks = DbTracks { db: &self.db };
                    // A failed track read leaves the in-memory state half-changed: the error is
                    // fatal to openraft, and a restart reloads the last whole state from disk.
                    let applied = statemachine::apply(&mut inner.state, &tracks, &request.command, request.time)
                        .map_err(|e| io_error!(read_state_machine, &e))?;
                    self.stage_ops(&mut batch, &applied.ops);
                    let meta = cf(&self.db, CF_META);
                    let writes = records::stage(&inner.state, &applied.touched, &applied.details)
                        .map_err(|e| io_error!(write_state_machine, &e))?;
                    for write in writes {
                        match write {
                            MetaWrite::Put(key, value) => batch.put_cf(meta, key, value),
                            MetaWrite::Delete(key) => batch.delete_cf(meta, key),
                            MetaWrite::DeleteRange(from, to) => batch.delete_range_cf(meta, from, to),
                        }
                    }
                    batch.put_cf(cf(&self.db, CF_META), KEY_GLOBALS, encode(&inner.state.globals())?);
                    let audit = AuditRecord {
                        index,
                        time: inner.state.globals().last_time,
                        command: request.command.journal_form(),
                        result: applied.result.clone(),
                        events: applied.events.clone(),
                    };
                    batch.put_cf(cf(&self.db, CF_AUDIT), index_key(index), encode(&audit)?);
                    response = Response {
                        result: Some(applied.result),
                        events: applied.events,
                    };
                }
            }
            inner.last_applied = Some(entry.log_id);
            batch.put_cf(cf(&self.db, CF_META), KEY_APPLIED, encode(&inner.last_applied)?);
            self.db.write(batch).map_err(|e| io_error!(write_state_machine, &e))?;
            if response.result.is_some() {
                // Nobody listening is fine.
                let _ = self.notices.send(AppliedNotice {
                    index,
                    events: Arc::new(response.events.clone()),
                });
            }
            responses.push(response);
        }
        Ok(responses)
    }

    fn stage_ops(&self, batch: &mut WriteBatch, ops: &[TrackOp]) {
        let tracks = cf(&self.db, CF_TRACKS);
        for op in ops {
            match op {
                TrackOp::Write { volume, track, data }
                | TrackOp::Copy {
                    volume, track, data, ..
                } => batch.put_cf(tracks, track_key(*volume, *track), data),
                TrackOp::Zero { volume, track } => batch.delete_cf(tracks, track_key(*volume, *track)),
                TrackOp::DropVolume { volume } => {
                    let (from, to) = volume_track_range(*volume);
                    batch.delete_range_cf(tracks, from, to);
                }
            }
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value).map_err(|e| io_error!(write_state_machine, &e))
}

/// The saved current snapshot: its meta and file, if any.
fn current_snapshot(dir: &Path) -> std::io::Result<Option<(Meta, PathBuf)>> {
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
fn set_current_snapshot(dir: &Path, file: &str) -> std::io::Result<()> {
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
fn remove_leftovers(dir: &Path) {
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
fn install_from_file(db: &DB, path: &Path) -> std::io::Result<()> {
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

fn snapshot_error(e: impl std::fmt::Display) -> StorageError<u64> {
    io_error!(write_snapshot, None, openraft::AnyError::error(e.to_string()))
}

/// Builds a snapshot from a checkpoint taken when the builder was made (between two applies).
pub struct SnapshotBuilder {
    checkpoint: std::result::Result<PathBuf, String>,
    dir: PathBuf,
    meta: Meta,
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
                let cfs = ALL_CFS.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                let db = DB::open_cf_for_read_only(&db_options(), &checkpoint, cfs, false)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
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

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, NodeInfo>)> {
        let inner = self.inner.read().expect("state lock is not poisoned");
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.apply_blocking(entries))
            .await
            .expect("apply task does not panic")
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let (last_applied, membership) = {
            let inner = self.inner.read().expect("state lock is not poisoned");
            (inner.last_applied, inner.membership.clone())
        };
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let index = last_applied.map_or(0, |l| l.index);
        let snapshot_id = format!("{index:020}-{seq}");
        let checkpoint_path = self.snapshots.join(format!("checkpoint-{snapshot_id}"));
        // Creating a checkpoint flushes the memtables: not on an async worker thread.
        let db = self.db.clone();
        let checkpoint = tokio::task::spawn_blocking(move || {
            rocksdb::checkpoint::Checkpoint::new(&db)
                .and_then(|c| c.create_checkpoint(&checkpoint_path))
                .map(|()| checkpoint_path)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        SnapshotBuilder {
            checkpoint,
            dir: self.snapshots.clone(),
            meta: Meta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshots.join(format!("incoming-{seq}.part"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| io_error!(write_snapshot, None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<tokio::fs::File>) -> Result<()> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        // Keep our own copy as the current snapshot (the handle may be any file), then install it.
        let mut received = *snapshot;
        received
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(snapshot_error)?;
        let file_name = format!("{}.snap", meta.snapshot_id);
        let path = self.snapshots.join(&file_name);
        let tmp = self.snapshots.join(format!("{file_name}.tmp"));
        let mut copy = tokio::fs::File::create(&tmp).await.map_err(snapshot_error)?;
        tokio::io::copy(&mut received, &mut copy)
            .await
            .map_err(snapshot_error)?;
        copy.flush().await.map_err(snapshot_error)?;
        copy.sync_all().await.map_err(snapshot_error)?;
        drop((copy, received));
        snapshot::verify(&tmp).map_err(snapshot_error)?;
        std::fs::rename(&tmp, &path).map_err(snapshot_error)?;
        set_current_snapshot(&self.snapshots, &file_name).map_err(snapshot_error)?;
        remove_incoming(&self.snapshots);
        let (db, inner) = (self.db.clone(), self.inner.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut inner = inner.write().expect("state lock is not poisoned");
            install_from_file(&db, &path).map_err(snapshot_error)?;
            *inner = load(&db).map_err(snapshot_error)?;
            Ok(())
        })
        .await
        .expect("install task does not panic")
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        match current_snapshot(&self.snapshots).map_err(snapshot_error)? {
            None => Ok(None),
            Some((meta, path)) => {
                let file = tokio::fs::File::open(&path).await.map_err(snapshot_error)?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(file),
                }))
            }
        }
    }
}

/// Removes partial files of received snapshots (their content has been copied or abandoned).
fn remove_incoming(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("incoming-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl StateView {
    /// A read-only view of a node's database (stopped, or a copy): for offline audits.
    pub(crate) fn open_read_only(db: Arc<DB>) -> std::result::Result<StateView, OpenError> {
        if install_interrupted(&db)? {
            return Err(corrupt(
                "meta",
                "a snapshot install was cut off here; start the node once so it finishes it",
            ));
        }
        let inner = load(&db)?;
        Ok(StateView {
            db,
            inner: Arc::new(RwLock::new(inner)),
            notices: broadcast::channel(1).0,
        })
    }

    /// Runs a query against the state as of the last applied entry.
    pub fn query<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.read().expect("state lock is not poisoned").state)
    }

    /// The last applied log index and the state digest at that index, read together.
    pub fn applied(&self) -> (u64, u64) {
        let inner = self.inner.read().expect("state lock is not poisoned");
        (inner.last_applied.map_or(0, |l| l.index), inner.state.digest())
    }

    pub fn membership(&self) -> StoredMembership<u64, NodeInfo> {
        self.inner
            .read()
            .expect("state lock is not poisoned")
            .membership
            .clone()
    }

    /// Reads volume data as a host sees it, consistent with one applied index.
    pub fn read(&self, volume: &str, offset: u64, length: u64) -> std::result::Result<Vec<u8>, ReadError> {
        let inner = self.inner.read().expect("state lock is not poisoned");
        let id = inner.state.check_range(volume, offset, length)?;
        Ok(inner.state.read(&DbTracks { db: &self.db }, id, offset, length)?)
    }

    /// Audit records after index `after` that pass `filter`, at most `limit`.
    pub fn audit(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> std::result::Result<Vec<AuditRecord>, JournalError> {
        self.journal().list(filter, after, limit)
    }

    /// The journal as of the last applied entry. Its snapshot is taken under the state lock, so
    /// it never sees a snapshot install half done.
    fn journal(&self) -> Journal<'_> {
        let _applied = self.inner.read().expect("state lock is not poisoned");
        Journal::new(&self.db)
    }

    /// The metadata (volumes, relationships, bitmaps) as it was at a point of the history,
    /// rebuilt by replaying the journal.
    pub fn state_at(&self, until: Until) -> std::result::Result<Rebuilt, JournalError> {
        self.journal().state_at(until)
    }

    /// Replays the whole journal and compares it with the live state at this node's applied
    /// index (see [`Verification`]).
    pub fn verify(&self) -> std::result::Result<Verification, JournalError> {
        let (journal, index, live, names) = {
            // The journal snapshot (which also holds the stored tracks) and the live metadata
            // come from one applied index.
            let inner = self.inner.read().expect("state lock is not poisoned");
            let journal = Journal::new(&self.db);
            let index = inner.last_applied.map_or(0, |l| l.index);
            let names = inner
                .state
                .records()
                .map(|r| (r.volume.id, r.volume.name.clone()))
                .collect();
            (journal, index, inner.state.metadata_digest(), names)
        };
        journal.verify(&live, &names, index)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AppliedNotice> {
        self.notices.subscribe()
    }
}
