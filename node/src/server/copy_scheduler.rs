//! Background copy, driven by the leader: bounded copy steps for every relationship that has
//! work, round robin, yielding to host writes, each relationship within its own copy rate
//! (`chflash`, Raft state) and all within the node's `--copy-rate`. The work
//! list comes from the replicated bitmaps, so a new leader or a restarted node resumes where
//! the copy stood. It also proposes the tick that fires a due automatic thaw, and starts the
//! kept-track sweeper (`kept_sweeper.rs`) when a volume has kept tracks left to sweep.

use crate::server::consensus::{Committed, Propose, ProposeError};
use crate::server::disk::DiskGuard;
use crate::server::kept_sweeper;
use crate::server::metrics::Metrics;
use crate::server::write_batcher::WritesWaiting;
use statemachine::{Command, Event, Timestamp, TRACK_SIZE};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage::{SharedState, StateQuery};
use tokio::time::Instant;

/// Tracks per copy step: 4 MiB, so one apply stays short.
pub const STEP_TRACKS: u32 = 64;
/// Copy steps proposed and not yet applied, at most: the next step is replicated and made
/// durable while the one before it applies.
pub const STEPS_IN_FLIGHT: usize = 4;
/// How long the scheduler pauses after a copy step that was not committed (`ProposeError`).
/// Some of those come back at once — `Unavailable` while Raft shuts down or has failed,
/// `NotLeader` while the metrics behind `is_leader` still name this node — and the step's
/// relationship still has the same work, so without a pause the loop would propose it again
/// straight away, spinning until the cluster recovers (added with "a pause after a failed one"
/// in 626f33d). The pause is taken in `finished`, on the scheduler's only task: it holds back
/// every relationship and the thaw tick too, once per failed step.
const FAILED_STEP_PAUSE: Duration = Duration::from_millis(100);

/// What the scheduler works with: it reads the replicated state, proposes steps and ticks, and
/// yields to waiting host writes.
pub struct CopyScheduler<P> {
    pub proposer: Arc<P>,
    pub state: SharedState,
    pub host_writes: WritesWaiting,
    /// Copies take space: they wait while the disk is under its reserve.
    pub disk: DiskGuard,
    pub metrics: Arc<Metrics>,
    /// Bytes of copied data per second, at most (`None`: unlimited).
    pub copy_rate: Option<u64>,
}

/// A relationship's steps in flight, and whether its last step found a full step of data to
/// copy (only then may more steps follow it before it is applied: they will find work too,
/// rather than be refused once the copy completes).
#[derive(Default)]
struct Flight {
    in_flight: usize,
    streaming: bool,
}

type PairKey = (String, String);

pub async fn run<P: Propose>(s: CopyScheduler<P>) {
    let s = Arc::new(s);
    let mut turn = 0usize;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut flights: BTreeMap<PairKey, Flight> = BTreeMap::new();
    let mut pace = Pace::new(s.copy_rate);
    // Each relationship's own rate, kept while it has work.
    let mut paces: BTreeMap<PairKey, Pace> = BTreeMap::new();
    // Under a copy rate one step at a time, so the rate holds from the first step on.
    let most = if pace.rate.is_some() { 1 } else { STEPS_IN_FLIGHT };
    let mut sweeper: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            s.finished(
                done.expect("copy steps do not panic"),
                &mut flights,
                &mut pace,
                &mut paces,
            )
            .await;
        }
        if !s.proposer.is_leader() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // Due on the state's clock, as a tick stamped now would find it (a leader whose clock
        // once ran ahead does not delay the thaw).
        let now = Timestamp(s.proposer.now_millis());
        // A thawed volume with held writes left gets a tick per batch until they are released.
        let tick = s.state.query(|state| {
            state.releasing_held_writes() || state.next_thaw().is_some_and(|due| due <= state.clock_at(now))
        });
        if tick {
            let _ = s.proposer.propose(Command::Tick).await;
        }
        if sweeper.as_ref().is_none_or(|h| h.is_finished()) && s.state.query(|state| !state.kept_sweeps().is_empty()) {
            sweeper = Some(tokio::spawn(kept_sweeper::run(s.proposer.clone(), s.state.clone())));
        }
        let work = s.state.query(|state| state.copy_work());
        paces.retain(|(source, target), _| work.iter().any(|w| &w.source == source && &w.target == target));
        for item in &work {
            let rate = item.copy_rate.map(|mib| u64::from(mib) << 20);
            let key = (item.source.clone(), item.target.clone());
            paces.entry(key).or_insert_with(|| Pace::new(rate)).set_rate(rate);
        }
        let now = Instant::now();
        let next = (!s.disk.low() && in_flight.len() < most)
            .then(|| {
                (0..work.len()).map(|k| &work[(turn + k) % work.len()]).find(|item| {
                    let key = (item.source.clone(), item.target.clone());
                    let own = &paces[&key];
                    let flight = flights.get(&key);
                    // Under its own rate a relationship runs one step at a time, when due.
                    own.ready(now)
                        && flight.is_none_or(|f| {
                            f.in_flight == 0
                                || (own.rate.is_none()
                                    && f.streaming
                                    && item.remaining > (f.in_flight as u64 + 1) * u64::from(STEP_TRACKS))
                        })
                })
            })
            .flatten();
        let Some(item) = next else {
            match in_flight.join_next().await {
                Some(done) => {
                    s.finished(
                        done.expect("copy steps do not panic"),
                        &mut flights,
                        &mut pace,
                        &mut paces,
                    )
                    .await
                }
                // Nothing in flight: look again in a while, or when a paced relationship is
                // due (a fast rate must not wait out the whole while after each step).
                None => {
                    let due = paces.values().map(|p| p.next).filter(|next| *next > now).min();
                    let idle = now + Duration::from_millis(50);
                    tokio::time::sleep_until(due.map_or(idle, |due| due.min(idle))).await
                }
            }
            continue;
        };
        turn = turn.wrapping_add(1);
        let key = (item.source.clone(), item.target.clone());
        // Host writes go first: wait (briefly) while any is being proposed.
        let yield_until = Instant::now() + Duration::from_millis(100);
        while s.host_writes.any() && Instant::now() < yield_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pace.wait().await;
        let step = Command::CopyStep {
            source: key.0.clone(),
            target: key.1.clone(),
            max_tracks: STEP_TRACKS,
        };
        flights.entry(key.clone()).or_default().in_flight += 1;
        let proposer = s.proposer.clone();
        in_flight.spawn(async move { (key, Instant::now(), proposer.propose(step).await) });
    }
}

impl<P: Propose> CopyScheduler<P> {
    /// Accounts for a finished step: metrics, the rates, and its relationship's flight.
    async fn finished(
        &self,
        (key, started, result): (PairKey, Instant, Result<Committed, ProposeError>),
        flights: &mut BTreeMap<PairKey, Flight>,
        pace: &mut Pace,
        paces: &mut BTreeMap<PairKey, Pace>,
    ) {
        let own = paces.get_mut(&key);
        let flight = flights.entry(key).or_default();
        flight.in_flight = flight.in_flight.saturating_sub(1);
        flight.streaming = false;
        let events = match result {
            Ok(Committed { events, .. }) => events,
            Err(e) => {
                tracing::debug!(error = %e, "copy step not proposed");
                tokio::time::sleep(FAILED_STEP_PAUSE).await;
                return;
            }
        };
        let mut copied = 0u64;
        for event in &events {
            if let Event::TracksCopied {
                source,
                target,
                tracks,
                data_tracks,
                remaining,
            } = event
            {
                self.metrics.record_copy(source, target, *tracks);
                // Only copied data counts against the rate: unwritten tracks cost nothing.
                copied += u64::from(*data_tracks) * u64::from(TRACK_SIZE);
                flight.streaming = *data_tracks == STEP_TRACKS && *remaining > 0;
            }
        }
        // Nothing to remember about a relationship that may have ended.
        flights.retain(|_, f| f.in_flight > 0 || f.streaming);
        pace.account(started, copied);
        if let Some(own) = own {
            own.account(started, copied);
        }
    }
}

/// Keeps copied bytes within a rate (the node's `--copy-rate`, or a relationship's): a step that
/// copied `bytes` and started at `started` lets the next one start no sooner than
/// `started + bytes / rate`.
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

    /// A relationship's rate as the state now says (`chflash` may have changed it).
    fn set_rate(&mut self, rate: Option<u64>) {
        self.rate = rate.filter(|r| *r > 0);
    }

    fn ready(&self, now: Instant) -> bool {
        self.next <= now
    }

    fn account(&mut self, started: Instant, bytes: u64) {
        if let Some(rate) = self.rate {
            self.next = self.next.max(started) + Duration::from_secs_f64(bytes as f64 / rate as f64);
        }
    }

    async fn wait(&self) {
        tokio::time::sleep_until(self.next).await;
    }
}
