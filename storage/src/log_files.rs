//! The Raft log on disk: append-only segment files, each entry written once and synced, never
//! rewritten or compacted. Purging deletes whole segments; truncating cuts the file.
//!
//! A segment is `{first index:020}.log`. Each record is a header — payload length (u32),
//! index (u64), xxh3 of the payload (u64), all little-endian — then the payload (the encoded
//! entry). An append starts at a 4 KiB boundary and ends with zeros up to the next one (at
//! least four of them, so a zero length marks them), because it is written around the page
//! cache: the log is read back only at a restart or for a follower far behind, and copying every
//! host byte into the page cache cost a fifth of a node's CPU under large writes
//! (docs/PERFORMANCE.md). At open every segment's headers are read to rebuild the index; a
//! record cut short or failing its checksum at the end of the last segment is a write the crash
//! interrupted (never acknowledged): it is cut off. Anywhere else it is damage, and opening fails.

use crate::aligned::{align_up, AlignedBuf, ALIGN};
use crate::log_disk::{LogDisk, LogFile};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::xxh3_64;

const HEADER: usize = 4 + 8 + 8;
/// A new segment is started once the current one holds this much.
const SEGMENT_BYTES: u64 = 64 << 20;
/// An append's buffer: a larger batch is written in pieces of about this size.
const BUFFER_BYTES: usize = 4 << 20;
/// A buffer grown for a larger entry (an entry may hold 8 MiB of host data) is kept up to this
/// size, and given back beyond it.
const BUFFER_KEPT: usize = 16 << 20;

/// One entry to append: its index, and its payload written straight into the log's buffer
/// (encoding an entry there saves copying its bytes again).
pub(crate) trait Payload {
    fn index(&self) -> u64;
    fn len(&self) -> usize;
    /// Writes the payload into `out`, exactly `len()` bytes.
    fn write_to(&self, out: &mut [u8]) -> io::Result<()>;
}

impl Payload for (u64, Vec<u8>) {
    fn index(&self) -> u64 {
        self.0
    }

    fn len(&self) -> usize {
        self.1.len()
    }

    fn write_to(&self, out: &mut [u8]) -> io::Result<()> {
        out.copy_from_slice(&self.1);
        Ok(())
    }
}

/// Zeros written after an append that ends at `end`, up to a 4 KiB boundary: none at one, and
/// never fewer than four (a reader takes a zero length for padding, and must read all four
/// bytes of it before the boundary).
fn padding(end: u64) -> u64 {
    match align_up(end) - end {
        gap @ (0 | 4..) => gap,
        gap => gap + ALIGN as u64,
    }
}

struct Segment {
    /// Index of the first entry in this segment.
    first: u64,
    name: String,
    file: Arc<dyn LogFile>,
    /// Where each entry's record starts and how long it is (entry `first + i` at `offsets[i]`).
    offsets: Vec<(u64, u64)>,
    /// Bytes in the file (the last append's padding included).
    len: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// Where the record of `index` starts and how long it is.
    fn extent(&self, index: u64) -> (u64, u64) {
        self.offsets[(index - self.first) as usize]
    }
}

/// The segment files of one log directory.
pub(crate) struct LogFiles {
    disk: Arc<dyn LogDisk>,
    segments: Mutex<Vec<Segment>>,
    /// Entries below this index are purged: never read, though their segment may remain.
    first_kept: AtomicU64,
    /// Where appends are put together: aligned, reused.
    buffer: Mutex<AlignedBuf>,
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
            buffer: Mutex::new(AlignedBuf::with_capacity(BUFFER_BYTES)),
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

    /// Appends entries (consecutive, following the last one) and syncs them.
    pub(crate) fn append<P: Payload>(&self, entries: &[P]) -> io::Result<()> {
        let Some(first_index) = entries.first().map(Payload::index) else {
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
            let mut buffer = self.buffer.lock().expect("not poisoned");
            let written = write_records(&*segment.file, &mut buffer, segment.len, entries);
            if buffer.capacity() > BUFFER_KEPT {
                *buffer = AlignedBuf::with_capacity(BUFFER_BYTES);
            }
            let (offsets, end) = written?;
            segment.offsets.extend(offsets);
            segment.len = end;
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
                let len = last.offsets.get(keep).map_or(last.len, |&(offset, _)| offset);
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
                    s.len - s.offsets[(first_kept - s.first) as usize].0
                }
            })
            .sum()
    }
}

/// Writes `entries` as records from the first 4 KiB boundary at or after `len` (with room for
/// padding before it), through `buffer`, in whole 4 KiB blocks. Returns where each record is and
/// where the padded append ends.
fn write_records<P: Payload>(
    file: &dyn LogFile,
    buffer: &mut AlignedBuf,
    len: u64,
    entries: &[P],
) -> io::Result<(Vec<(u64, u64)>, u64)> {
    buffer.clear();
    // The file offset of the buffer's first byte.
    let mut at = len + padding(len);
    let mut offsets = Vec::with_capacity(entries.len());
    for entry in entries {
        let length = u32::try_from(entry.len()).map_err(|_| io::Error::other("log entry over 4 GiB"))?;
        let size = HEADER + entry.len();
        if buffer.len() + size > buffer.capacity() && buffer.len() >= ALIGN {
            // Full: out with the whole blocks so far; the last, partial one moves to the front.
            let whole = buffer.len() / ALIGN * ALIGN;
            file.write_aligned_at(&buffer.as_slice()[..whole], at)?;
            buffer.consume(whole);
            at += whole as u64;
        }
        offsets.push((at + buffer.len() as u64, size as u64));
        let record = buffer.extend(size);
        let (header, payload) = record.split_at_mut(HEADER);
        entry.write_to(payload)?;
        header[0..4].copy_from_slice(&length.to_le_bytes());
        header[4..12].copy_from_slice(&entry.index().to_le_bytes());
        header[12..20].copy_from_slice(&xxh3_64(payload).to_le_bytes());
    }
    buffer.zeros(padding(at + buffer.len() as u64) as usize);
    file.write_aligned_at(buffer.as_slice(), at)?;
    Ok((offsets, at + buffer.len() as u64))
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
        if offset % ALIGN as u64 != 0 && offset + 4 <= size {
            let mut length = [0u8; 4];
            file.read_exact_at(&mut length, offset)?;
            if length == [0; 4] {
                // An append's padding, or the gap a truncation left before the next append.
                let next = offset + padding(offset);
                if next > size {
                    break Some("an append's padding is cut short".to_string());
                }
                offset = next;
                continue;
            }
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
        offsets.push((offset, end - offset));
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

    /// Appends start at 4 KiB boundaries (they are written around the page cache) and end with
    /// zeros up to the next one, never fewer than four; a truncation leaves a gap of zeros. Each
    /// is skipped at open, where a full block of zeros at a record's place is still damage.
    #[test]
    fn appends_are_padded_to_4k_and_the_padding_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{:020}.log", 1));
        let size = || std::fs::metadata(&path).unwrap().len();
        let log = open_dir(dir.path());
        // Record 1 ends two bytes before a boundary: too little room for padding's zero length,
        // so the padding runs to the boundary after.
        let two_short = ALIGN - 2 - HEADER;
        log.append(&entries(1..2, two_short)).unwrap();
        assert_eq!(size(), 2 * ALIGN as u64);
        log.append(&entries(2..4, 10)).unwrap();
        assert_eq!(size(), 3 * ALIGN as u64);
        // Cut back before entry 3's record: the next append starts at the boundary after it.
        log.truncate(3).unwrap();
        log.append(&entries(3..5, 100)).unwrap();
        drop(log);
        let log = open_dir(dir.path());
        let mut expected = entries(1..2, two_short);
        expected.extend(entries(2..3, 10));
        expected.extend(entries(3..5, 100));
        assert_eq!(log.read(1, |_| true, usize::MAX).unwrap(), expected);
        // Cut where a record starts two bytes before a boundary: the gap runs a block further.
        log.append(&[(5, vec![5; two_short]), (6, vec![6; 10])]).unwrap();
        log.truncate(6).unwrap();
        log.append(&entries(6..7, 1)).unwrap();
        drop(log);
        let log = open_dir(dir.path());
        expected.extend([(5, vec![5; two_short])]);
        expected.extend(entries(6..7, 1));
        assert_eq!(log.read(1, |_| true, usize::MAX).unwrap(), expected);
        drop(log);
        // A whole block of zeros where a record should start is not padding.
        let mut bytes = std::fs::read(&path).unwrap();
        let last_block = bytes.len() - ALIGN;
        bytes[last_block..].fill(0);
        bytes.extend(std::iter::repeat_n(7u8, ALIGN));
        std::fs::write(&path, &bytes).unwrap();
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), Some((1, 5)), "the last append is cut off as torn");
    }

    /// A batch larger than the append buffer is written in pieces, records across them.
    #[test]
    fn a_batch_larger_than_the_buffer_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        let batch: Vec<_> = (1..=9)
            .map(|i| {
                (
                    i,
                    (0..1_000_003)
                        .map(|b| (b * i as usize % 251) as u8)
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        log.append(&batch).unwrap();
        log.append(&entries(10..11, 3)).unwrap();
        assert_eq!(log.read(1, |i| i < 10, usize::MAX).unwrap(), batch);
        drop(log);
        let log = open_dir(dir.path());
        assert_eq!(log.bounds(), Some((1, 10)));
        assert_eq!(log.read(1, |i| i < 10, usize::MAX).unwrap(), batch);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_damage_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_dir(dir.path());
        log.append(&entries(1..4, 1000)).unwrap();
        drop(log);
        let path = dir.path().join(format!("{:020}.log", 1));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ALIGN as u64, "padded to 4 KiB");
        // Half of the last record reached the disk.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2 * (HEADER as u64 + 1000) + 500)
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
