//! The disk reserve: host data writes are refused (ENOSPC) while the data directory's
//! filesystem has less free space than the reserve, so the disk never fills under RocksDB —
//! reads, admin commands, deletes and zeroing go on, and writes come back by themselves once
//! space returns. Sampled twice a second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct DiskGuard {
    inner: Arc<Inner>,
}

struct Inner {
    reserve: u64,
    free: AtomicU64,
    low: AtomicBool,
}

impl DiskGuard {
    /// Starts sampling the free space under `dir`.
    pub fn start(dir: PathBuf, reserve: u64) -> Self {
        let guard = DiskGuard {
            inner: Arc::new(Inner {
                reserve,
                free: AtomicU64::new(u64::MAX),
                low: AtomicBool::new(false),
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

    fn sample(&self, dir: &std::path::Path) {
        match storage::free_bytes(dir) {
            Ok(free) => {
                self.inner.free.store(free, Ordering::Relaxed);
                // Refused under the reserve, accepted again only a margin above it, so writes
                // do not flip on and off (and the log with them) at the edge.
                let was_low = self.inner.low.load(Ordering::Relaxed);
                let margin = self.inner.reserve / 8;
                let low = if was_low {
                    free < self.inner.reserve.saturating_add(margin)
                } else {
                    free < self.inner.reserve
                };
                if low != self.inner.low.swap(low, Ordering::Relaxed) {
                    if low {
                        tracing::warn!(
                            free,
                            reserve = self.inner.reserve,
                            "free space under the reserve: host writes are refused (ENOSPC)"
                        );
                    } else {
                        tracing::info!(
                            free,
                            "free space is back over the reserve: host writes are accepted again"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the free space of the data directory"),
        }
    }

    /// Whether host data writes must be refused now.
    pub fn low(&self) -> bool {
        self.inner.low.load(Ordering::Relaxed)
    }

    /// Under the reserve, or getting close to it (within half of it): the node gives back
    /// what it can at once (see `space_keeper.rs`).
    pub fn pressed(&self) -> bool {
        let reserve = self.inner.reserve;
        self.low() || (reserve > 0 && self.free() < reserve.saturating_add(reserve / 2))
    }

    pub fn free(&self) -> u64 {
        self.inner.free.load(Ordering::Relaxed)
    }

    pub fn reserve(&self) -> u64 {
        self.inner.reserve
    }
}
