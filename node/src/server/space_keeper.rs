//! Keeps this node's disk usable: the Raft log stays within `--max-log-size`, and the space of
//! deleted volumes and zeroed tracks comes back within seconds.
//!
//! A snapshot is a RocksDB checkpoint (hard links: a flush, never a copy of the state), so the
//! log is cut back whenever it passes its size (and the state's): snapshot, then purge up to it. When tracks were
//! dropped, their key ranges are compacted first (and blob garbage collected, see
//! `storage::Space::reclaim`), then a new snapshot replaces the old one, whose checkpoint still
//! links the files that held them. While the disk is short of its reserve everything is done
//! at once, whatever the log's size: the log must never hold the disk hostage (nor its spare
//! segment files, deleted first).

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
}

pub async fn run(k: SpaceKeeper) {
    // The first tick is at once: the gauges are right from the start.
    let mut every = tokio::time::interval(EVERY);
    // Space was given back in the state since the last snapshot: the snapshot's checkpoint
    // still holds it until a new one replaces it.
    let mut reclaimed = false;
    let mut collected_at: Option<Instant> = None;
    // A snapshot was asked for to cut the log back: the purge up to it follows.
    let mut cutting = false;
    let mut snapshot_at: Option<Instant> = None;
    // The limit last given to the log for its spare segment files.
    let mut spares_set: Option<u64> = None;
    // openraft's own purge after a snapshot (up to the snapshot less what it keeps) must not go
    // back below a purge already scheduled (its debug builds assert it: simulation seed 54 met
    // it), and a leader schedules a purge until no replication reads the entries. So: a
    // snapshot is asked for only once the highest purge asked for here is done or far enough
    // behind what is applied, and while a snapshot asked for here is being built, purges stay
    // below what it will let openraft purge.
    let keep = k.raft.config().max_in_snapshot_log_to_keep;
    let mut asked_max: Option<u64> = None;
    // While a snapshot asked for here is built: the snapshot it replaces, and the applied index
    // when it was asked for (the new one is at least that).
    let mut building: Option<(Option<u64>, u64)> = None;
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
        if !over && !pressed && !reclaimed && !cutting {
            continue;
        }
        let raft_metrics = k.raft.metrics().borrow().clone();
        let snapshot = raft_metrics.snapshot.map(|s| s.index);
        let purged = raft_metrics.purged.map(|p| p.index);
        let applied = raft_metrics.last_applied.map(|a| a.index);
        // A disk short of live data alone is not helped by snapshots every second.
        let snapshot_due =
            over || reclaimed || snapshot_at.is_none_or(|at: Instant| at.elapsed() >= PRESSED_SNAPSHOT_EVERY);
        // Purge first: under sustained writes there is always a newer entry to snapshot.
        // Entries a follower still needs stay unless the disk is short: a follower that fell
        // behind catches up from the log, not by installing a snapshot.
        let needed = raft_metrics
            .replication
            .as_ref()
            .and_then(|followers| followers.values().map(|m| m.map_or(0, |m| m.index)).min());
        let snapshot = match needed {
            Some(needed) if !pressed => snapshot.map(|s| s.min(needed)),
            _ => snapshot,
        };
        let current = raft_metrics.snapshot.map(|s| s.index);
        if building.is_some_and(|(before, _)| current != before) {
            building = None;
        }
        let purge_to = match building {
            Some((_, floor)) => snapshot.map(|s| s.min(floor.saturating_sub(keep))),
            None => snapshot,
        };
        let may_snapshot = asked_max.is_none_or(|asked| purged >= Some(asked) || applied >= Some(asked + keep));
        let result = if purged < purge_to && (cutting || over || pressed) {
            let upto = purge_to.expect("a snapshot exists");
            tracing::info!(log_bytes, upto, "purging the log up to the snapshot");
            if building.is_none() {
                cutting = false;
            }
            asked_max = asked_max.max(Some(upto));
            k.raft.trigger().purge_log(upto).await
        } else if (snapshot < applied || reclaimed) && snapshot_due && !cutting && may_snapshot {
            tracing::info!(log_bytes, pressed, reclaimed, "taking a snapshot (a checkpoint)");
            reclaimed = false;
            cutting = true;
            snapshot_at = Some(Instant::now());
            building = Some((current, applied.unwrap_or(0)));
            k.raft.trigger().snapshot().await
        } else {
            if cutting && purged >= snapshot && snapshot_at.is_some_and(|at| at.elapsed() >= PRESSED_SNAPSHOT_EVERY) {
                // The snapshot never came (the trigger was dropped): ask again.
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
