//! The Raft log on disk: append-only segment files, each entry written once and synced, never
//! rewritten or compacted. Purging deletes whole segments; truncating cuts the file.
//!
//! A segment is `{first index:020}.log`. Each record is a header — payload length (u32),
//! index (u64), xxh3 of the payload (u64), all little-endian — then the payload (the encoded
//! entry). At open every segment's headers are read to rebuild the index; a record cut short or
//! failing its checksum at the end of the last segment is a write the crash interrupted (never
//! acknowledged): it is cut off. Anywhere else it is damage, and opening fails.

use crate::log_disk::{LogDisk, LogFile};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::xxh3_64;

const HEADER: usize = 4 + 8 + 8;
/// A new segment is started once the current one holds this much.
const SEGMENT_BYTES: u64 = 64 << 20;

struct Segment {
    /// Index of the first entry in this segment.
    first: u64,
    name: String,
    file: Arc<dyn LogFile>,
    /// Byte offset of each entry's record (entry `first + i` at `offsets[i]`).
    offsets: Vec<u64>,
    /// Bytes in the file.
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
    /// Entries below this index are purged: never read, though their segment may remain.
    first_kept: AtomicU64,
}

fn corrupt(disk: &dyn LogDisk, name: &str, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", disk.show(name)))
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

impl LogFiles {
    /// Opens (or creates) the log on `disk`, cutting off a record a crash left half-written.
    pub(crate) fn open(disk: Arc<dyn LogDisk>) -> io::Result<LogFiles> {
        let mut firsts = Vec::new();
        for name in disk.list()? {
            if let Some(first) = name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        for (i, first) in firsts.iter().enumerate() {
            let last = i + 1 == firsts.len();
            let segment = load_segment(&*disk, *first, last)?;
            if let Some(previous) = segments.last() {
                if previous.next_index() > segment.first {
                    return Err(corrupt(&*disk, &segment.name, "this segment overlaps the one before"));
                }
            }
            segments.push(segment);
        }
        Ok(LogFiles {
            disk,
            segments: Mutex::new(segments),
            first_kept: AtomicU64::new(0),
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
                .is_none_or(|s| s.len >= SEGMENT_BYTES || s.next_index() != first_index);
            if rotate {
                // An emptied segment is replaced, not left as a gap before the new one.
                if let Some(empty) = segments.pop_if(|s| s.offsets.is_empty()) {
                    self.disk.remove(&empty.name)?;
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
                header[12..20].copy_from_slice(&xxh3_64(payload).to_le_bytes());
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

    fn create_segment(&self, first: u64) -> io::Result<Segment> {
        let name = segment_name(first);
        let file = self.disk.create(&name)?;
        self.disk.sync()?;
        Ok(Segment {
            first,
            name,
            file,
            offsets: Vec::new(),
            len: 0,
        })
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
                check_record(&record, index).map_err(|why| corrupt(&*self.disk, &segment.name, why))?;
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

    /// Hides entries up to `index` and deletes the segments holding only such entries (the
    /// caller records the purge point first, and purges up to it again at the next open, which
    /// finishes a purge a crash interrupted).
    pub(crate) fn purge(&self, index: u64) -> io::Result<()> {
        self.set_purged(index);
        let mut segments = self.segments.lock().expect("not poisoned");
        while segments.len() > 1 && segments[0].next_index() <= index + 1 {
            let gone = segments.remove(0);
            self.disk.remove(&gone.name)?;
        }
        // The last segment may be wholly purged too: then appends go on after `index`, which
        // need not follow its last entry (a snapshot install skips ahead).
        if segments.len() == 1 && segments[0].next_index() <= index + 1 {
            let only = &mut segments[0];
            only.file.set_len(0)?;
            only.file.sync()?;
            only.first = index + 1;
            let renamed = segment_name(only.first);
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

/// Checks a whole record read back for `index`.
fn check_record(record: &[u8], index: u64) -> Result<(), String> {
    let header = parse_header(record).ok_or("record shorter than its header")?;
    if header.index != index {
        return Err(format!("record holds entry {}, expected {index}", header.index));
    }
    let payload = &record[HEADER..];
    if payload.len() != header.length || xxh3_64(payload) != header.checksum {
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
/// record cut short or failing its checksum ends the log: the file is cut there.
fn load_segment(disk: &dyn LogDisk, first: u64, last: bool) -> io::Result<Segment> {
    let name = segment_name(first);
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
            break Some("a record header is cut short".to_string());
        }
        file.read_exact_at(&mut header, offset)?;
        let h = parse_header(&header).expect("a whole header");
        let expected = first + offsets.len() as u64;
        if h.index != expected {
            break Some(format!("record holds entry {}, expected {expected}", h.index));
        }
        let end = offset + (HEADER + h.length) as u64;
        if end > size {
            break Some(format!("entry {expected} is cut short"));
        }
        if last {
            payload.resize(h.length, 0);
            file.read_exact_at(&mut payload, offset + HEADER as u64)?;
            if xxh3_64(&payload) != h.checksum {
                break Some(format!("entry {expected} fails its checksum"));
            }
        }
        offsets.push(offset);
        offset = end;
    };
    if let Some(why) = damaged {
        if !last {
            return Err(corrupt(disk, &name, why));
        }
        // An append the crash cut off: it was never acknowledged.
        tracing::warn!(path = %disk.show(&name), reason = %why, "cutting off the log's unfinished last record");
        file.set_len(offset)?;
        file.sync()?;
    }
    Ok(Segment {
        first,
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
        // 3 entries of 30 MiB: a new segment after the third (64 MiB passed).
        for i in 1..=6 {
            log.append(&entries(i..i + 1, 30 << 20)).unwrap();
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
        let path = dir.path().join(format!("{:020}.log", 1));
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
            log.append(&entries(i..i + 1, 30 << 20)).unwrap();
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
}
