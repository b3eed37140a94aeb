//! Background copy, driven by the leader: bounded copy steps for every relationship that has
//! work, round robin, yielding to host writes, within the cluster-wide copy-rate limit. The work
//! list comes from the replicated bitmaps, so a new leader or a restarted node resumes where
//! the copy stood. It also proposes the tick that fires a due automatic thaw.

use crate::server::consensus::{now_millis, Committed, Propose};
use crate::server::disk::DiskGuard;
use crate::server::metrics::Metrics;
use crate::server::write_batcher::WritesWaiting;
use statemachine::{Command, Event, Timestamp, TRACK_SIZE};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::StateView;

/// Tracks per copy step: 4 MiB, so one apply stays short.
pub const STEP_TRACKS: u32 = 64;

/// What the scheduler works with: it reads the replicated state, proposes steps and ticks, and
/// yields to waiting host writes.
pub struct CopyScheduler<P> {
    pub proposer: Arc<P>,
    pub state: StateView,
    pub host_writes: WritesWaiting,
    /// Copies take space: they wait while the disk is under its reserve.
    pub disk: DiskGuard,
    pub metrics: Arc<Metrics>,
    /// Bytes of copied data per second, at most (`None`: unlimited).
    pub copy_rate: Option<u64>,
}

pub async fn run<P: Propose>(s: CopyScheduler<P>) {
    let mut turn = 0usize;
    loop {
        if !s.proposer.is_leader() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // Due on the state's clock, as a tick stamped now would find it (a leader whose clock
        // once ran ahead does not delay the thaw).
        let now = Timestamp(now_millis());
        // A thawed volume with held writes left gets a tick per batch until they are released.
        let tick = s.state.query(|state| {
            state.releasing_held_writes() || state.next_thaw().is_some_and(|due| due <= state.clock_at(now))
        });
        if tick {
            let _ = s.proposer.propose(Command::Tick).await;
        }
        let work = s.state.query(|state| state.copy_work());
        if work.is_empty() || s.disk.low() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // Host writes go first: wait (briefly) while any is being proposed.
        let yield_until = Instant::now() + Duration::from_millis(100);
        while s.host_writes.any() && Instant::now() < yield_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let item = &work[turn % work.len()];
        turn = turn.wrapping_add(1);
        let started = Instant::now();
        let step = Command::CopyStep {
            source: item.source.clone(),
            target: item.target.clone(),
            max_tracks: STEP_TRACKS,
        };
        match s.proposer.propose(step).await {
            Ok(Committed { events, .. }) => {
                let mut copied = 0u32;
                for event in &events {
                    if let Event::TracksCopied {
                        source,
                        target,
                        tracks,
                        data_tracks,
                        ..
                    } = event
                    {
                        s.metrics.record_copy(source, target, *tracks);
                        // Only copied data counts against the rate: unwritten tracks cost nothing.
                        copied += *data_tracks;
                    }
                }
                if let Some(rate) = s.copy_rate.filter(|r| *r > 0) {
                    let bytes = u64::from(copied) * u64::from(TRACK_SIZE);
                    let budget = Duration::from_secs_f64(bytes as f64 / rate as f64);
                    if let Some(rest) = budget.checked_sub(started.elapsed()) {
                        tokio::time::sleep(rest).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "copy step not proposed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
