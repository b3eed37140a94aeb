//! The leader drives every pair whose primary is here: one task per pair for what is done pair
//! by pair (copy steps while copy-pending, the secondary's mark when paused), and one stream per
//! path (`stream.rs`) that sends the full-duplex pairs' writes together, in log order. When the
//! secondary stops answering for longer than the mirror timeout the pair suspends.

use super::link::LinkError;
use super::Mirror;
use crate::server::consensus::Consensus;
use statemachine::{
    Command, Event, MirrorBatch, MirroredWrite, PairState, PprcPath, SecondaryMark, SuspendReason, VolumeId, WriteData,
    MIRROR_COPY_TRACKS,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage::StateQuery;
use tokio::time::Instant;

pub async fn run(mirror: Arc<Mirror>, consensus: Arc<Consensus>) {
    let mut tasks: BTreeMap<(VolumeId, u64), tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut streams: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let leading = consensus.is_leader();
        if leading && mirror.state.query(|s| s.cluster_id().is_none()) {
            if let Err(e) = consensus.propose(Command::NameCluster { id: new_cluster_id() }).await {
                tracing::debug!(error = %e, "cluster not named yet");
            }
        }
        // (volume, generation, what no longer needs keeping: confirmed, or all sent if suspended)
        let primaries: Vec<(VolumeId, u64, u64)> = mirror.state.query(|s| {
            s.primaries()
                .map(|(id, _, m)| {
                    let done = if m.state == PairState::FullDuplex {
                        m.confirmed
                    } else {
                        m.sent
                    };
                    (id, m.generation, done)
                })
                .collect()
        });
        // A pair's driver forgets what a suspension made moot; here only volumes no longer
        // primaries go (a pair may turn full duplex between this look and the tap).
        let primary: BTreeMap<VolumeId, u64> = primaries.iter().map(|p| (p.0, p.1)).collect();
        mirror.tap.retain(|v| primary.contains_key(&v), leading);
        tasks.retain(|_, task| !task.is_finished());
        streams.retain(|_, task| !task.is_finished());
        if !leading {
            for task in std::mem::take(&mut tasks)
                .into_values()
                .chain(std::mem::take(&mut streams).into_values())
            {
                task.abort();
            }
            // What the leader recorded as confirmed is not needed any more.
            for &(id, generation, done) in &primaries {
                mirror.tap.confirmed(id, generation, done);
            }
            continue;
        }
        for &(id, generation, _) in &primaries {
            tasks
                .entry((id, generation))
                .or_insert_with(|| tokio::spawn(drive(mirror.clone(), consensus.clone(), id, generation)));
        }
        let paths: Vec<String> = mirror
            .state
            .query(|s| s.paths().map(|p| p.remote_cluster.clone()).collect());
        for remote in paths {
            streams
                .entry(remote.clone())
                .or_insert_with(|| tokio::spawn(super::stream::run(mirror.clone(), consensus.clone(), remote)));
        }
    }
}

/// What a pair's driver reads of the state each turn.
struct Look {
    name: String,
    state: PairState,
    sent: u64,
    confirmed: u64,
    out_of_sync_empty: bool,
    unconfirmed_tracks: u64,
    remote_volume: String,
    path: Option<PprcPath>,
}

fn look(mirror: &Mirror, volume: VolumeId, generation: u64) -> Option<Look> {
    mirror.state.query(|s| {
        let record = s.record(volume)?;
        let m = record.mirror.as_ref().filter(|m| m.generation == generation)?;
        Some(Look {
            name: record.volume.name.clone(),
            state: m.state,
            sent: m.sent,
            confirmed: m.confirmed,
            out_of_sync_empty: m.out_of_sync.is_empty(),
            unconfirmed_tracks: m.older.len() + m.recent.len(),
            remote_volume: m.remote_volume.clone(),
            path: s.path(&m.remote_cluster).ok().cloned(),
        })
    })
}

/// One pair's driver, for as long as this node leads and the pair keeps its generation.
async fn drive(mirror: Arc<Mirror>, consensus: Arc<Consensus>, volume: VolumeId, generation: u64) {
    // Whether the secondary was told of the pause since anything else was sent.
    let mut told_paused = false;
    let mut failing_since: Option<Instant> = None;
    let mut changed = mirror.changed.subscribe();
    loop {
        if !consensus.is_leader() {
            return;
        }
        let Some(l) = look(&mirror, volume, generation) else {
            return;
        };
        let Some(path) = l.path.clone() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let here = mirror.confirmed_here(volume, generation).max(l.confirmed);
        let sender = Sender {
            mirror: &mirror,
            consensus: &consensus,
            volume,
            generation,
            path: &path,
            look: &l,
        };
        let attempt = Instant::now();
        let outcome = match l.state {
            PairState::FullDuplex => {
                // The path's stream sends; here only a leftover of an earlier suspension
                // would be forgotten (see below).
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            PairState::CopyPending | PairState::Suspended(_) if mirror.tap.holds(volume) => {
                // Not streaming: every tapped write's track is out of sync now.
                mirror.tap.confirmed(volume, generation, l.sent);
                continue;
            }
            PairState::CopyPending if l.unconfirmed_tracks > 0 && l.sent > here => {
                // A copy step was numbered and not confirmed (it failed, or a previous leader
                // numbered it and may never have sent it): its tracks go back out of sync and
                // are copied again, never skipped (the state machine refuses the next step).
                sender
                    .propose(Command::PprcResync {
                        volume: l.name.clone(),
                        generation,
                    })
                    .await;
                Ok(())
            }
            PairState::CopyPending if l.out_of_sync_empty || here > l.confirmed => {
                // Everything copied and confirmed: the state machine makes it full duplex. Or
                // a confirmation not yet recorded: the next copy step waits for it.
                sender.propose_confirmed(here).await;
                Ok(())
            }
            PairState::CopyPending => sender.copy_step().await,
            PairState::Suspended(reason) => {
                if reason == SuspendReason::Operator && !told_paused {
                    // Best effort: the secondary shows the pause; the link may be down.
                    if sender.send(Vec::new(), SecondaryMark::Suspended, l.sent).await.is_ok() {
                        told_paused = true;
                    }
                }
                failing_since = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        match outcome {
            Ok(()) => {
                failing_since = None;
                told_paused = false;
            }
            Err(LinkError::Refused { code, message }) => {
                refused(&consensus, &l.name, generation, &code, &message).await;
            }
            Err(e @ LinkError::Unreachable { .. }) => {
                let since = *failing_since.get_or_insert(attempt);
                // A copy step retries within the timeout itself.
                if since.elapsed() >= mirror.timeout || l.state == PairState::CopyPending {
                    tracing::warn!(volume = %l.name, error = %e, timeout_ms = mirror.timeout.as_millis() as u64, "the secondary did not confirm in time; suspending the pair");
                    sender.suspend(SuspendReason::LinkFailure).await;
                    failing_since = None;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

struct Sender<'a> {
    mirror: &'a Mirror,
    consensus: &'a Consensus,
    volume: VolumeId,
    generation: u64,
    path: &'a PprcPath,
    look: &'a Look,
}

impl Sender<'_> {
    /// Sends a batch (`upto`: the last sequence number given when it was made); what the
    /// secondary confirmed is noted (and waiting writes go on).
    async fn send(&self, writes: Vec<MirroredWrite>, mark: SecondaryMark, upto: u64) -> Result<u64, LinkError> {
        let batch = MirrorBatch {
            volume: self.look.remote_volume.clone(),
            generation: self.generation,
            writes,
            mark,
            upto,
        };
        let confirmed = self
            .mirror
            .links
            .apply(self.path, &[batch], self.mirror.timeout)
            .await?;
        let confirmed = confirmed.get(&self.look.remote_volume).copied().unwrap_or(0);
        self.mirror.note_confirmed(self.volume, self.generation, confirmed);
        Ok(confirmed)
    }

    /// One copy step: the state machine picks the tracks and numbers them; they are read here
    /// (at or after the step's entry: a write since marked them again) and sent.
    async fn copy_step(&self) -> Result<(), LinkError> {
        let Some(events) = self
            .propose(Command::PprcCopyStep {
                volume: self.look.name.clone(),
                max_tracks: MIRROR_COPY_TRACKS,
            })
            .await
        else {
            return Ok(());
        };
        let Some((seq, tracks)) = events.into_iter().find_map(|e| match e {
            Event::PairTracksSent { seq, tracks, .. } => Some((seq, tracks)),
            _ => None,
        }) else {
            return Ok(());
        };
        let (state, name) = (self.mirror.state.clone(), self.look.name.clone());
        let track_size = u64::from(state.query(|s| s.track_size()));
        let read = storage::runtime::offload(move || {
            tracks
                .into_iter()
                .map(|track| {
                    let offset = u64::from(track) * track_size;
                    let bytes = state.read(&name, None, offset, track_size)?;
                    let data = if bytes.iter().any(|b| *b != 0) {
                        WriteData::Bytes(bytes.into())
                    } else {
                        WriteData::Zeroes(track_size)
                    };
                    Ok(MirroredWrite {
                        seq,
                        order: 0,
                        offset,
                        data,
                    })
                })
                .collect::<Result<Vec<_>, storage::ReadError>>()
        })
        .await
        .expect("reads do not panic");
        let writes = match read {
            Ok(writes) => writes,
            Err(e) => {
                // Nothing is sent for a track that could not be read: it is copied again.
                tracing::warn!(volume = %self.look.name, error = %e, "a mirror copy step could not read its tracks");
                self.propose(Command::PprcResync {
                    volume: self.look.name.clone(),
                    generation: self.generation,
                })
                .await;
                return Ok(());
            }
        };
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.send(writes.clone(), SecondaryMark::Copying, seq).await {
                Ok(_) => break,
                Err(e @ LinkError::Refused { .. }) => return Err(e),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.mirror.timeout || !self.consensus.is_leader() {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.propose_confirmed(seq.max(self.mirror.confirmed_here(self.volume, self.generation)))
            .await;
        Ok(())
    }

    async fn propose_confirmed(&self, seq: u64) {
        self.propose(Command::PprcConfirmed {
            volume: self.look.name.clone(),
            generation: self.generation,
            seq,
        })
        .await;
    }

    async fn suspend(&self, reason: SuspendReason) {
        self.propose(Command::PausePprc {
            volume: self.look.name.clone(),
            reason,
            generation: Some(self.generation),
        })
        .await;
    }

    async fn propose(&self, command: Command) -> Option<Vec<Event>> {
        propose(self.consensus, command).await
    }
}

/// Proposes a command of the mirror's; its events if it was applied.
pub(super) async fn propose(consensus: &Consensus, command: Command) -> Option<Vec<Event>> {
    match consensus.propose(command).await {
        Ok(committed) => match committed.result {
            Ok(()) => Some(committed.events),
            Err(e) => {
                tracing::debug!(error = %e, "mirror command refused");
                None
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "mirror command not committed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// The secondary refused what was sent for a pair: a hole in its stream is filled by copying
/// the tracks (this leader cannot re-send those writes); anything else (it failed over, the
/// pair is gone there) suspends the pair: retrying would not help.
pub(super) async fn refused(consensus: &Consensus, volume: &str, generation: u64, code: &str, message: &str) {
    let command = if code == "pair-sequence-gap" {
        Command::PprcResync {
            volume: volume.to_string(),
            generation,
        }
    } else {
        tracing::warn!(%volume, %code, %message, "the secondary refused the mirror; suspending");
        Command::PausePprc {
            volume: volume.to_string(),
            reason: SuspendReason::SecondaryRefused,
            generation: Some(generation),
        }
    };
    propose(consensus, command).await;
}

/// A new cluster's id: `fc-` and 12 random hex digits (from the seed in a simulation).
fn new_cluster_id() -> String {
    format!("fc-{:012x}", storage::runtime::random_u64() >> 16)
}
