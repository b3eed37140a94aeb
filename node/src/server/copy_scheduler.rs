//! Background copy, driven by the leader: bounded copy steps for every relationship that has
//! work, round robin, yielding to host writes, within the cluster-wide copy-rate limit. The work
//! list comes from the replicated bitmaps, so a new leader or a restarted node resumes where
//! the copy stood. It also proposes the tick that fires a due automatic thaw.

use crate::server::consensus::{now_millis, Committed, Propose, ProposeError};
use crate::server::disk::DiskGuard;
use crate::server::metrics::Metrics;
use crate::server::write_batcher::WritesWaiting;
use statemachine::{Command, Event, Timestamp, TRACK_SIZE};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::StateView;

/// Tracks per copy step: 4 MiB, so one apply stays short.
pub const STEP_TRACKS: u32 = 64;
/// Copy steps proposed and not yet applied, at most: the next step is replicated and made
/// durable while the one before it applies.
pub const STEPS_IN_FLIGHT: usize = 4;

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
    let s = Arc::new(s);
    let mut turn = 0usize;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut pace = Pace::new(s.copy_rate);
    // Under a copy rate one step at a time, so the rate holds from the first step on.
    let steps_in_flight = if pace.rate.is_some() { 1 } else { STEPS_IN_FLIGHT };
    loop {
        while let Some(done) = in_flight.try_join_next() {
            let (started, result) = done.expect("copy steps do not panic");
            pace.account(started, s.finished(result));
        }
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
        if work.is_empty() || s.disk.low() || in_flight.len() >= steps_in_flight {
            match in_flight.join_next().await {
                Some(done) => {
                    let (started, result) = done.expect("copy steps do not panic");
                    pace.account(started, s.finished(result));
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            continue;
        }
        // Host writes go first: wait (briefly) while any is being proposed.
        let yield_until = Instant::now() + Duration::from_millis(100);
        while s.host_writes.any() && Instant::now() < yield_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pace.wait().await;
        let item = &work[turn % work.len()];
        turn = turn.wrapping_add(1);
        let step = Command::CopyStep {
            source: item.source.clone(),
            target: item.target.clone(),
            max_tracks: STEP_TRACKS,
        };
        let proposer = s.proposer.clone();
        in_flight.spawn(async move { (Instant::now(), proposer.propose(step).await) });
    }
}

impl<P: Propose> CopyScheduler<P> {
    /// Counts what a step copied; returns the bytes of data it copied (unwritten tracks cost
    /// nothing against the rate).
    fn finished(&self, result: Result<Committed, ProposeError>) -> u64 {
        let events = match result {
            Ok(Committed { events, .. }) => events,
            Err(e) => {
                tracing::debug!(error = %e, "copy step not proposed");
                return 0;
            }
        };
        let mut copied = 0u64;
        for event in &events {
            if let Event::TracksCopied {
                source,
                target,
                tracks,
                data_tracks,
                ..
            } = event
            {
                self.metrics.record_copy(source, target, *tracks);
                copied += u64::from(*data_tracks) * u64::from(TRACK_SIZE);
            }
        }
        copied
    }
}

/// Keeps copied bytes within `--copy-rate`: a step that copied `bytes` and started at `started`
/// lets the next one start no sooner than `started + bytes / rate`.
struct Pace {
    rate: Option<u64>,
    next: Instant,
}

impl Pace {
    fn new(rate: Option<u64>) -> Self {
        Pace {
            rate: rate.filter(|r| *r > 0),
            next: Instant::now(),
        }
    }

    fn account(&mut self, started: Instant, bytes: u64) {
        if let Some(rate) = self.rate {
            self.next = self.next.max(started) + Duration::from_secs_f64(bytes as f64 / rate as f64);
        }
    }

    async fn wait(&self) {
        tokio::time::sleep_until(self.next.into()).await;
    }
}
