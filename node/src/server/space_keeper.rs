//! Keeps this node's disk usable: the Raft log stays within `--max-log-size`, and the space of
//! deleted volumes and zeroed tracks comes back within seconds.
//!
//! A snapshot is a RocksDB checkpoint (hard links: a flush, never a copy of the state), so the
//! log is cut back whenever it passes its size (and the state's): snapshot, then purge up to it. When tracks were
//! dropped, their key ranges are compacted first (and blob garbage collected, see
//! `storage::Space::reclaim`), then a new snapshot replaces the old one, whose checkpoint still
//! links the files that held them. While the disk is short of its reserve everything is done
//! at once, whatever the log's size: the log must never hold the disk hostage (nor its spare
//! segment files, deleted first). Every purge of the log is asked for here, in increasing
//! order (openraft is configured to purge nothing itself): after each snapshot, up to a few
//! entries behind it, as openraft would; when cutting back, up to the snapshot (or what the
//! slowest follower still needs, unless the disk is short).

use crate::server::disk::DiskGuard;
use crate::server::metrics::Metrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use storage::{LogStore, Space, TypeConfig};
use tokio::time::Instant;

/// How often the keeper looks.
const EVERY: Duration = Duration::from_secs(1);
/// While the disk is short and nothing was reclaimed, snapshots (memtable flushes) at most this
/// often.
const PRESSED_SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Dropped tracks are compacted away at most this often while the disk has room.
const RECLAIM_EVERY: Duration = Duration::from_secs(3);
/// While the disk is short, blob garbage is collected at most this often (collecting rewrites
/// the live blocks that share files with it).
const COLLECT_EVERY: Duration = Duration::from_secs(30);

/// What the keeper watches and acts on.
pub struct SpaceKeeper {
    pub raft: openraft::Raft<TypeConfig>,
    pub log: LogStore,
    pub space: Space,
    pub metrics: Arc<Metrics>,
    pub disk: DiskGuard,
    /// `--max-log-size` in bytes.
    pub max_log_bytes: u64,
    /// Entries kept behind a snapshot (`server::log_kept_behind_snapshot`).
    pub kept_behind_snapshot: u64,
}

pub async fn run(k: SpaceKeeper) {
    // The first tick is at once: the gauges are right from the start.
    let mut every = tokio::time::interval(EVERY);
    // Space was given back in the state since the last snapshot: the snapshot's checkpoint
    // still holds it until a new one replaces it.
    let mut reclaimed = false;
    let mut collected_at: Option<Instant> = None;
    // A snapshot was asked for to cut the log back (replacing this one): the purge up to it
    // follows.
    let mut cutting = false;
    let mut cutting_from: Option<u64> = None;
    let mut snapshot_at: Option<Instant> = None;
    // The limit last given to the log for its spare segment files.
    let mut spares_set: Option<u64> = None;
    // The highest purge asked for: openraft ignores a lower one, so it is not asked again.
    let mut asked: Option<u64> = None;
    loop {
        every.tick().await;
        let log_bytes = k.log.log_bytes();
        k.metrics.log_bytes.store(log_bytes, Ordering::Relaxed);
        let pressed = k.disk.pressed();
        let spare_limit = spare_limit(pressed, k.max_log_bytes, k.disk.capacity());
        if spares_set != Some(spare_limit) {
            let log = k.log.clone();
            match storage::runtime::offload(move || log.keep_spare_segments(spare_limit)).await {
                Ok(Ok(())) => spares_set = Some(spare_limit),
                Ok(Err(e)) => tracing::warn!(error = %e, "deleting the log's spare segment files failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "deleting the log's spare segment files stopped"),
            }
        }
        // RocksDB's properties wait on its mutex: measured here, off the async workers, once a
        // tick; the admin API and metrics read the last measure.
        let measuring = k.space.clone();
        let usage = match storage::runtime::offload(move || measuring.usage()).await {
            Ok(usage) => usage,
            Err(_) => k.space.last_usage(),
        };
        // Compacting a volume's key range rewrites its table files: a host that TRIMs often
        // gets it every few seconds, not every second, unless the disk is short.
        let due = |every: Duration| collected_at.is_none_or(|at: Instant| at.elapsed() >= every);
        let dropped_due = k.space.has_dropped() && (pressed || due(RECLAIM_EVERY));
        let collect_due = pressed && due(COLLECT_EVERY) && usage.garbage > 0;
        if dropped_due || collect_due {
            collected_at = Some(Instant::now());
            let space = k.space.clone();
            match storage::runtime::offload(move || space.reclaim(pressed)).await {
                Ok(Ok(done)) => {
                    tracing::info!(volumes = done.volumes, collected = done.collected, "space reclaimed");
                    reclaimed = true;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reclaiming space failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "reclaiming space stopped"),
            }
        }
        // Past its size, and past the state's: a follower that fell behind by less than the
        // state catches up from the log, which is cheaper for it than a snapshot install.
        let over = log_bytes > k.max_log_bytes.max(usage.state);
        let cut_back = over || pressed || cutting;
        let raft_metrics = k.raft.metrics().borrow().clone();
        let snapshot = raft_metrics.snapshot.map(|s| s.index);
        let purged = raft_metrics.purged.map(|p| p.index);
        let applied = raft_metrics.last_applied.map(|a| a.index);
        // After every snapshot (openraft's every `--snapshot-every` entries, or one asked for
        // here), the log up to a few entries behind it goes, as openraft itself would purge.
        let mut purge_to = snapshot.and_then(|s| s.checked_sub(k.kept_behind_snapshot));
        if cut_back {
            // Purge first: under sustained writes there is always a newer entry to snapshot.
            // Entries a follower still needs stay unless the disk is short: a follower that fell
            // behind catches up from the log, not by installing a snapshot.
            let needed = raft_metrics
                .replication
                .as_ref()
                .and_then(|followers| followers.values().map(|m| m.map_or(0, |m| m.index)).min());
            let cut = match needed {
                Some(needed) if !pressed => snapshot.map(|s| s.min(needed)),
                _ => snapshot,
            };
            purge_to = purge_to.max(cut);
        }
        // A disk short of live data alone is not helped by snapshots every second.
        let snapshot_due =
            over || reclaimed || snapshot_at.is_none_or(|at: Instant| at.elapsed() >= PRESSED_SNAPSHOT_EVERY);
        let result = if purge_to > purged && purge_to > asked {
            let upto = purge_to.expect("a snapshot exists");
            tracing::info!(log_bytes, upto, "purging the log");
            if cut_back && snapshot != cutting_from {
                cutting = false;
            }
            asked = purge_to;
            k.raft.trigger().purge_log(upto).await
        } else if (over || pressed || reclaimed) && (snapshot < applied || reclaimed) && snapshot_due && !cutting {
            tracing::info!(log_bytes, pressed, reclaimed, "taking a snapshot (a checkpoint)");
            reclaimed = false;
            cutting = true;
            cutting_from = snapshot;
            snapshot_at = Some(Instant::now());
            k.raft.trigger().snapshot().await
        } else {
            // The snapshot came with nothing to purge, or never came (the trigger was dropped:
            // ask again).
            let asked_long_ago = snapshot_at.is_some_and(|at| at.elapsed() >= PRESSED_SNAPSHOT_EVERY);
            if cutting && (snapshot != cutting_from || asked_long_ago) {
                cutting = false;
            }
            continue;
        };
        if result.is_err() {
            return; // The Raft core stopped; `serve` reports why.
        }
    }
}

/// Bytes of purged log segment files kept for reuse: as many as the log may hold
/// (`--max-log-size`), so under sustained writes each new segment overwrites a file (a much
/// cheaper sync than one that grows a file), but never more than an eighth of the disk, and
/// none while the disk is short (their space is worth more than their reuse).
fn spare_limit(pressed: bool, max_log_bytes: u64, capacity: u64) -> u64 {
    if pressed {
        return 0;
    }
    max_log_bytes.min(capacity / 8)
}
