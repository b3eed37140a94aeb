//! This node's disk: capacity, free space, the reserve and the warning threshold, sampled ten
//! times a second. Host data writes are refused (ENOSPC) while free space is under the reserve,
//! so the disk never fills under RocksDB — reads, admin commands, deletes and zeroing go on, and
//! writes come back by themselves once space returns. What is about to take space counts as
//! taken: the memtables a flush may write at any moment (`storage::UNFLUSHED_MAX`), and twice
//! the host bytes admitted since the last sample (the log and the state each take them); a
//! fast disk otherwise took more than the reserve between two samples, and RocksDB hit a full
//! disk (`tests/disk.rs::a_large_write_onto_a_filling_disk_is_refused_before_the_disk_is_full`).
//! Past the warning threshold (a share of the filesystem used) the node says so first: a log
//! line, a metric, `cluster status`.

use crate::server::config::Reserve;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How big the data directory's filesystem is and how much of it is free: the real one
/// (`Statvfs`), or a simulated disk that fills up.
pub trait Filesystem: Send + Sync {
    /// (size, free to this process), in bytes.
    fn measure(&self, dir: &Path) -> std::io::Result<(u64, u64)>;
}

/// The filesystem as the kernel reports it.
pub struct Statvfs;

impl Filesystem for Statvfs {
    fn measure(&self, dir: &Path) -> std::io::Result<(u64, u64)> {
        Ok((storage::total_bytes(dir)?, storage::free_bytes(dir)?))
    }
}

/// Free bytes less what a flush may still write (it counts as taken).
fn room(free: u64) -> u64 {
    free.saturating_sub(storage::UNFLUSHED_MAX)
}

/// Free space is under what a flush may still write plus `level`. Not `room(free) < level`:
/// with a reserve of 0 that is never true, and the node filled its own disk to the last byte
/// (then could not even open its database to start again).
fn under(free: u64, level: u64) -> bool {
    free < storage::UNFLUSHED_MAX.saturating_add(level)
}

/// How often free space is sampled (a `statvfs`).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct DiskGuard {
    inner: Arc<Inner>,
}

struct Inner {
    filesystem: Arc<dyn Filesystem>,
    reserve: Reserve,
    warning_percent: u8,
    capacity: AtomicU64,
    free: AtomicU64,
    /// Host data bytes admitted since the last sample.
    admitted: AtomicU64,
    low: AtomicBool,
    warning: AtomicBool,
    /// Host writes refused for space since the start: `low` may clear again within a sample.
    refused: AtomicU64,
}

/// Why a write was not admitted: the disk's free bytes, less what is about to be written
/// (`pending`), would be under the reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Short {
    pub free: u64,
    pub pending: u64,
    pub reserve: u64,
}

/// How full the disk is, as `cluster status` and `lspool` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskState {
    Ok,
    /// Past the warning threshold: writes still go on.
    Warning,
    /// Under the reserve: host writes are refused.
    Full,
}

impl DiskState {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Ok => "ok",
            DiskState::Warning => "warning",
            DiskState::Full => "full",
        }
    }
}

impl DiskGuard {
    /// Starts sampling the filesystem under `dir`.
    pub fn start(dir: PathBuf, filesystem: Arc<dyn Filesystem>, reserve: Reserve, warning_percent: u8) -> Self {
        let guard = DiskGuard {
            inner: Arc::new(Inner {
                filesystem,
                reserve,
                warning_percent,
                capacity: AtomicU64::new(0),
                free: AtomicU64::new(u64::MAX),
                admitted: AtomicU64::new(0),
                low: AtomicBool::new(false),
                warning: AtomicBool::new(false),
                refused: AtomicU64::new(0),
            }),
        };
        guard.sample(&dir);
        let sampler = guard.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SAMPLE_EVERY).await;
                sampler.sample(&dir);
            }
        });
        guard
    }

    fn sample(&self, dir: &Path) {
        let (capacity, free) = match self.inner.filesystem.measure(dir) {
            Ok(measured) => measured,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the size of the data directory's filesystem");
                return;
            }
        };
        self.inner.capacity.store(capacity, Ordering::Relaxed);
        self.inner.free.store(free, Ordering::Relaxed);
        self.inner.admitted.store(0, Ordering::Relaxed);
        let reserve = self.reserve();
        // Refused under the reserve, accepted again only a margin above it, so writes do not
        // flip on and off (and the log with them) at the edge.
        let was_low = self.inner.low.load(Ordering::Relaxed);
        let margin = reserve / 8;
        let low = if was_low {
            under(free, reserve.saturating_add(margin))
        } else {
            under(free, reserve)
        };
        if low != self.inner.low.swap(low, Ordering::Relaxed) {
            if low {
                tracing::warn!(
                    free,
                    unflushed = storage::UNFLUSHED_MAX,
                    reserve,
                    "free space, less what the state may still flush, under the reserve: host writes are refused (ENOSPC) until space is freed: delete volumes or TRIM unused space ('flashcopy lspool' shows what uses it), or grow the disk"
                );
            } else {
                tracing::info!(
                    free,
                    "free space is back over the reserve: host writes are accepted again"
                );
            }
        }
        // Warned as refused: with what a flush may still write counted as used, so the
        // warning comes first.
        let used_soon = capacity.saturating_sub(room(free).min(capacity)) * 100 / capacity.max(1);
        let warning = used_soon >= u64::from(self.inner.warning_percent);
        if warning != self.inner.warning.swap(warning, Ordering::Relaxed) {
            if warning {
                tracing::warn!(
                    used_percent = self.used_percent(),
                    threshold = self.inner.warning_percent,
                    free,
                    reserve,
                    "the data disk is past its warning threshold: host writes will be refused once free space is under the reserve"
                );
            } else {
                tracing::info!(
                    used_percent = self.used_percent(),
                    "the data disk is back under its warning threshold"
                );
            }
        }
    }

    /// Whether host data writes must be refused now.
    pub fn low(&self) -> bool {
        self.inner.low.load(Ordering::Relaxed)
    }

    /// Admits a host write of `bytes`, or refuses it: under the reserve, or it would take the
    /// disk under it before the next sample sees it (see the module comment).
    pub fn admit(&self, bytes: u64) -> Result<(), Short> {
        let admitted = self.inner.admitted.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let pending = storage::UNFLUSHED_MAX.saturating_add(admitted.saturating_mul(2));
        if self.low() || self.free() < pending.saturating_add(self.reserve()) {
            self.inner.admitted.fetch_sub(bytes, Ordering::Relaxed);
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            // Refused: the disk says so until a sample finds room again (past the margin).
            if !self.inner.low.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    free = self.free(),
                    pending,
                    reserve = self.reserve(),
                    "free space, less what is about to be written, under the reserve: host writes are refused (ENOSPC) until space is freed: delete volumes or TRIM unused space ('flashcopy lspool' shows what uses it), or grow the disk"
                );
            }
            return Err(Short {
                free: self.free(),
                pending,
                reserve: self.reserve(),
            });
        }
        Ok(())
    }

    /// How many host writes were refused for space since the node started.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Under the reserve, or getting close to it (within half of it): the node gives back
    /// what it can at once (see `space_keeper.rs`).
    pub fn pressed(&self) -> bool {
        let reserve = self.reserve();
        self.low() || (reserve > 0 && under(self.free(), reserve.saturating_add(reserve / 2)))
    }

    pub fn state(&self) -> DiskState {
        if self.low() {
            DiskState::Full
        } else if self.inner.warning.load(Ordering::Relaxed) {
            DiskState::Warning
        } else {
            DiskState::Ok
        }
    }

    /// Size of the filesystem holding the data directory.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity.load(Ordering::Relaxed)
    }

    pub fn free(&self) -> u64 {
        self.inner.free.load(Ordering::Relaxed)
    }

    /// The reserve in bytes (a percentage is of the filesystem's size).
    pub fn reserve(&self) -> u64 {
        self.inner.reserve.bytes(self.capacity())
    }

    pub fn warning_percent(&self) -> u8 {
        self.inner.warning_percent
    }

    /// Used share of the filesystem, in percent.
    pub fn used_percent(&self) -> u64 {
        let capacity = self.capacity().max(1);
        capacity.saturating_sub(self.free().min(capacity)) * 100 / capacity
    }
}
