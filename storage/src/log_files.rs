//! The Raft log on disk: append-only segment files, each entry written once and synced, never
//! rewritten or compacted. Purging deletes whole segments (or keeps their files as spares to
//! reuse); truncating cuts the file.
//!
//! A segment is `{first index:020}-{seed:016x}.log`. Each record is a header — payload length
//! (u32), index (u64), xxh3 of the payload seeded with the segment's seed (u64), all
//! little-endian — then the payload (the encoded entry). At open every segment's headers are
//! read to rebuild the index; in the last segment a record cut short, failing its checksum or
//! holding another index ends the log, and the file is cut there: an append the crash
//! interrupted (never acknowledged), or the old records of a reused file. Anywhere else it is
//! damage, and opening fails.
//!
//! A purged segment's file is kept as a spare (`….spare`, as many as the node allows: see
//! [`LogFiles::keep_spares`]) and reused for the next segment: appends then overwrite blocks the
//! file already has, so a sync need not also commit the filesystem's journal for a file that
//! grew (`docs/PERFORMANCE.md`, section 11: on this project's test machine, one and a half to
//! five times as fast for an 8 MiB append, depending on what else the disk's host is doing).
//! Each reuse draws a new seed, so an old record left in the file never passes for a new one,
//! and a host's data inside an entry cannot be made to look like a record (the seed is not
//! known outside the node). Spares go, and none are kept, while the disk is
//! short.

use crate::log_disk::{LogDisk, LogFile};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::xxh3_64_with_seed;

const HEADER: usize = 4 + 8 + 8;
/// Purged segment files kept for reuse until the node says how many bytes of them it allows
/// (the node keeps `--max-log-size` worth, so under sustained writes every segment is a reused
/// file once the log was first cut back): this many segments' worth.
const DEFAULT_SPARE_SEGMENTS: u64 = 2;

struct Segment {
    /// Index of the first entry in this segment.
    first: u64,
    /// Seeds the records' checksums: a new one each time a file becomes a segment.
    seed: u64,
    name: String,
    file: Arc<dyn LogFile>,
    /// Byte offset of each entry's record (entry `first + i` at `offsets[i]`).
    offsets: Vec<u64>,
    /// Bytes of records in the file (a reused file is longer: old bytes follow).
    len: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// Where the record of `index` starts and how long it is.
    fn extent(&self, index: u64) -> (u64, u64) {
        let i = (index - self.first) as usize;
        let start = self.offsets[i];
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.len);
        (start, end - start)
    }
}

/// The segment files of one log directory.
pub(crate) struct LogFiles {
    disk: Arc<dyn LogDisk>,
    segments: Mutex<Vec<Segment>>,
    /// Names and sizes of the spare files, to reuse for new segments. Locked after `segments`.
    spares: Mutex<Vec<(String, u64)>>,
    /// Bytes of spare files kept, at most (none while the disk is short).
    spare_limit: AtomicU64,
    /// Entries below this index are purged: never read, though their segment may remain.
    first_kept: AtomicU64,
    /// A new segment is started once the current one holds this much.
    segment_bytes: u64,
}

fn corrupt(disk: &dyn LogDisk, name: &str, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", disk.show(name)))
}

fn segment_name(first: u64, seed: u64) -> String {
    format!("{first:020}-{seed:016x}.log")
}

/// A segment's first index and seed, from its name; `None` for other files.
fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let (first, seed) = name.strip_suffix(".log")?.split_once('-')?;
    Some((first.parse().ok()?, u64::from_str_radix(seed, 16).ok()?))
}

impl LogFiles {
    /// Opens (or creates) the log on `disk`, cutting off a record a crash left half-written.
    pub(crate) fn open(disk: Arc<dyn LogDisk>) -> io::Result<LogFiles> {
        let mut found = Vec::new();
        let mut spares = Vec::new();
        for name in disk.list()? {
            if let Some((first, seed)) = parse_segment_name(&name) {
                found.push((first, seed, name));
            } else if name.ends_with(".spare") {
                let size = disk.open(&name)?.size()?;
                spares.push((name, size));
            }
        }
        found.sort_unstable();
        // All kept (an open changes no file but a torn record): the node trims them to its limit.
        spares.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        let count = found.len();
        for (i, (first, seed, name)) in found.into_iter().enumerate() {
            let segment = load_segment(&*disk, first, seed, name, i + 1 == count)?;
            if let Some(previous) = segments.last() {
                if previous.next_index() > segment.first {
                    return Err(corrupt(&*disk, &segment.name, "this segment overlaps the one before"));
                }
            }
            segments.push(segment);
        }
        let segment_bytes = disk.segment_bytes();
        Ok(LogFiles {
            disk,
            segments: Mutex::new(segments),
            spares: Mutex::new(spares),
            spare_limit: AtomicU64::new(DEFAULT_SPARE_SEGMENTS * segment_bytes),
            first_kept: AtomicU64::new(0),
            segment_bytes,
        })
    }

    /// Hides entries up to `index`.
    fn set_purged(&self, index: u64) {
        self.first_kept.fetch_max(index + 1, Ordering::SeqCst);
    }

    /// The first and last index held, if any.
    pub(crate) fn bounds(&self) -> Option<(u64, u64)> {
        let segments = self.segments.lock().expect("not poisoned");
        let first = segments.iter().find(|s| !s.offsets.is_empty())?.first;
        let last = segments.iter().rev().find(|s| !s.offsets.is_empty())?.next_index() - 1;
        let first = first.max(self.first_kept.load(Ordering::SeqCst));
        (first <= last).then_some((first, last))
    }

    /// Appends entries `(index, payload)` (consecutive, following the last one) and syncs them.
    pub(crate) fn append(&self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let Some(&(first_index, _)) = entries.first() else {
            return Ok(());
        };
        let file = {
            let mut segments = self.segments.lock().expect("not poisoned");
            if let Some(last) = segments.last() {
                if first_index < last.next_index() && !last.offsets.is_empty() {
                    return Err(io::Error::other(format!(
                        "log append at {first_index} overlaps the last entry {}",
                        last.next_index() - 1
                    )));
                }
            }
            // An append that skips ahead (openraft's own store tests do) starts a new segment.
            let rotate = segments
                .last()
                .is_none_or(|s| s.len >= self.segment_bytes || s.next_index() != first_index);
            if rotate {
                // An emptied segment is replaced, not left as a gap before the new one.
                if let Some(empty) = segments.pop_if(|s| s.offsets.is_empty()) {
                    self.disk.remove(&empty.name)?;
                }
                // The segment left behind ends at its last record: only the last segment may
                // hold other bytes after its records (a reused file's).
                if let Some(last) = segments.last() {
                    if last.file.size()? > last.len {
                        last.file.set_len(last.len)?;
                        last.file.sync()?;
                    }
                }
                segments.push(self.create_segment(first_index)?);
            }
            let segment = segments.last_mut().expect("a segment exists");
            let mut offset = segment.len;
            let mut offsets = Vec::with_capacity(entries.len());
            // Header and payload written in place, each with its own write: the payload (up to
            // 8 MiB of host data) is not copied into a buffer first.
            for (index, payload) in entries {
                offsets.push(offset);
                let length = u32::try_from(payload.len()).map_err(|_| io::Error::other("log entry over 4 GiB"))?;
                let mut header = [0u8; HEADER];
                header[0..4].copy_from_slice(&length.to_le_bytes());
                header[4..12].copy_from_slice(&index.to_le_bytes());
                header[12..20].copy_from_slice(&xxh3_64_with_seed(payload, segment.seed).to_le_bytes());
                segment.file.write_all_at(&header, offset)?;
                segment.file.write_all_at(payload, offset + HEADER as u64)?;
                offset += (HEADER + payload.len()) as u64;
            }
            segment.offsets.extend(offsets);
            segment.len = offset;
            segment.file.clone()
        };
        // Synced outside the lock: readers (replication) go on meanwhile. openraft awaits this
        // append before it changes the log again.
        file.sync()
    }

    /// A new, empty segment: a spare file if there is one, else a new file.
    fn create_segment(&self, first: u64) -> io::Result<Segment> {
        let seed = crate::runtime::random_u64();
        let name = segment_name(first, seed);
        let spare = self.spares.lock().expect("not poisoned").pop();
        let file = match spare {
            Some((spare, _)) => {
                self.disk.rename(&spare, &name)?;
                self.disk.open(&name)?
            }
            None => self.disk.create(&name)?,
        };
        self.disk.sync()?;
        Ok(Segment {
            first,
            seed,
            name,
            file,
            offsets: Vec::new(),
            len: 0,
        })
    }

    /// A segment no entry is read from any more: kept as a spare while the spares stay within
    /// their limit with it, else deleted. (The caller syncs the directory.) A segment that is
    /// not the last ends at its last record, so its file holds `len` bytes.
    fn retire(&self, gone: Segment) -> io::Result<()> {
        let mut spares = self.spares.lock().expect("not poisoned");
        if gone.len > 0 && total(&spares) + gone.len <= self.spare_limit.load(Ordering::SeqCst) {
            // The segment's name is unique (a seed is drawn for each), so is the spare's.
            let spare = gone.name.replace(".log", ".spare");
            self.disk.rename(&gone.name, &spare)?;
            spares.push((spare, gone.len));
            return Ok(());
        }
        self.disk.remove(&gone.name)
    }

    /// How many bytes of purged segment files are kept for reuse, at most; the spares beyond
    /// it are deleted (0 while the disk is short: their space is worth more than their reuse).
    pub(crate) fn keep_spares(&self, limit: u64) -> io::Result<()> {
        self.spare_limit.store(limit, Ordering::SeqCst);
        // Taken out under the lock, deleted outside it: an append that starts a segment meanwhile
        // does not wait for the unlinks and the directory's sync.
        let mut extra = Vec::new();
        {
            let mut spares = self.spares.lock().expect("not poisoned");
            let mut kept = total(&spares);
            while kept > limit {
                let spare = spares.pop().expect("spares hold more than the limit");
                kept -= spare.1;
                extra.push(spare);
            }
        }
        if extra.is_empty() {
            return Ok(());
        }
        while let Some((name, size)) = extra.pop() {
            if let Err(e) = self.disk.remove(&name) {
                // Still there: known again, to be deleted at the next call.
                let mut spares = self.spares.lock().expect("not poisoned");
                spares.push((name, size));
                spares.append(&mut extra);
                return Err(e);
            }
        }
        self.disk.sync()
    }

    /// Bytes the spare files hold (disk the log keeps beside its entries).
    pub(crate) fn spare_bytes(&self) -> u64 {
        total(&self.spares.lock().expect("not poisoned"))
    }

    /// Payloads of entries from `start` on while `wanted(index)` holds, stopping before `budget`
    /// bytes would be exceeded (never before the first entry).
    pub(crate) fn read(
        &self,
        start: u64,
        wanted: impl Fn(u64) -> bool,
        budget: usize,
    ) -> io::Result<Vec<(u64, Vec<u8>)>> {
        // Read under the lock: a truncate must not cut a record while it is read (the reads
        // come from the page cache; an append waits at most for one replication request).
        let start = start.max(self.first_kept.load(Ordering::SeqCst));
        let segments = self.segments.lock().expect("not poisoned");
        let mut read = Vec::new();
        let mut total = 0usize;
        for segment in segments.iter().filter(|s| s.next_index() > start) {
            for index in start.max(segment.first)..segment.next_index() {
                let (offset, length) = segment.extent(index);
                let size = length as usize - HEADER;
                if !wanted(index) || (!read.is_empty() && total + size > budget) {
                    return Ok(read);
                }
                total += size;
                let mut record = vec![0; length as usize];
                segment.file.read_exact_at(&mut record, offset)?;
                check_record(&record, index, segment.seed).map_err(|why| corrupt(&*self.disk, &segment.name, why))?;
                record.drain(..HEADER);
                read.push((index, record));
            }
        }
        Ok(read)
    }

    /// Removes every entry at or after `index`.
    pub(crate) fn truncate(&self, index: u64) -> io::Result<()> {
        let mut segments = self.segments.lock().expect("not poisoned");
        let mut removed = false;
        while segments.len() > 1 && segments.last().is_some_and(|s| s.first >= index) {
            let gone = segments.pop().expect("checked");
            self.disk.remove(&gone.name)?;
            removed = true;
        }
        // The removals are durable before the cut: a crash in between must not bring a later
        // segment back after a shortened one.
        if removed {
            self.disk.sync()?;
        }
        if let Some(last) = segments.last_mut() {
            if index < last.next_index() {
                let keep = index.saturating_sub(last.first) as usize;
                let len = last.offsets.get(keep).copied().unwrap_or(last.len);
                last.file.set_len(len)?;
                last.file.sync()?;
                last.offsets.truncate(keep);
                last.len = len;
            }
        }
        self.disk.sync()
    }

    /// Hides entries up to `index` and retires the segments holding only such entries (the
    /// caller records the purge point first, and purges up to it again at the next open, which
    /// finishes a purge a crash interrupted).
    pub(crate) fn purge(&self, index: u64) -> io::Result<()> {
        self.set_purged(index);
        let mut segments = self.segments.lock().expect("not poisoned");
        while segments.len() > 1 && segments[0].next_index() <= index + 1 {
            let gone = segments.remove(0);
            self.retire(gone)?;
        }
        // The last segment may be wholly purged too: then appends go on after `index`, which
        // need not follow its last entry (a snapshot install skips ahead).
        if segments.len() == 1 && segments[0].next_index() <= index + 1 {
            let only = &mut segments[0];
            only.file.set_len(0)?;
            only.file.sync()?;
            only.first = index + 1;
            let renamed = segment_name(only.first, only.seed);
            self.disk.rename(&only.name, &renamed)?;
            only.name = renamed;
            only.offsets.clear();
            only.len = 0;
        }
        self.disk.sync()
    }

    /// Replaces the small value `name` kept beside the segments (the vote, the purge point),
    /// durably: written to a temporary file and synced, renamed over the old one, and the
    /// directory synced, so a crash leaves the old value or the new one, never a torn one.
    pub(crate) fn save(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let temporary = format!("{name}.tmp");
        let file = self.disk.create(&temporary)?;
        file.write_all_at(bytes, 0)?;
        #[cfg(feature = "sabotage")]
        if name == "vote" && statemachine::sabotage::active(statemachine::sabotage::Sabotage::VoteNotSynced) {
            return self.disk.rename(&temporary, name);
        }
        file.sync()?;
        self.disk.rename(&temporary, name)?;
        self.disk.sync()
    }

    /// The value `name` last saved, if any.
    pub(crate) fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        if !self.disk.list()?.iter().any(|n| n == name) {
            return Ok(None);
        }
        let file = self.disk.open(name)?;
        let mut bytes = vec![0; file.size()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(Some(bytes))
    }

    /// Bytes of the entries kept (purged ones still in a segment file do not count).
    pub(crate) fn bytes(&self) -> u64 {
        let first_kept = self.first_kept.load(Ordering::SeqCst);
        let segments = self.segments.lock().expect("not poisoned");
        segments
            .iter()
            .map(|s| {
                if first_kept <= s.first {
                    s.len
                } else if first_kept >= s.next_index() {
                    0
                } else {
                    s.len - s.offsets[(first_kept - s.first) as usize]
                }
            })
            .sum()
    }
}

/// Bytes of the spare files (name, size).
fn total(spares: &[(String, u64)]) -> u64 {
    spares.iter().map(|(_, size)| size).sum()
}

/// Checks a whole record read back for `index`.
fn check_record(record: &[u8], index: u64, seed: u64) -> Result<(), String> {
    let header = parse_header(record).ok_or("record shorter than its header")?;
    if header.index != index {
        return Err(format!("record holds entry {}, expected {index}", header.index));
    }
    let payload = &record[HEADER..];
    if payload.len() != header.length || xxh3_64_with_seed(payload, seed) != header.checksum {
        return Err(format!("entry {index} fails its checksum"));
    }
    Ok(())
}

struct Header {
    length: usize,
    index: u64,
    checksum: u64,
}

fn parse_header(bytes: &[u8]) -> Option<Header> {
    Some(Header {
        length: u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize,
        index: u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?),
        checksum: u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?),
    })
}

/// Reads a segment's headers. In the last segment (`last`) payloads are checked too, and a
/// record cut short, failing its checksum or holding another index ends the log: the file is
/// cut there.
fn load_segment(disk: &dyn LogDisk, first: u64, seed: u64, name: String, last: bool) -> io::Result<Segment> {
    let file = disk.open(&name)?;
    let size = file.size()?;
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    let damaged = loop {
        if offset == size {
            break None;
        }
        if offset + HEADER as u64 > size {
            break Some(("a record header is cut short".to_string(), false));
        }
        file.read_exact_at(&mut header, offset)?;
        let h = parse_header(&header).expect("a whole header");
        let expected = first + offsets.len() as u64;
        if h.index != expected {
            // An older entry: a reused file's old records, which follow the new ones.
            let old = h.index < expected;
            break Some((format!("record holds entry {}, expected {expected}", h.index), old));
        }
        let end = offset + (HEADER + h.length) as u64;
        if end > size {
            break Some((format!("entry {expected} is cut short"), false));
        }
        if last {
            payload.resize(h.length, 0);
            file.read_exact_at(&mut payload, offset + HEADER as u64)?;
            if xxh3_64_with_seed(&payload, seed) != h.checksum {
                break Some((format!("entry {expected} fails its checksum"), false));
            }
        }
        offsets.push(offset);
        offset = end;
    };
    if let Some((why, old)) = damaged {
        if !last {
            return Err(corrupt(disk, &name, why));
        }
        // A reused file's old bytes (every restart after a reuse), or an append the crash cut
        // off (never acknowledged, but worth a warning: damage looks the same).
        if old {
            tracing::info!(path = %disk.show(&name), reason = %why, "the log ends here (a reused file's old records follow): cutting the last segment after its last whole record");
        } else {
            tracing::warn!(path = %disk.show(&name), reason = %why, "cutting off the log's unfinished last record");
        }
        file.set_len(offset)?;
        file.sync()?;
    }
    Ok(Segment {
        first,
        seed,
        name,
        file,
        offsets,
        len: offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_disk::DirLogDisk;

    fn open_dir(dir: &std::path::Path) -> LogFiles {
        LogFiles::open(Arc::new(DirLogDisk::new(dir.to_path_buf()).unwrap())).unwrap()
    }

    fn entries(range: std::ops::Range<u64>, size: usize) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, vec![i as u8; size])).collect()
    }

    fn indexes(read: Vec<(u64, Vec<u8>)>) -> Vec<u64> {
        read.into_iter().map(|(i, _)| i).collect()
    }

    /// The path of the segment that starts at `first`.
    fn segment_path(dir: &std::path::Path, first: u64) -> std::path::PathBuf {
        let prefix = format!("{first:020}");
        let name = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .find(|n| n.starts_with(&prefix) && n.ends_with(".log"))
            .expect("the segment exists");
        dir.join(name)
    }

    fn names(dir: &std::path::Path, suffix: &str) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix))
            .count()
    }

    #[test]
    fn appends_read_back_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), None);
        log.append(&entries(1..4, 100)).unwrap();
        log.append(&entries(4..6, 10)).unwrap();
        assert_eq!(log.bounds(), Some((1, 5)));
        let read = log.read(2, |i| i < 5, usize::MAX).unwrap();
        assert_eq!(
            read,
            entries(2..4, 100)
                .into_iter()
                .chain(entries(4..5, 10))
                .collect::<Vec<_>>()
        );
        // An append may not overlap what is there.
        assert!(log.append(&entries(5..6, 1)).is_err());
        drop(log);
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), Some((1, 5)));
        assert_eq!(log.read(1, |_| true, usize::MAX).unwrap().len(), 5);
    }

    #[test]
    fn reads_stop_at_the_byte_budget_but_never_return_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        log.append(&entries(1..5, 1000)).unwrap();
        assert_eq!(indexes(log.read(1, |_| true, 2500).unwrap()), vec![1, 2]);
        assert_eq!(indexes(log.read(3, |_| true, 10).unwrap()), vec![3]);
    }

    #[test]
    fn truncate_and_purge_cross_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        // 3 entries of 6 MiB: a new segment after the third (16 MiB passed).
        for i in 1..=6 {
            log.append(&entries(i..i + 1, 6 << 20)).unwrap();
        }
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files(), 2);
        log.truncate(3).unwrap();
        assert_eq!(log.bounds(), Some((1, 2)));
        assert_eq!(files(), 1);
        log.append(&entries(3..5, 10)).unwrap();
        assert_eq!(indexes(log.read(1, |_| true, usize::MAX).unwrap()), vec![1, 2, 3, 4]);
        // Purging everything leaves an empty log that continues after the purge point.
        log.purge(10).unwrap();
        assert_eq!(log.bounds(), None);
        log.append(&entries(11..12, 10)).unwrap();
        drop(log);
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), Some((11, 11)));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_damage_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        log.append(&entries(1..4, 1000)).unwrap();
        drop(log);
        let path = segment_path(dir.path(), 1);
        // Half of the last record reached the disk.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 500)
            .unwrap();
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), Some((1, 2)));
        log.append(&entries(3..4, 7)).unwrap();
        assert_eq!(log.read(3, |_| true, usize::MAX).unwrap(), entries(3..4, 7));
        drop(log);
        // A flipped byte in the last segment: the log ends before that record.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 10] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let log = open_dir(dir.path());
        assert_eq!(
            log.bounds(),
            None,
            "the first record fails: nothing after it is trusted"
        );
        // In a segment that is not the last, a bad record is damage: found when read.
        log.append(&entries(1..2, 10)).unwrap();
        for i in 2..=4 {
            log.append(&entries(i..i + 1, 6 << 20)).unwrap();
        }
        log.append(&entries(5..6, 10)).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 5] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), Some((1, 5)));
        let err = log.read(1, |_| true, usize::MAX).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    fn open_small(dir: &std::path::Path, segment_bytes: u64) -> LogFiles {
        let disk = DirLogDisk::new(dir.to_path_buf())
            .unwrap()
            .with_segment_bytes(segment_bytes);
        LogFiles::open(Arc::new(disk)).unwrap()
    }

    /// Purged segments become spares (up to the limit), new segments reuse them, and what a
    /// reused file still held is never read as the log: not while running, not after a reopen.
    #[test]
    fn purged_segments_are_reused_and_their_old_records_never_read_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_small(dir.path(), 4096);
        // 1000-byte entries, five to a segment: 1-5, 6-10, 11-15, 16-20.
        for i in 1..=20 {
            log.append(&entries(i..i + 1, 1000)).unwrap();
        }
        assert_eq!(names(dir.path(), ".log"), 4);
        log.keep_spares(2 * 5 * (HEADER as u64 + 1000)).unwrap();
        log.purge(15).unwrap();
        assert_eq!(names(dir.path(), ".log"), 1);
        assert_eq!(names(dir.path(), ".spare"), 2, "two kept, one deleted");
        // Shorter entries than the reused files held (six to a segment, 720 bytes a record):
        // 21-26 and 27-32 go into the two spares, and old bytes follow the new records.
        for i in 21..=32 {
            log.append(&entries(i..i + 1, 700)).unwrap();
        }
        assert_eq!(names(dir.path(), ".spare"), 0, "both reused");
        assert_eq!(names(dir.path(), ".log"), 3);
        let records = 6 * (HEADER as u64 + 700);
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 21)).unwrap().len(),
            records,
            "a segment left behind ends at its last record"
        );
        assert!(std::fs::metadata(segment_path(dir.path(), 27)).unwrap().len() > records);
        let expected: Vec<_> = entries(16..21, 1000).into_iter().chain(entries(21..33, 700)).collect();
        assert_eq!(log.read(16, |_| true, usize::MAX).unwrap(), expected);
        drop(log);
        let log = open_small(dir.path(), 4096);
        assert_eq!(log.bounds(), Some((16, 32)));
        assert_eq!(log.read(16, |_| true, usize::MAX).unwrap(), expected);
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 27)).unwrap().len(),
            records,
            "the old bytes after the last record are cut at open"
        );
    }

    /// A record written under another seed holds the right index and a checksum that was right
    /// for its own file: it still ends the log (an old record of a reused file, or bytes a host
    /// wrote that look like a record, never pass for an entry).
    #[test]
    fn a_record_of_another_seed_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        log.append(&entries(1..3, 100)).unwrap();
        drop(log);
        let path = segment_path(dir.path(), 1);
        let (_, seed) = parse_segment_name(&path.file_name().unwrap().to_string_lossy()).unwrap();
        std::fs::rename(&path, dir.path().join(segment_name(1, seed ^ 1))).unwrap();
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), None);
        assert_eq!(std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len(), 0, "cut");
    }

    /// The disk is short: spares go, and purged segments are deleted until it has room again;
    /// with room, as many bytes of them are kept as the limit says. An open keeps those it finds
    /// (it deletes nothing); the next limit set trims them.
    #[test]
    fn spares_go_while_the_disk_is_short_and_the_limit_trims_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_small(dir.path(), 4096);
        // Five records to a segment.
        let segment = 5 * (HEADER as u64 + 1000);
        for i in 1..=20 {
            log.append(&entries(i..i + 1, 1000)).unwrap();
        }
        log.keep_spares(2 * segment).unwrap();
        log.purge(10).unwrap();
        assert_eq!(names(dir.path(), ".spare"), 2);
        assert_eq!(log.spare_bytes(), 2 * segment);
        log.keep_spares(0).unwrap();
        assert_eq!(names(dir.path(), ".spare"), 0);
        assert_eq!(log.spare_bytes(), 0);
        log.purge(15).unwrap();
        assert_eq!(names(dir.path(), ".spare"), 0, "deleted, not kept");
        assert_eq!(names(dir.path(), ".log"), 1);
        drop(log);
        for n in 0..6 {
            std::fs::write(dir.path().join(format!("{n:020}.spare")), b"old").unwrap();
        }
        let log = open_small(dir.path(), 4096);
        assert_eq!(names(dir.path(), ".spare"), 6, "an open deletes nothing");
        assert_eq!(log.spare_bytes(), 18);
        assert_eq!(log.bounds(), Some((16, 20)));
        log.keep_spares(9).unwrap();
        assert_eq!(names(dir.path(), ".spare"), 3);
        // Up to the limit, purged segments are kept: 21-25 and 26-30 start in two of the three
        // spares; of the two segments purged then, one fits beside the spare left.
        log.keep_spares(9 + segment).unwrap();
        for i in 21..=30 {
            log.append(&entries(i..i + 1, 1000)).unwrap();
        }
        assert_eq!(names(dir.path(), ".spare"), 1, "two reused");
        log.purge(25).unwrap();
        assert_eq!(names(dir.path(), ".spare"), 2);
        assert_eq!(log.spare_bytes(), 3 + segment);
    }
}
