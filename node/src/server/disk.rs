//! This node's disk: capacity, free space, the reserve and the warning threshold, sampled twice
//! a second. Host data writes are refused (ENOSPC) while free space is under the reserve, so
//! the disk never fills under RocksDB — reads, admin commands, deletes and zeroing go on, and
//! writes come back by themselves once space returns. Past the warning threshold (a share of
//! the filesystem used) the node says so first: a log line, a metric, `cluster status`.

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
    low: AtomicBool,
    warning: AtomicBool,
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
                low: AtomicBool::new(false),
                warning: AtomicBool::new(false),
            }),
        };
        guard.sample(&dir);
        let sampler = guard.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
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
        let reserve = self.reserve();
        // Refused under the reserve, accepted again only a margin above it, so writes do not
        // flip on and off (and the log with them) at the edge.
        let was_low = self.inner.low.load(Ordering::Relaxed);
        let margin = reserve / 8;
        let low = if was_low {
            free < reserve.saturating_add(margin)
        } else {
            free < reserve
        };
        if low != self.inner.low.swap(low, Ordering::Relaxed) {
            if low {
                tracing::warn!(
                    free,
                    reserve,
                    "free space under the reserve: host writes are refused (ENOSPC) until space is freed: delete volumes or TRIM unused space ('flashcopy lspool' shows what uses it), or grow the disk"
                );
            } else {
                tracing::info!(
                    free,
                    "free space is back over the reserve: host writes are accepted again"
                );
            }
        }
        let warning = self.used_percent() >= u64::from(self.inner.warning_percent);
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

    /// Under the reserve, or getting close to it (within half of it): the node gives back
    /// what it can at once (see `space_keeper.rs`).
    pub fn pressed(&self) -> bool {
        let reserve = self.reserve();
        self.low() || (reserve > 0 && self.free() < reserve.saturating_add(reserve / 2))
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
