//! Background copy, driven by the leader: bounded copy steps for every relationship that has
//! work, round robin, yielding to host writes, within the cluster-wide copy-rate limit. The work
//! list comes from the replicated bitmaps, so a new leader or a restarted node resumes where
//! the copy stood. It also proposes the tick that fires a due automatic thaw.

use crate::controller::{now_millis, Controller};
use statemachine::{Command, Event, Timestamp, TRACK_SIZE};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tracks per copy step: 4 MiB, so one apply stays short.
pub const STEP_TRACKS: u32 = 64;

pub async fn run(c: Arc<Controller>) {
    let mut turn = 0usize;
    loop {
        if !c.is_leader() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let now = Timestamp(now_millis());
        if c.view.query(|s| s.next_thaw()).is_some_and(|due| due <= now) {
            let _ = c.propose(Command::Tick).await;
        }
        let work = c.view.query(|s| s.copy_work());
        if work.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // Host writes go first: wait (briefly) while any is being proposed.
        let yield_until = Instant::now() + Duration::from_millis(100);
        while c.host_writes_in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < yield_until {
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
        match c.propose(step).await {
            Ok((_, events)) => {
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
                        c.metrics.record_copy(source, target, *tracks);
                        // Only copied data counts against the rate: unwritten tracks cost nothing.
                        copied += *data_tracks;
                    }
                }
                if let Some(rate) = c.copy_rate.filter(|r| *r > 0) {
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
