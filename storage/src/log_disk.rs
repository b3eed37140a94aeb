//! Where the Raft log's segment files live: a directory on the node's disk in production, or a
//! simulated disk that keeps only what was synced when its host loses power (`tests/sim`).
//! The log (`log_files.rs`) makes every durability decision itself; this is only its files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A directory of log segment files.
pub trait LogDisk: Send + Sync {
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates the file `name`, empty (emptied if it exists).
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    fn remove(&self, name: &str) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the creates, removes and renames so far durable.
    fn sync(&self) -> io::Result<()>;
    /// How `name` is shown in messages (its path).
    fn show(&self, name: &str) -> String;
    /// A new segment is started once the current one holds this much.
    fn segment_bytes(&self) -> u64 {
        SEGMENT_BYTES
    }
}

/// Segment size on a real disk: large enough that starting one (a file made or reused, the
/// directory synced) is rare, small enough that a purge frees space in fine steps and the
/// spare files kept for reuse are freed in fine steps too when the disk runs short.
const SEGMENT_BYTES: u64 = 16 << 20;

/// One segment file.
pub trait LogFile: Send + Sync {
    fn size(&self) -> io::Result<u64>;
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, bytes: &mut [u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's bytes (and its length) durable.
    fn sync(&self) -> io::Result<()>;
}

/// The log's directory on the node's disk.
pub struct DirLogDisk {
    dir: PathBuf,
    segment_bytes: u64,
}

impl DirLogDisk {
    pub fn new(dir: PathBuf) -> io::Result<DirLogDisk> {
        std::fs::create_dir_all(&dir)?;
        Ok(DirLogDisk {
            dir,
            segment_bytes: SEGMENT_BYTES,
        })
    }

    /// Small segments, so tests start and reuse many.
    #[cfg(test)]
    pub(crate) fn with_segment_bytes(self, segment_bytes: u64) -> DirLogDisk {
        DirLogDisk { segment_bytes, ..self }
    }
}

impl LogDisk for DirLogDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        std::fs::read_dir(&self.dir)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().to_string()))
            .collect()
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(name))?;
        Ok(Arc::new(file))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.dir.join(name))?;
        Ok(Arc::new(file))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn sync(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    fn show(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl LogFile for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, bytes, offset)
    }

    fn read_exact_at(&self, bytes: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, bytes, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync(&self) -> io::Result<()> {
        // Appends change the length too; fdatasync covers what reading them back needs.
        self.sync_data()
    }
}
