//! The Raft log store: entries in append-only segment files ([`LogFiles`]), and beside them on
//! the same disk the vote and the purge point (each a small file replaced whole, synced); the
//! committed id, which may be lost, in RocksDB's raft column family. Durability rules
//! (openraft 0.9): `save_vote` is on disk before it returns; the `append` callback fires only
//! after the appended entries are synced. Everything Raft needs durable is on the log's disk,
//! so a simulated power loss of that disk tests all of it.

use crate::codec;
use crate::db::{CF_RAFT, KEY_COMMITTED};
use crate::log_files::LogFiles;
use crate::types::TypeConfig;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::DB;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// Beside the segments: the vote, and the id of the last purged entry.
const VOTE: &str = "vote";
const PURGED: &str = "purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    files: Arc<LogFiles>,
    /// The last committed index openraft told us (for metrics).
    committed: Arc<AtomicU64>,
    /// The id of the last entry (or the purge point when none is left), kept as the log
    /// changes: a pre-vote compares logs without asking the Raft core.
    last: Arc<Mutex<Option<LogId<u64>>>>,
    /// The entries appended last, as they were appended: apply and replication read them here
    /// instead of reading the file back and decoding it.
    recent: Arc<Mutex<Recent>>,
}

/// Encoded bytes of the entries [`Recent`] keeps, at most (their payloads are shared with
/// apply and replication, so this is all they add to memory).
pub const RECENT_BYTES: usize = 64 << 20;

/// A suffix of the log, in memory: the entries appended last, each with its encoded size (what
/// a replication budget counts). Empty, or contiguous up to the log's last entry.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entries: Vec<(Entry<TypeConfig>, usize)>) {
        let Some((first, _)) = entries.first() else {
            return;
        };
        let follows = self
            .entries
            .back()
            .is_none_or(|(e, _)| e.log_id.index + 1 == first.log_id.index);
        if !follows {
            self.entries.clear();
            self.bytes = 0;
        }
        for (entry, size) in entries {
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.bytes > RECENT_BYTES {
            let Some((_, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= size;
        }
    }

    /// Keeps only entries before `index` (a truncation) or after it (a purge).
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|(e, _)| keep(e.log_id.index));
        self.bytes = self.entries.iter().map(|(_, size)| size).sum();
    }

    /// Entries from `start` on while `wanted(index)`, within `budget` encoded bytes (never
    /// none), if `start` is here; `None` if it is not (it is read from the files: also past the
    /// last entry kept, so an append not yet pushed here is never answered as absent).
    fn read(&self, start: u64, wanted: &impl Fn(u64) -> bool, budget: usize) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        let skip = usize::try_from(start.checked_sub(first)?).ok()?;
        if skip >= self.entries.len() {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for (entry, size) in self.entries.iter().skip(skip) {
            if !wanted(entry.log_id.index) || (!out.is_empty() && bytes + size > budget) {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        Some(out)
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>, files: LogFiles) -> std::io::Result<Self> {
        let store = LogStore {
            db,
            files: Arc::new(files),
            committed: Arc::default(),
            last: Arc::default(),
            recent: Arc::default(),
        };
        if let Ok(Some(Some(committed))) = store.get::<Option<LogId<u64>>>(KEY_COMMITTED) {
            store.committed.store(committed.index, Ordering::Relaxed);
        }
        if let Ok(Some(purged)) = store.load::<LogId<u64>>(PURGED) {
            // The purge point is recorded before the segments go: a crash in between left
            // segments of purged entries, which nothing else would delete until a later purge
            // (kept off, a restarted node's log stayed hundreds of MiB over its size).
            store.files.purge(purged.index)?;
        }
        store.refresh_last().map_err(std::io::Error::other)?;
        Ok(store)
    }

    /// The commit index as this node knows it, kept current while openraft runs.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// The id of the last entry in the log (or of the last purged one, if none is left).
    pub fn last_log_id(&self) -> Option<LogId<u64>> {
        *self.last.lock().expect("not poisoned")
    }

    fn refresh_last(&self) -> Result<()> {
        let last = self.last_entry_id()?.or(self.load(PURGED)?);
        *self.last.lock().expect("not poisoned") = last;
        Ok(())
    }

    /// Bytes the log's files hold (entries since the last purge).
    pub fn log_bytes(&self) -> u64 {
        self.files.bytes()
    }

    /// Keeps purged segment files for reuse, up to `bytes` of them (0 while the disk is short:
    /// the ones kept beyond it are deleted).
    pub fn keep_spare_segments(&self, bytes: u64) -> std::io::Result<()> {
        self.files.keep_spares(bytes)
    }

    /// Bytes the spare segment files hold, kept beside the log for reuse.
    pub fn spare_bytes(&self) -> u64 {
        self.files.spare_bytes()
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.cf(CF_RAFT), key)
            .map_err(|e| io_error!(read_logs, &e))?;
        bytes
            .map(|b| codec::decode(&b).map_err(|e| io_error!(read_logs, &e)))
            .transpose()
    }

    /// Writes Raft metadata, not synced (`save_committed`).
    fn put<T: Serialize>(&self, key: &[u8], value: &T) -> std::result::Result<(), rocksdb::Error> {
        let bytes = codec::encode(value).expect("raft metadata encodes");
        self.db.put_cf(self.cf(CF_RAFT), key, bytes)
    }

    /// Raft metadata kept beside the log (`VOTE`, `PURGED`), as last saved.
    fn load<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let bytes = self.files.load(name).map_err(|e| io_error!(read_logs, &e))?;
        bytes
            .map(|b| codec::decode(&b).map_err(|e| io_error!(read_logs, &e)))
            .transpose()
    }

    /// Saves Raft metadata beside the log, on disk before it returns.
    fn save<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let bytes = codec::encode(value).map_err(std::io::Error::other)?;
        self.files.save(name, &bytes)
    }

    fn last_entry_id(&self) -> Result<Option<LogId<u64>>> {
        let Some((_, last)) = self.files.bounds() else {
            return Ok(None);
        };
        let entries = self.read_entries(last, |i| i == last, usize::MAX)?;
        Ok(entries.last().map(|e| e.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        self.read_entries(start, |index| range.contains(&index), usize::MAX)
    }

    /// What the leader replicates in one AppendEntries: at most [`REPLICATION_BYTES`] of
    /// encoded entries (at least one entry), so a follower far behind is sent bounded requests
    /// that fit openraft's deadline and the leader never holds a whole backlog in memory.
    /// openraft sends the rest as soon as this part is acknowledged.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>> {
        self.read_entries(start, |index| index < end, REPLICATION_BYTES)
    }
}

/// Encoded log bytes in one replication request, at most (unless one entry alone is larger).
pub const REPLICATION_BYTES: usize = 8 << 20;

impl LogStore {
    fn purge_blocking(&self, log_id: LogId<u64>) -> Result<()> {
        // The state is written without a WAL, so the entries a restart re-applies must stay
        // until the state holding them is on disk. openraft purges only up to a snapshot, and
        // a snapshot's state is on disk: building one takes a checkpoint, which flushes every
        // column family; installing one writes through the WAL, synced. (A flush here would
        // stall the Raft core, which awaits the purge.)
        // Record the purge point first: entries at or before it are ignored from then on.
        self.save(PURGED, &log_id).map_err(|e| io_error!(write_logs, &e))?;
        self.files.purge(log_id.index).map_err(|e| io_error!(write_logs, &e))
    }

    /// Entries from `start` on while `wanted(index)`, stopping before `budget` encoded bytes
    /// would be exceeded (never before the first entry).
    fn read_entries(&self, start: u64, wanted: impl Fn(u64) -> bool, budget: usize) -> Result<Vec<Entry<TypeConfig>>> {
        if let Some(entries) = self.recent.lock().expect("not poisoned").read(start, &wanted, budget) {
            return Ok(entries);
        }
        let records = self
            .files
            .read(start, wanted, budget)
            .map_err(|e| io_error!(read_logs, &e))?;
        records
            .into_iter()
            .map(|(_, bytes)| codec::decode(&bytes).map_err(|e| io_error!(read_logs, &e)))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<u64>> = self.load(PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<()> {
        self.save(VOTE, vote).map_err(|e| io_error!(write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>> {
        self.load(VOTE)
    }

    /// Not synced: the committed id only lets a restart apply sooner, and any saved value was
    /// truly committed, so losing the latest one is harmless (and one fsync per commit is not).
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<()> {
        if let Some(c) = committed {
            self.committed.store(c.index, Ordering::Relaxed);
        }
        self.put(KEY_COMMITTED, &committed)
            .map_err(|e| io_error!(write_logs, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>> {
        Ok(self.get::<Option<LogId<u64>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut appended = Vec::new();
        let mut last = None;
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(|e| io_error!(write_logs, &e))?;
            records.push((entry.log_id.index, bytes));
            last = Some(entry.log_id);
            appended.push(entry);
        }
        // One synced write for the whole batch of entries: group commit.
        let files = self.files.clone();
        let result = crate::runtime::offload(move || files.append(&records).map(|()| records))
            .await
            .expect("log append task does not panic");
        match result {
            Ok(records) => {
                if last.is_some() {
                    *self.last.lock().expect("not poisoned") = last;
                }
                let sized = appended.into_iter().zip(records).map(|(e, (_, b))| (e, b.len()));
                self.recent.lock().expect("not poisoned").push(sized.collect());
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = io_error!(write_logs, &e);
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<()> {
        let cut = log_id.index;
        self.recent.lock().expect("not poisoned").retain(|index| index < cut);
        let files = self.files.clone();
        crate::runtime::offload(move || files.truncate(log_id.index))
            .await
            .expect("log truncate task does not panic")
            .map_err(|e| io_error!(write_logs, &e))?;
        self.refresh_last()
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<()> {
        let purged = log_id.index;
        self.recent.lock().expect("not poisoned").retain(|index| index > purged);
        let store = self.clone();
        crate::runtime::offload(move || store.purge_blocking(log_id))
            .await
            .expect("log purge task does not panic")?;
        // A purge past the last entry (a snapshot installed ahead of the log) moves it.
        let mut last = self.last.lock().expect("not poisoned");
        *last = (*last).max(Some(log_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use statemachine::{Command, HostWrite, Timestamp, WriteData};

    /// An entry carrying `mib` MiB of host data.
    fn entry(index: u64, mib: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(crate::Request {
                command: Command::Write(HostWrite {
                    volume: "v".into(),
                    opened: None,
                    offset: 0,
                    data: WriteData::Bytes(vec![7; mib << 20].into()),
                    tag: index,
                }),
                time: Timestamp(index),
            }),
        }
    }

    /// What apply and replication read of the entries appended last comes from memory: the
    /// same entries, within the same budget; truncations and purges reach it, and what it no
    /// longer holds (evicted, or before a gap) is read from the files.
    #[test]
    fn recent_entries_are_kept_as_a_bounded_suffix_of_the_log() {
        let index = |entries: Option<Vec<Entry<TypeConfig>>>| {
            entries.map(|e| e.iter().map(|e| e.log_id.index).collect::<Vec<_>>())
        };
        let all = |_: u64| true;
        let mut recent = Recent::default();
        recent.push((1..=4).map(|i| (entry(i, 0), 10 << 20)).collect());
        assert_eq!(index(recent.read(2, &all, usize::MAX)), Some(vec![2, 3, 4]));
        assert_eq!(index(recent.read(2, &|i| i < 4, usize::MAX)), Some(vec![2, 3]));
        // The replication budget: 25 MiB hold two 10 MiB entries; one always goes.
        assert_eq!(index(recent.read(1, &all, 25 << 20)), Some(vec![1, 2]));
        assert_eq!(index(recent.read(1, &all, 1)), Some(vec![1]));
        assert_eq!(
            index(recent.read(5, &all, usize::MAX)),
            None,
            "past the last entry: the files"
        );
        assert_eq!(index(recent.read(0, &all, usize::MAX)), None, "before it: the files");
        // A truncation, then entries of a new leader in its place.
        recent.retain(|i| i < 3);
        recent.push(vec![(entry(3, 0), 10 << 20)]);
        assert_eq!(index(recent.read(1, &all, usize::MAX)), Some(vec![1, 2, 3]));
        // A purge.
        recent.retain(|i| i > 1);
        assert_eq!(index(recent.read(1, &all, usize::MAX)), None);
        assert_eq!(recent.bytes, 20 << 20);
        // Entries that do not follow (after a snapshot install) replace what was kept.
        recent.push(vec![(entry(9, 0), 1)]);
        assert_eq!(index(recent.read(2, &all, usize::MAX)), None);
        assert_eq!(index(recent.read(9, &all, usize::MAX)), Some(vec![9]));
        // Bounded: the oldest go.
        recent.push((10..=20).map(|i| (entry(i, 0), 8 << 20)).collect());
        assert!(recent.bytes <= RECENT_BYTES);
        assert_eq!(recent.first_index(), Some(13));
    }

    #[tokio::test]
    async fn replication_reads_are_bounded_by_bytes_but_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _state) = crate::open(dir.path()).unwrap();
        let sizes = [3, 3, 3, 20, 1, 1];
        let records: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, mib)| {
                let e = entry(i as u64 + 1, *mib);
                (e.log_id.index, codec::encode(&e).unwrap())
            })
            .collect();
        log.files.append(&records).unwrap();
        let indexes = |entries: Vec<Entry<TypeConfig>>| entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        // 3 + 3 MiB fit in 8 MiB; a third would not.
        assert_eq!(indexes(log.limited_get_log_entries(1, 7).await.unwrap()), vec![1, 2]);
        // One entry larger than the budget still goes, alone.
        assert_eq!(indexes(log.limited_get_log_entries(4, 7).await.unwrap()), vec![4]);
        assert_eq!(indexes(log.limited_get_log_entries(5, 7).await.unwrap()), vec![5, 6]);
        // The end bound holds; the unlimited read returns the whole range.
        assert_eq!(indexes(log.limited_get_log_entries(5, 6).await.unwrap()), vec![5]);
        assert_eq!(indexes(log.try_get_log_entries(1..7).await.unwrap()).len(), 6);
    }

    /// A crash between recording the purge point and deleting the segments: the next open
    /// deletes them (the CI run that left a restarted node's log at 280 MB, 105 MB of it kept).
    #[tokio::test]
    async fn a_purge_a_crash_interrupted_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let segments = || {
            let names = std::fs::read_dir(dir.path().join("raft-log")).unwrap();
            names
                .filter(|n| n.as_ref().unwrap().path().extension().is_some_and(|e| e == "log"))
                .count()
        };
        {
            let (log, _state) = crate::open(dir.path()).unwrap();
            // 6 MiB entries: the fourth starts a second segment (16 MiB passed).
            let records: Vec<_> = (1..=5).map(|i| (i, codec::encode(&entry(i, 6)).unwrap())).collect();
            for record in records {
                log.files.append(&[record]).unwrap();
            }
            assert_eq!(segments(), 2);
            // The purge point reaches disk; the crash comes before the segment is deleted.
            log.save(PURGED, &LogId::new(CommittedLeaderId::new(1, 1), 3u64))
                .unwrap();
        }
        let (mut log, _state) = crate::open(dir.path()).unwrap();
        assert_eq!(segments(), 1, "the purged segment is retired at open");
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
        assert_eq!(log.last_log_id(), state.last_log_id);
        assert_eq!(
            log.log_bytes(),
            std::fs::read_dir(dir.path().join("raft-log"))
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.file_name().to_string_lossy().starts_with(&format!("{:020}", 4)))
                .unwrap()
                .metadata()
                .unwrap()
                .len()
        );
    }
}
