//! One stream per path, on the leader: the tapped writes of every full-duplex pair mirrored to
//! that cluster go out together, merged in log order, one request at a time; the remote applies
//! a request as one entry; and when the link fails, every full-duplex pair of the path suspends
//! in the same entries, before any write is acknowledged without its secondary. So the path's
//! pairs are one consistency group: a database whose data and log live on two volumes finds
//! both at the same point after a failover, not only each consistent with its primary.
//!
//! It starts from what the state says was confirmed and re-sends the rest from this node's tap;
//! a pair whose writes the tap lacks (this node did not lead when they were sent) has their
//! tracks copied instead (`PprcResync`).

use super::driver::{propose, refused};
use super::link::LinkError;
use super::tap::Tapped;
use super::Mirror;
use crate::server::consensus::Consensus;
use statemachine::{Command, MirrorBatch, MirroredWrite, PairState, SecondaryMark, SuspendReason, VolumeId, WriteData};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use storage::StateQuery;
use tokio::time::Instant;

/// Bytes of tapped writes one request carries at most (a write larger than it goes alone).
const BATCH_BYTES: u64 = 4 << 20;
/// How often the leader records confirmations in the log (host writes do not wait for it).
const CONFIRM_EVERY: Duration = Duration::from_millis(100);

/// A full-duplex pair of the path, as the state says.
struct Duplex {
    id: VolumeId,
    name: String,
    generation: u64,
    remote_volume: String,
    sent: u64,
    confirmed: u64,
    unconfirmed_tracks: u64,
}

pub async fn run(mirror: Arc<Mirror>, consensus: Arc<Consensus>, remote: String) {
    // Pairs whose secondary this stream told it is full duplex (a new leader tells again).
    let mut marked: BTreeSet<(VolumeId, u64)> = BTreeSet::new();
    let mut failing_since: Option<Instant> = None;
    let mut last_confirm: BTreeMap<VolumeId, Instant> = BTreeMap::new();
    let mut changed = mirror.changed.subscribe();
    loop {
        if !consensus.is_leader() {
            return;
        }
        let Some(path) = mirror.state.query(|s| s.path(&remote).ok().cloned()) else {
            return;
        };
        let pairs: Vec<Duplex> = mirror.state.query(|s| {
            s.primaries()
                .filter(|(_, _, m)| m.remote_cluster == remote && m.state == PairState::FullDuplex)
                .map(|(id, name, m)| Duplex {
                    id,
                    name: name.to_string(),
                    generation: m.generation,
                    remote_volume: m.remote_volume.clone(),
                    sent: m.sent,
                    confirmed: m.confirmed,
                    unconfirmed_tracks: m.older.len() + m.recent.len(),
                })
                .collect()
        });
        // A pair that left full duplex is told again when it is back.
        marked.retain(|(id, generation)| pairs.iter().any(|p| p.id == *id && p.generation == *generation));
        // Every pair's unconfirmed writes, from the tap.
        let mut taken: Vec<(usize, Tapped)> = Vec::new();
        let mut lacking = Vec::new();
        for (i, p) in pairs.iter().enumerate() {
            let from = mirror.confirmed_here(p.id, p.generation).max(p.confirmed) + 1;
            if from > p.sent {
                continue;
            }
            match mirror.tap.take(p.id, p.generation, from, p.sent) {
                Some(writes) => taken.extend(writes.into_iter().map(|w| (i, w))),
                None => lacking.push(i),
            }
        }
        for i in lacking {
            let p = &pairs[i];
            tracing::info!(volume = %p.name, "mirror writes to re-send are not all here: resyncing their tracks");
            let command = Command::PprcResync {
                volume: p.name.clone(),
                generation: p.generation,
            };
            propose(&consensus, command).await;
        }
        // In log order, as much as one request carries.
        taken.sort_by_key(|(_, w)| (w.index, w.seq));
        let mut bytes = 0;
        let cut = taken
            .iter()
            .position(|(_, w)| {
                bytes += match &w.data {
                    WriteData::Bytes(b) => b.len() as u64,
                    _ => 64,
                };
                bytes > BATCH_BYTES
            })
            .map_or(taken.len(), |at| at.max(1));
        taken.truncate(cut);
        let mut writes: BTreeMap<usize, Vec<MirroredWrite>> = BTreeMap::new();
        for (i, w) in taken {
            writes.entry(i).or_default().push(MirroredWrite {
                seq: w.seq,
                order: w.index,
                offset: w.offset,
                data: w.data,
            });
        }
        let wanted: Vec<usize> = (0..pairs.len())
            .filter(|i| writes.contains_key(i) || !marked.contains(&(pairs[*i].id, pairs[*i].generation)))
            .collect();
        let batches: Vec<(usize, MirrorBatch)> = wanted
            .into_iter()
            .map(|i| {
                let p = &pairs[i];
                let writes = writes.remove(&i).unwrap_or_default();
                let upto = writes.last().map_or(p.sent, |w| w.seq);
                let batch = MirrorBatch {
                    volume: p.remote_volume.clone(),
                    generation: p.generation,
                    writes,
                    mark: SecondaryMark::Duplex,
                    upto,
                };
                (i, batch)
            })
            .collect();
        if batches.is_empty() {
            // Idle: record what was confirmed (so it can be forgotten everywhere), then wait.
            for p in &pairs {
                let here = mirror.confirmed_here(p.id, p.generation).max(p.confirmed);
                if here > p.confirmed || p.unconfirmed_tracks > 0 {
                    confirm(&consensus, p, here, &mut last_confirm).await;
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            continue;
        }
        let attempt = Instant::now();
        let request: Vec<MirrorBatch> = batches.iter().map(|(_, b)| b.clone()).collect();
        match mirror.links.apply(&path, &request, mirror.timeout).await {
            Ok(confirmed) => {
                failing_since = None;
                for (i, batch) in &batches {
                    let p = &pairs[*i];
                    let seq = confirmed.get(&batch.volume).copied().unwrap_or(0);
                    mirror.note_confirmed(p.id, p.generation, seq);
                    marked.insert((p.id, p.generation));
                    confirm(&consensus, p, seq, &mut last_confirm).await;
                }
            }
            Err(LinkError::Refused { code, message }) if batches.len() == 1 => {
                let p = &pairs[batches[0].0];
                refused(&consensus, &p.name, p.generation, &code, &message).await;
            }
            Err(LinkError::Refused { .. }) => {
                // One pair's batch was refused and took the request with it: send each alone
                // to find which (the others go through).
                for (i, batch) in batches {
                    let p = &pairs[i];
                    match mirror
                        .links
                        .apply(&path, std::slice::from_ref(&batch), mirror.timeout)
                        .await
                    {
                        Ok(confirmed) => {
                            let seq = confirmed.get(&batch.volume).copied().unwrap_or(0);
                            mirror.note_confirmed(p.id, p.generation, seq);
                            marked.insert((p.id, p.generation));
                        }
                        Err(LinkError::Refused { code, message }) => {
                            refused(&consensus, &p.name, p.generation, &code, &message).await;
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e @ LinkError::Unreachable { .. }) => {
                let since = *failing_since.get_or_insert(attempt);
                if since.elapsed() >= mirror.timeout {
                    tracing::warn!(%remote, error = %e, timeout_ms = mirror.timeout.as_millis() as u64, "the secondary did not confirm in time; suspending every pair of the path");
                    // All of them, written or not: a write to one acknowledged after this
                    // point is not mirrored, so no later write to another may be either.
                    for p in &pairs {
                        let command = Command::PausePprc {
                            volume: p.name.clone(),
                            reason: SuspendReason::LinkFailure,
                            generation: Some(p.generation),
                        };
                        propose(&consensus, command).await;
                    }
                    failing_since = None;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Records in the log that the secondary confirmed `seq` of this pair, at most every
/// `CONFIRM_EVERY` per pair.
async fn confirm(consensus: &Consensus, p: &Duplex, seq: u64, last: &mut BTreeMap<VolumeId, Instant>) {
    if last.get(&p.id).is_some_and(|at| at.elapsed() < CONFIRM_EVERY) {
        return;
    }
    last.insert(p.id, Instant::now());
    let command = Command::PprcConfirmed {
        volume: p.name.clone(),
        generation: p.generation,
        seq,
    };
    propose(consensus, command).await;
}
