//! Where the Raft log's segment files live: a directory on the node's disk in production, or a
//! simulated disk that keeps only what was synced when its host loses power (`tests/sim`).
//! The log (`log_files.rs`) makes every durability decision itself; this is only its files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

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
}

/// One segment file.
pub trait LogFile: Send + Sync {
    fn size(&self) -> io::Result<u64>;
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// As `write_all_at`, where `bytes` starts at a 4 KiB-aligned address and `offset` and the
    /// length are multiples of 4 KiB: the file may write it around the page cache.
    fn write_aligned_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(bytes, offset)
    }
    fn read_exact_at(&self, bytes: &mut [u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's bytes (and its length) durable.
    fn sync(&self) -> io::Result<()>;
}

/// The log's directory on the node's disk.
pub struct DirLogDisk {
    dir: PathBuf,
}

impl DirLogDisk {
    pub fn new(dir: PathBuf) -> io::Result<DirLogDisk> {
        std::fs::create_dir_all(&dir)?;
        Ok(DirLogDisk { dir })
    }
}

impl LogDisk for DirLogDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        std::fs::read_dir(&self.dir)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().to_string()))
            .collect()
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Arc::new(DiskFile::new(file, path)))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let path = self.dir.join(name);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(Arc::new(DiskFile::new(file, path)))
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

    fn show(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A file of the log's directory. Aligned writes go through a second descriptor opened with
/// `O_DIRECT` (on the first such write), so they skip the page cache: nothing reads them back
/// soon. Everything else, reads included, uses the first, which the kernel keeps coherent with
/// direct writes. A filesystem without direct I/O gets buffered writes.
struct DiskFile {
    file: File,
    path: PathBuf,
    direct: OnceLock<Option<File>>,
}

impl DiskFile {
    fn new(file: File, path: PathBuf) -> DiskFile {
        DiskFile {
            file,
            path,
            direct: OnceLock::new(),
        }
    }

    fn direct(&self) -> Option<&File> {
        self.direct
            .get_or_init(|| {
                let opened = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&self.path);
                if let Err(e) = &opened {
                    tracing::info!(path = %self.path.display(), error = %e, "the log is written through the page cache");
                }
                opened.ok()
            })
            .as_ref()
    }
}

impl LogFile for DiskFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    fn write_aligned_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        match self.direct().map(|direct| direct.write_all_at(bytes, offset)) {
            // A filesystem may take the flag at open and refuse the write.
            Some(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => self.file.write_all_at(bytes, offset),
            Some(result) => result,
            None => self.file.write_all_at(bytes, offset),
        }
    }

    fn read_exact_at(&self, bytes: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(bytes, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        // Appends change the length too; fdatasync covers what reading them back needs (a
        // direct write is not durable without it either: the length, the device's cache).
        self.file.sync_data()
    }
}
