//! Keeps the Raft log's size bounded under sustained writes. openraft snapshots every
//! `--snapshot-every` entries and keeps a quarter of that behind each snapshot; with host-write
//! entries of up to 8 MiB that could be many GiB. Once the log holds more than
//! `--max-log-size` and more than the state itself (so a snapshot, which copies the state, never
//! costs more than the log it frees), the keeper takes a snapshot, then purges the log up to it.

use crate::server::disk::DiskGuard;
use crate::server::metrics::Metrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use storage::{LogStore, StateView, TypeConfig};

/// How often the log's size is checked.
const EVERY: Duration = Duration::from_secs(2);

/// What the keeper watches and acts on.
pub struct LogKeeper {
    pub raft: openraft::Raft<TypeConfig>,
    pub log: LogStore,
    pub state: StateView,
    pub metrics: Arc<Metrics>,
    /// A snapshot copies the state: it is not taken without room for it above the reserve.
    pub disk: DiskGuard,
    /// `--max-log-size` in bytes.
    pub max_bytes: u64,
}

pub async fn run(k: LogKeeper) {
    let LogKeeper {
        raft,
        log,
        state,
        metrics,
        disk,
        max_bytes,
    } = k;
    // The first tick is at once: the gauge is right from the start.
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        let bytes = log.log_bytes();
        metrics.log_bytes.store(bytes, Ordering::Relaxed);
        let state_bytes = state.stored_bytes();
        if bytes <= max_bytes.max(state_bytes) {
            continue;
        }
        let raft_metrics = raft.metrics().borrow().clone();
        let snapshot = raft_metrics.snapshot.map(|s| s.index);
        let purged = raft_metrics.purged.map(|p| p.index);
        // Purge up to the latest snapshot if that frees anything, else take a new snapshot
        // (the next round purges up to it).
        let applied = raft_metrics.last_applied.map(|a| a.index);
        let result = match snapshot {
            Some(index) if purged < Some(index) => {
                tracing::info!(log_bytes = bytes, upto = index, "the log is over its size: purging it");
                raft.trigger().purge_log(index).await
            }
            // Nothing applied since the last snapshot: a new one would free nothing.
            Some(index) if Some(index) >= applied => continue,
            _ if disk.free() < state_bytes.saturating_add(disk.reserve()) => {
                tracing::warn!(
                    log_bytes = bytes,
                    state_bytes,
                    free = disk.free(),
                    "the log is over its size, but the disk has no room for a snapshot: not taking one"
                );
                continue;
            }
            _ => {
                tracing::info!(log_bytes = bytes, "the log is over its size: taking a snapshot");
                raft.trigger().snapshot().await
            }
        };
        if result.is_err() {
            return; // The Raft core stopped; `serve` reports why.
        }
    }
}
