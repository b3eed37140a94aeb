//! The state-machine store: applies committed entries with the pure `statemachine` over RocksDB
//! (records, track blocks and their hashes, audit). Applying an entry writes its track ops,
//! touched records, audit record and the applied log id in one `WriteBatch`, so what is on disk
//! is always the state after some whole entry.
//!
//! Those writes skip RocksDB's WAL: the Raft log already holds every entry durably, so a host
//! byte is written once durably (in the log) and once in its place (a track block, at flush).
//! After a crash the column families come back as of their last flush (atomic across all of
//! them, see `db.rs`), and openraft re-applies the log from the applied id found there. The
//! entries a restart needs are kept without a flush at purge: openraft purges only up to a
//! snapshot, and a snapshot's state is on disk (building one takes a RocksDB checkpoint, which
//! flushes every column family; installing one writes through the WAL, synced). See
//! `LogStore::purge_blocking`.

use crate::applied_state::{cf, corrupt, install_interrupted, load, AppliedState};
use crate::audit::AuditRecord;
use crate::codec;
use crate::db::*;
use crate::records::{self, MetaWrite};
use crate::snapshot::{self, Meta};
use crate::snapshot_data::SnapshotData;
use crate::snapshots::{
    current_snapshot, data_of, install_from_file, keep_checkpoint, remove_incoming, remove_leftovers,
    set_current_snapshot, snapshot_error, stream_of, SnapshotBuilder, SnapshotLock,
};
use crate::space::{Dropped, Space};
use crate::tracks::DbTracks;
use crate::types::{NodeInfo, Response, TypeConfig};
use crate::view::{AppliedNotice, StateView};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership};
use rocksdb::{WriteBatch, DB};
use statemachine::{Command, Stamp, TrackOp};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// Told how long each apply batch took and how many entries it held (for metrics).
pub type ApplyObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

/// The mirror tap: told, per applied entry (its index) and in log order, the writes that landed
/// on full-duplex mirror primaries (see `statemachine::Applied::mirrored`). Called with the
/// state lock held: it must only hand the writes over.
pub type MirrorTap = Arc<dyn Fn(u64, Vec<statemachine::Mirrored>) + Send + Sync>;

#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    inner: Arc<RwLock<AppliedState>>,
    snapshots: PathBuf,
    notices: broadcast::Sender<AppliedNotice>,
    sequence: Arc<AtomicU64>,
    observer: Option<ApplyObserver>,
    tap: Option<MirrorTap>,
    /// Volumes whose tracks were dropped, for `Space::reclaim`.
    dropped: Dropped,
    /// Held while the current snapshot changes or is linked for sending.
    snapshot_lock: SnapshotLock,
    /// The disk usage last measured (see `Space::last_usage`).
    usage: Arc<std::sync::Mutex<crate::space::Usage>>,
}

impl StateMachineStore {
    /// `OneNodeAppliesTwice`: whether this node applies each command a second time.
    #[cfg(feature = "sabotage")]
    fn applies_twice(&self) -> bool {
        use statemachine::sabotage::{active, Sabotage, APPLIES_TWICE_IN};
        let node_dir = self.snapshots.parent().and_then(|dir| dir.file_name());
        active(Sabotage::OneNodeAppliesTwice) && node_dir == Some(std::ffi::OsStr::new(APPLIES_TWICE_IN))
    }

    pub(crate) fn open(db: Arc<DB>, snapshots: PathBuf) -> std::result::Result<Self, OpenError> {
        if install_interrupted(&db)? {
            // A snapshot install was cut off: redo it from the saved snapshot file.
            let (meta, kept) = current_snapshot(&snapshots)
                .map_err(|e| corrupt("snapshots", e))?
                .ok_or_else(|| corrupt("snapshots", "an install was interrupted and its snapshot is gone"))?;
            let (path, passing) = stream_of(&snapshots, &meta, &kept).map_err(|e| corrupt("snapshots", e))?;
            install_from_file(&db, &path).map_err(|e| corrupt("snapshot install", e))?;
            if passing {
                let _ = std::fs::remove_file(&path);
            }
        }
        remove_leftovers(&snapshots);
        let inner = load(&db)?;
        // Snapshot ids must not repeat across restarts.
        let start = crate::runtime::sequence_start();
        Ok(StateMachineStore {
            db,
            inner: Arc::new(RwLock::new(inner)),
            snapshots,
            notices: broadcast::channel(1024).0,
            sequence: Arc::new(AtomicU64::new(start)),
            observer: None,
            tap: None,
            dropped: Dropped::default(),
            snapshot_lock: SnapshotLock::default(),
            usage: Default::default(),
        })
    }

    /// Reports every apply batch to `observer`.
    pub fn with_apply_observer(mut self, observer: ApplyObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Hands the writes mirror primaries must send to `tap` (see [`MirrorTap`]).
    pub fn with_mirror_tap(mut self, tap: MirrorTap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// This node's disk: usage, and giving back what dropped tracks held.
    pub fn space(&self) -> Space {
        Space {
            db: self.db.clone(),
            dir: self
                .snapshots
                .parent()
                .map_or_else(|| self.snapshots.clone(), |p| p.to_path_buf()),
            dropped: self.dropped.clone(),
            last: self.usage.clone(),
        }
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
        // The Raft log is this state's write-ahead log: see the module comment.
        let mut no_wal = rocksdb::WriteOptions::default();
        no_wal.disable_wal(true);
        for entry in entries {
            let index = entry.log_id.index;
            let mut batch = WriteBatch::default();
            let mut response = Response::default();
            let mut mirrored = Vec::new();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                    batch.put_cf(cf(&self.db, CF_META), KEY_MEMBERSHIP, encode(&inner.membership)?);
                }
                EntryPayload::Normal(request) => {
                    let tracks = DbTracks::new(&self.db, inner.state.track_size());
                    // A failed track read leaves the in-memory state half-changed: the error is
                    // fatal to openraft, and a restart reloads the last whole state from disk.
                    let stamp = Stamp {
                        time: request.time,
                        term: entry.log_id.leader_id.term,
                    };
                    let applied = statemachine::apply(&mut inner.state, &tracks, &request.command, stamp)
                        .map_err(|e| io_error!(read_state_machine, &e))?;
                    // Sized for the track bytes up front: grown by doubling, the batch would copy
                    // a large write's bytes again at each step.
                    batch = WriteBatch::with_capacity_bytes(crate::tracks::staged_len(&applied.ops) + 4096);
                    tracks.stage(&mut batch, &applied.ops);
                    self.note_dropped(&applied.ops);
                    #[cfg(feature = "sabotage")]
                    if self.applies_twice() {
                        let again = statemachine::apply(&mut inner.state, &tracks, &request.command, stamp)
                            .map_err(|e| io_error!(read_state_machine, &e))?;
                        tracks.stage(&mut batch, &again.ops);
                    }
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
                    if applied.hosts_changed {
                        let hosts: Vec<&statemachine::Host> = inner.state.hosts().collect();
                        batch.put_cf(cf(&self.db, CF_META), KEY_HOSTS, encode(&hosts)?);
                    }
                    if applied.paths_changed {
                        let paths: Vec<&statemachine::PprcPath> = inner.state.paths().collect();
                        let site = (inner.state.cluster_id(), paths);
                        batch.put_cf(cf(&self.db, CF_META), KEY_PATHS, encode(&site)?);
                    }
                    let audit = AuditRecord {
                        index,
                        time: inner.state.globals().last_time,
                        stamp,
                        command: request.command.journal_form(),
                        result: applied.result.clone(),
                        events: applied.events.clone(),
                    };
                    batch.put_cf(cf(&self.db, CF_AUDIT), index_key(index), encode(&audit)?);
                    if !applied.mirrored.is_empty() {
                        mirrored = applied.mirrored;
                    }
                    response = Response {
                        result: Some(applied.result),
                        events: applied.events,
                    };
                }
            }
            inner.last_applied = Some(entry.log_id);
            batch.put_cf(cf(&self.db, CF_META), KEY_APPLIED, encode(&inner.last_applied)?);
            self.db
                .write_opt(batch, &no_wal)
                .map_err(|e| io_error!(write_state_machine, &e))?;
            if let (Some(tap), false) = (&self.tap, mirrored.is_empty()) {
                tap(index, mirrored);
            }
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
}

impl StateMachineStore {
    /// Notes the volumes whose stored tracks these ops drop: their space comes back once their
    /// key ranges are compacted (`Space::reclaim`).
    fn note_dropped(&self, ops: &[TrackOp]) {
        let mut dropped = None;
        for op in ops {
            if let TrackOp::Zero { volume, .. } | TrackOp::DropVolume { volume } = op {
                dropped
                    .get_or_insert_with(|| self.dropped.lock().expect("not poisoned"))
                    .insert(*volume);
            }
        }
    }
}

/// Apply batches up to these sizes run on the calling task (see `apply`).
const INLINE_APPLY_ENTRIES: usize = 8;
const INLINE_APPLY_BYTES: u64 = 256 << 10;

/// Bytes of host data an entry moves when applied: what its write data or copy step covers.
fn data_bytes(entry: &Entry<TypeConfig>) -> u64 {
    match &entry.payload {
        EntryPayload::Normal(request) => match &request.command {
            Command::Write(write) => write.data.len(),
            Command::WriteBatch(writes) => writes.iter().map(|w| w.data.len()).sum(),
            Command::CopyStep { max_tracks, .. } => u64::from(*max_tracks) * u64::from(statemachine::TRACK_SIZE),
            // Relationship commands may copy or release many tracks: never inline.
            _ => u64::MAX / 16,
        },
        EntryPayload::Blank | EntryPayload::Membership(_) => 0,
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value).map_err(|e| io_error!(write_state_machine, &e))
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
        if entries.len() <= INLINE_APPLY_ENTRIES && entries.iter().map(data_bytes).sum::<u64>() <= INLINE_APPLY_BYTES {
            // A small batch (a few small host writes) applies in tens of microseconds: less
            // than handing it to the blocking pool and back, which costs two context switches
            // on the path of every write's reply.
            return self.apply_blocking(entries);
        }
        let this = self.clone();
        crate::runtime::offload(move || this.apply_blocking(entries))
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
        let checkpoint = crate::runtime::offload(move || {
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
            lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshots.join(format!("incoming-{seq}.part"));
        let file = crate::runtime::offload(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
        })
        .await
        .map_err(|e| io_error!(write_snapshot, None, &e))?
        .map_err(|e| io_error!(write_snapshot, None, &e))?;
        Ok(Box::new(SnapshotData::file(crate::runtime::File::from_std(file))))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<SnapshotData>) -> Result<()> {
        // Keep our own copy as the current snapshot (the handle may be any file), then install it.
        let received = snapshot.into_file().await.map_err(snapshot_error)?.into_std().await;
        let file_name = format!("{}.snap", meta.snapshot_id);
        let path = self.snapshots.join(&file_name);
        let tmp = self.snapshots.join(format!("{file_name}.tmp"));
        let copying = tmp.clone();
        crate::runtime::offload(move || -> std::io::Result<()> {
            use std::io::Seek;
            let mut received = received;
            received.seek(std::io::SeekFrom::Start(0))?;
            let mut copy = std::fs::File::create(&copying)?;
            std::io::copy(&mut received, &mut copy)?;
            copy.sync_all()
        })
        .await
        .expect("snapshot copy task does not panic")
        .map_err(snapshot_error)?;
        snapshot::verify(&tmp).map_err(snapshot_error)?;
        std::fs::rename(&tmp, &path).map_err(snapshot_error)?;
        set_current_snapshot(&self.snapshots, &meta.snapshot_id).map_err(snapshot_error)?;
        remove_incoming(&self.snapshots);
        let (db, inner) = (self.db.clone(), self.inner.clone());
        let (dir, meta, lock) = (self.snapshots.clone(), meta.clone(), self.snapshot_lock.clone());
        crate::runtime::offload(move || -> Result<()> {
            let mut inner = inner.write().expect("state lock is not poisoned");
            install_from_file(&db, &path).map_err(snapshot_error)?;
            *inner = load(&db).map_err(snapshot_error)?;
            #[cfg(feature = "sabotage")]
            if statemachine::sabotage::active(statemachine::sabotage::Sabotage::SnapshotDropsBitmaps) {
                inner.state.sabotage_drop_bitmaps();
            }
            // Installed: keep it as a checkpoint like a snapshot built here, instead of a
            // stream file that holds a second copy of the state.
            let checkpoint = dir.join(format!("checkpoint-{}", meta.snapshot_id));
            rocksdb::checkpoint::Checkpoint::new(&db)
                .and_then(|c| c.create_checkpoint(&checkpoint))
                .map_err(snapshot_error)?;
            let _current = lock.lock().expect("not poisoned");
            keep_checkpoint(&dir, &checkpoint, &meta).map_err(snapshot_error)
        })
        .await
        .expect("install task does not panic")
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let (dir, lock) = (self.snapshots.clone(), self.snapshot_lock.clone());
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        // Cheap: a meta read and hard links; the stream is written only if it is read.
        crate::runtime::offload(move || {
            let _current = lock.lock().expect("not poisoned");
            let Some((meta, kept)) = current_snapshot(&dir)? else {
                return Ok(None);
            };
            let data = data_of(&dir, &meta, &kept, seq)?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(data),
            }))
        })
        .await
        .expect("snapshot task does not panic")
        .map_err(|e: std::io::Error| snapshot_error(e))
    }
}
