//! Metro Mirror rules: paths, pairs and the mirror stream, at the primary and at the secondary.
//! The node drives the link (it sends, the state machine decides what is sent and records
//! what was confirmed); every decision that must survive a leader change is here, in the log.

use crate::command::{HostWrite, MirrorBatch, MirroredWrite, Pair, SecondaryMark, WriteData};
use crate::error::CommandError;
use crate::event::Event;
use crate::host_write::{write_now, MAX_WRITE_BYTES};
use crate::mirror::{MirrorPair, PairRole, PairState, PprcPath, SuspendReason};
use crate::state::State;
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};
use roaring::RoaringBitmap;

/// Tracks one copy step sends at most (2 MiB with 64 KiB tracks: one bounded entry at the
/// secondary).
pub const MIRROR_COPY_TRACKS: u32 = 32;

pub(crate) fn name_cluster<R: TrackReader>(tx: &mut Tx<'_, R>, id: &str) -> Result<(), Failure<R::Error>> {
    if tx.state().cluster_id().is_some() {
        return Ok(());
    }
    tx.set_cluster_id(id);
    tx.push_event(Event::ClusterNamed { id: id.to_string() });
    Ok(())
}

pub(crate) fn mkpath<R: TrackReader>(tx: &mut Tx<'_, R>, path: &PprcPath) -> Result<(), Failure<R::Error>> {
    if tx.state().paths.contains_key(&path.remote_cluster) {
        return Err(CommandError::PathExists {
            remote: path.remote_cluster.clone(),
        }
        .into());
    }
    tx.paths_mut().insert(path.remote_cluster.clone(), path.clone());
    tx.push_event(Event::PathCreated {
        remote: path.remote_cluster.clone(),
        url: path.url.clone(),
    });
    Ok(())
}

pub(crate) fn rmpath<R: TrackReader>(tx: &mut Tx<'_, R>, remote: &str) -> Result<(), Failure<R::Error>> {
    tx.state().path(remote)?;
    let users: Vec<String> = tx
        .state()
        .records()
        .filter(|r| r.mirror.as_ref().is_some_and(|m| m.remote_cluster == remote))
        .map(|r| r.volume.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(CommandError::PathInUse {
            remote: remote.to_string(),
            volumes: users.join(" "),
        }
        .into());
    }
    tx.paths_mut().remove(remote);
    tx.push_event(Event::PathRemoved {
        remote: remote.to_string(),
    });
    Ok(())
}

/// `mkpprc` at the primary, once the secondary accepted the pair: copy-pending, every stored
/// track out of sync (the secondary was emptied when it accepted).
pub(crate) fn mkpprc<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    remote_cluster: &str,
    remote_volume: &str,
    generation: u64,
) -> Result<(), Failure<R::Error>> {
    let id = tx.state().check_new_pair(volume, Some(remote_cluster))?;
    let mut pair = MirrorPair::new(PairRole::Primary, remote_cluster, remote_volume, generation);
    let mut next = tx.next_stored(id, 0)?;
    while let Some(track) = next {
        pair.out_of_sync.insert(track);
        next = tx.next_stored(id, track + 1)?;
    }
    let tracks = pair.out_of_sync.len();
    tx.record_mut(id).mirror = Some(pair);
    tx.push_event(Event::PairEstablished {
        volume: volume.to_string(),
        remote: format!("{remote_cluster}/{remote_volume}"),
        generation,
        tracks_to_copy: tracks,
    });
    Ok(())
}

/// The secondary side of `mkpprc`: the volume's content is discarded (the copy overwrites it)
/// and hosts may only read it. Accepting the same pair again changes nothing.
pub(crate) fn accept_secondary<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    primary_cluster: &str,
    primary_volume: &str,
    size: u64,
    generation: u64,
) -> Result<(), Failure<R::Error>> {
    let id = tx
        .state()
        .volume_id(volume)
        .ok_or_else(|| CommandError::VolumeNotFound { name: volume.into() })?;
    let record = tx.state().record(id).expect("named volumes have records");
    if let Some(m) = &record.mirror {
        if m.role == PairRole::Secondary && m.generation == generation && m.remote_volume == primary_volume {
            return Ok(());
        }
    }
    tx.state().check_new_pair(volume, None)?;
    let record = tx.state().record(id).expect("named volumes have records");
    if record.volume.size != size {
        return Err(CommandError::PairSizeMismatch {
            volume: volume.into(),
            size: record.volume.size,
            primary_size: size,
        }
        .into());
    }
    if let Some(rel) = &record.incoming {
        return Err(CommandError::VolumeInUse {
            name: volume.into(),
            relationship: tx.state().pair_name(rel),
        }
        .into());
    }
    if let Some(t) = record.volume.targets.first() {
        return Err(CommandError::VolumeInUse {
            name: volume.into(),
            relationship: format!("{volume}:{}", tx.state().name(*t)),
        }
        .into());
    }
    if record.volume.frozen_until.is_some() || !record.held_writes.is_empty() {
        return Err(CommandError::VolumeFrozen { name: volume.into() }.into());
    }
    let mut next = tx.next_stored(id, 0)?;
    while let Some(track) = next {
        tx.zero(id, track)?;
        next = tx.next_stored(id, track + 1)?;
    }
    tx.record_mut(id).mirror = Some(MirrorPair::new(
        PairRole::Secondary,
        primary_cluster,
        primary_volume,
        generation,
    ));
    tx.push_event(Event::PairEstablished {
        volume: volume.to_string(),
        remote: format!("{primary_cluster}/{primary_volume}"),
        generation,
        tracks_to_copy: 0,
    });
    Ok(())
}

/// What the primary sent, at the secondary, for one pair or several: each sequence number once,
/// in order, the pairs' writes interleaved as the primary applied them; then the state the
/// primary says each pair is in. Everything is checked before anything lands.
pub(crate) fn apply_batches<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    batches: &[MirrorBatch],
) -> Result<(), Failure<R::Error>> {
    let mut checked: Vec<(VolumeId, u64, bool, PairState)> = Vec::with_capacity(batches.len());
    let mut writes: Vec<(u64, VolumeId, &MirrorBatch, &MirroredWrite)> = Vec::new();
    let mut bytes = 0u64;
    for batch in batches {
        let (id, pair) = tx.state().pair_of(&batch.volume)?;
        if pair.role != PairRole::Secondary || pair.generation != batch.generation {
            return Err(stale(&batch.volume, pair, batch.generation));
        }
        if checked.iter().any(|(other, ..)| *other == id) {
            return Err(CommandError::InvalidOption {
                option: "mirror batch".into(),
                reason: format!("volume {} appears twice in one request", batch.volume),
            }
            .into());
        }
        let applied = pair.confirmed;
        let new: Vec<&MirroredWrite> = batch.writes.iter().filter(|w| w.seq > applied).collect();
        for w in &new {
            if matches!(w.data, WriteData::Summary { .. }) && !tx.replaying() {
                return Err(CommandError::WriteWithoutData {
                    volume: batch.volume.clone(),
                }
                .into());
            }
            tx.state()
                .check_range(&batch.volume, Some(id), w.offset, w.data.len())?;
            bytes = bytes.saturating_add(mirrored_bytes(&w.data));
        }
        // Streamed writes come in the primary's order without a hole; only a copy (whose image
        // is not consistent until it ends) may skip sequence numbers that its tracks replace.
        if batch.mark == SecondaryMark::Duplex {
            if let Some(first) = new.first().filter(|w| w.seq != applied + 1) {
                return Err(CommandError::PairSequenceGap {
                    volume: batch.volume.clone(),
                    expected: applied + 1,
                    got: first.seq,
                }
                .into());
            }
        }
        writes.extend(new.iter().map(|w| (w.order, id, batch, *w)));
        checked.push((id, applied, pair.consistent, pair.state));
    }
    if bytes > MAX_WRITE_BYTES {
        return Err(CommandError::WriteTooLarge {
            length: bytes,
            max: MAX_WRITE_BYTES,
        }
        .into());
    }
    // As the primary applied them (a stable sort keeps each pair's own order).
    writes.sort_by_key(|(order, ..)| *order);
    for (_, id, batch, w) in writes {
        let write = HostWrite {
            volume: batch.volume.clone(),
            opened: Some(id),
            offset: w.offset,
            data: w.data.clone(),
            tag: 0,
        };
        write_now(tx, id, &write)?;
    }
    for (batch, (id, applied, was_consistent, old_state)) in batches.iter().zip(checked) {
        let last = batch.writes.iter().map(|w| w.seq).filter(|seq| *seq > applied).max();
        let m = tx.mirror_mut(id);
        m.confirmed = last.unwrap_or(applied);
        // A mark sent before what this side already applied is stale (a late request of an
        // old leader): it says nothing about the pair now.
        if batch.upto < applied {
            continue;
        }
        let (state, consistent) = match batch.mark {
            SecondaryMark::Copying => (PairState::CopyPending, false),
            SecondaryMark::Duplex => (PairState::FullDuplex, true),
            SecondaryMark::Suspended => (PairState::Suspended(SuspendReason::Operator), was_consistent),
        };
        m.state = state;
        m.consistent = consistent;
        if state != old_state || consistent != was_consistent {
            let state = m.state_name();
            tx.push_event(Event::PairState {
                volume: batch.volume.clone(),
                state,
            });
        }
    }
    Ok(())
}

fn mirrored_bytes(data: &WriteData) -> u64 {
    match data {
        WriteData::Bytes(b) => b.len() as u64,
        _ => 0,
    }
}

/// A copy step at the primary: the lowest out-of-sync tracks are sent under a new sequence
/// number (they stay unconfirmed until the secondary confirms it).
pub(crate) fn copy_step<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    max_tracks: u32,
) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().primary(volume)?;
    if pair.state != PairState::CopyPending {
        return Err(wrong_state(volume, pair, "copy-pending"));
    }
    // The secondary takes a copy across a gap in the sequence numbers (those a suspension or a
    // resync voided), so confirming this step would confirm every earlier one too. A step an
    // earlier leader numbered and never sent must not be passed over that way: its tracks would
    // never reach the secondary. So the earlier one is confirmed, or voided by a resync, first.
    if let Some(seq) = pair.unconfirmed_seq() {
        return Err(CommandError::PairCopyUnconfirmed {
            volume: volume.into(),
            seq,
        }
        .into());
    }
    let tracks: RoaringBitmap = pair.out_of_sync.iter().take(max_tracks.max(1) as usize).collect();
    if tracks.is_empty() {
        return Ok(());
    }
    let m = tx.mirror_mut(id);
    m.out_of_sync -= &tracks;
    let seq = m.send(&tracks);
    let remaining = m.out_of_sync.len();
    tx.push_event(Event::PairTracksSent {
        volume: volume.to_string(),
        seq,
        tracks: tracks.iter().collect(),
        remaining,
    });
    Ok(())
}

/// The secondary confirmed everything through `seq`. A copy-pending pair with nothing left to
/// copy or confirm becomes full duplex here (a sequence number lost to a suspension is never
/// confirmed: its tracks were copied under later ones).
pub(crate) fn confirmed<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    generation: u64,
    seq: u64,
) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().primary(volume)?;
    if pair.generation != generation {
        return Err(stale(volume, pair, generation));
    }
    let m = tx.mirror_mut(id);
    m.confirm(seq);
    // Nothing to copy and nothing sent unconfirmed: every track is at the secondary.
    if m.state == PairState::CopyPending && m.tracks_out_of_sync() == 0 {
        m.state = PairState::FullDuplex;
        tx.push_event(Event::PairState {
            volume: volume.to_string(),
            state: "full-duplex".into(),
        });
    }
    Ok(())
}

/// `pausepprc`, or the leader's suspension after the secondary stopped confirming: every track
/// that may differ goes out of sync; host writes go on and mark it.
pub(crate) fn suspend<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    reason: SuspendReason,
    generation: Option<u64>,
) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().primary(volume)?;
    if let Some(g) = generation.filter(|g| *g != pair.generation) {
        return Err(stale(volume, pair, g));
    }
    if let PairState::Suspended(_) = pair.state {
        // The leader may suspend twice (a retry); an operator pause of a suspended pair too.
        return Ok(());
    }
    let m = tx.mirror_mut(id);
    m.unconfirmed_to_out_of_sync();
    m.state = PairState::Suspended(reason);
    let tracks = m.out_of_sync.len();
    tx.push_event(Event::PairSuspended {
        volume: volume.to_string(),
        reason: reason.to_string(),
        out_of_sync_tracks: tracks,
    });
    Ok(())
}

/// `resumepprc`: copy what is out of sync, then full duplex again.
pub(crate) fn resume<R: TrackReader>(tx: &mut Tx<'_, R>, volume: &str) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().primary(volume)?;
    match pair.state {
        PairState::Suspended(SuspendReason::FailedOver) => return Err(CommandError::PairState {
            volume: volume.into(),
            state: pair.state_name(),
            wanted:
                "suspended by pausepprc or a link failure; a failed-over pair comes back with 'flashcopy failbackpprc'"
                    .into(),
        }
        .into()),
        PairState::Suspended(_) => {}
        _ => return Err(wrong_state(volume, pair, "suspended")),
    }
    let tracks = pair.out_of_sync.len();
    tx.mirror_mut(id).state = PairState::CopyPending;
    tx.push_event(Event::PairResumed {
        volume: volume.to_string(),
        tracks_to_copy: tracks,
    });
    Ok(())
}

/// A new leader without what the old one sent and had not confirmed: copy it instead.
pub(crate) fn resync<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    generation: u64,
) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().primary(volume)?;
    if pair.generation != generation {
        return Err(stale(volume, pair, generation));
    }
    if let PairState::Suspended(_) = pair.state {
        return Err(wrong_state(volume, pair, "copy-pending or full-duplex"));
    }
    let m = tx.mirror_mut(id);
    m.unconfirmed_to_out_of_sync();
    let was_duplex = m.state == PairState::FullDuplex;
    m.state = PairState::CopyPending;
    if was_duplex {
        tx.push_event(Event::PairState {
            volume: volume.to_string(),
            state: "copy-pending".into(),
        });
    }
    Ok(())
}

/// `rmpprc`, at either site.
pub(crate) fn rmpprc<R: TrackReader>(tx: &mut Tx<'_, R>, volume: &str) -> Result<(), Failure<R::Error>> {
    let (id, _) = tx.state().pair_of(volume)?;
    tx.record_mut(id).mirror = None;
    tx.push_event(Event::PairRemoved {
        volume: volume.to_string(),
    });
    Ok(())
}

/// `failoverpprc` at the secondary: it becomes a suspended primary of the reversed direction
/// under the next generation, recording its own writes from now on. The old primary's stream
/// (the old generation) is refused from here on.
pub(crate) fn failover<R: TrackReader>(tx: &mut Tx<'_, R>, volume: &str) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().pair_of(volume)?;
    if pair.role != PairRole::Secondary {
        return Err(CommandError::FailoverOfPrimary { volume: volume.into() }.into());
    }
    let consistent = pair.consistent;
    let mut new = MirrorPair::new(
        PairRole::Primary,
        &pair.remote_cluster,
        &pair.remote_volume,
        pair.generation + 1,
    );
    new.state = PairState::Suspended(SuspendReason::FailedOver);
    let generation = new.generation;
    tx.record_mut(id).mirror = Some(new);
    tx.push_event(Event::PairFailedOver {
        volume: volume.to_string(),
        generation,
        consistent,
    });
    Ok(())
}

/// Failback, at the old primary: it becomes the secondary of `generation` (the failed-over
/// side's) and hands over the tracks it may have changed since the sites last agreed; its
/// content is kept (only those tracks and the other side's changes are copied back).
pub(crate) fn become_secondary<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    generation: u64,
) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().pair_of(volume)?;
    if pair.role == PairRole::Secondary && pair.generation == generation {
        // A retry (the answer was lost): the same tracks again.
        tx.push_event(Event::PairBecameSecondary {
            volume: volume.into(),
            generation,
            tracks: pair.out_of_sync.iter().collect(),
        });
        return Ok(());
    }
    if pair.role != PairRole::Primary || pair.generation >= generation {
        return Err(stale(volume, pair, generation));
    }
    let record = tx.state().record(id).expect("exists");
    if record.volume.frozen_until.is_some() || !record.held_writes.is_empty() {
        // Held writes would land on a secondary, in no bitmap.
        return Err(CommandError::VolumeFrozen { name: volume.into() }.into());
    }
    if let Some(rel) = tx.state().revertible_of(id) {
        // Mirror writes would change a volume whose increment must stay revertible.
        return Err(CommandError::RelationshipRevertible {
            pair: tx.state().pair_name(rel),
        }
        .into());
    }
    let pair = record.mirror.as_ref().expect("exists");
    let mut changed = pair.clone();
    changed.unconfirmed_to_out_of_sync();
    let tracks: Vec<u32> = changed.out_of_sync.iter().collect();
    let mut new = MirrorPair::new(
        PairRole::Secondary,
        &pair.remote_cluster,
        &pair.remote_volume,
        generation,
    );
    new.state = PairState::CopyPending;
    // Kept (a secondary copies nothing itself) so a retried failback hands over the same.
    new.out_of_sync = changed.out_of_sync.clone();
    tx.record_mut(id).mirror = Some(new);
    tx.push_event(Event::PairBecameSecondary {
        volume: volume.into(),
        generation,
        tracks,
    });
    Ok(())
}

/// `failbackpprc` at the failed-over side, once the old primary became its secondary: copy the
/// union of what changed at both sites.
pub(crate) fn failback<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: &str,
    remote_changes: &[u32],
) -> Result<(), Failure<R::Error>> {
    let (id, pair) = tx.state().primary(volume)?;
    if pair.state != PairState::Suspended(SuspendReason::FailedOver) {
        return Err(wrong_state(volume, pair, "suspended by failoverpprc"));
    }
    let tracks = tx
        .state()
        .track_count(tx.state().record(id).expect("exists").volume.size);
    let m = tx.mirror_mut(id);
    m.out_of_sync
        .extend(remote_changes.iter().copied().filter(|t| *t < tracks));
    m.unconfirmed_to_out_of_sync();
    m.state = PairState::CopyPending;
    let to_copy = m.out_of_sync.len();
    tx.push_event(Event::PairResumed {
        volume: volume.to_string(),
        tracks_to_copy: to_copy,
    });
    Ok(())
}

/// After a host write landed (also one a freeze held): a full-duplex primary streams it under
/// the next sequence number (the node holds the host's acknowledgement until the secondary
/// confirms it); any other primary marks its tracks out of sync.
pub(crate) fn note_write<R: TrackReader>(tx: &mut Tx<'_, R>, id: VolumeId, write: &HostWrite) {
    let Some(pair) = tx.state().record(id).and_then(|r| r.mirror.as_ref()) else {
        return;
    };
    if pair.role != PairRole::Primary || write.data.is_empty() {
        return;
    }
    let track_size = u64::from(tx.state().track_size());
    let first = (write.offset / track_size) as u32;
    let last = ((write.offset + write.data.len() - 1) / track_size) as u32;
    let (streaming, generation) = (pair.state == PairState::FullDuplex, pair.generation);
    let m = tx.mirror_mut(id);
    if streaming {
        let tracks: RoaringBitmap = (first..=last).collect();
        let seq = m.send(&tracks);
        tx.push_mirrored(id, generation, seq, write.offset, write.data.clone());
    } else {
        m.out_of_sync.insert_range(first..=last);
    }
}

/// A FlashCopy changed what `target` reads on these tracks: if it is a mirror primary, they go
/// out of sync (a full-duplex pair becomes copy-pending until they are copied).
pub(crate) fn target_changed<R: TrackReader>(tx: &mut Tx<'_, R>, target: VolumeId, tracks: &RoaringBitmap) {
    let Some(pair) = tx.state().record(target).and_then(|r| r.mirror.as_ref()) else {
        return;
    };
    if pair.role != PairRole::Primary || tracks.is_empty() {
        return;
    }
    let name = tx.name(target);
    let m = tx.mirror_mut(target);
    m.out_of_sync |= tracks;
    if m.state == PairState::FullDuplex {
        // Streaming stops: what was sent and not confirmed is copied instead.
        m.unconfirmed_to_out_of_sync();
        m.state = PairState::CopyPending;
        tx.push_event(Event::PairState {
            volume: name,
            state: "copy-pending".into(),
        });
    }
}

/// Every track of a mirror primary out of sync (a Remote Pair FlashCopy that ran at one site
/// only): its secondary is rewritten whole.
pub(crate) fn copy_all<R: TrackReader>(tx: &mut Tx<'_, R>, volume: &str) -> Result<(), Failure<R::Error>> {
    let (id, _) = tx.state().primary(volume)?;
    let tracks = tx
        .state()
        .track_count(tx.state().record(id).expect("exists").volume.size);
    let all: RoaringBitmap = (0..tracks).collect();
    target_changed(tx, id, &all);
    Ok(())
}

fn role_name(role: PairRole) -> &'static str {
    match role {
        PairRole::Primary => "primary",
        PairRole::Secondary => "secondary",
    }
}

fn wrong_state<E>(volume: &str, pair: &MirrorPair, wanted: &str) -> Failure<E> {
    CommandError::PairState {
        volume: volume.into(),
        state: pair.state_name(),
        wanted: wanted.into(),
    }
    .into()
}

fn stale<E>(volume: &str, pair: &MirrorPair, generation: u64) -> Failure<E> {
    CommandError::PairGeneration {
        volume: volume.into(),
        generation,
        current: pair.generation,
        role: role_name(pair.role).into(),
    }
    .into()
}

/// The state's mirror queries that the handlers and the node share.
impl State {
    pub fn path(&self, remote: &str) -> Result<&PprcPath, CommandError> {
        self.paths.get(remote).ok_or_else(|| CommandError::PathNotFound {
            remote: remote.to_string(),
        })
    }

    pub fn paths(&self) -> impl Iterator<Item = &PprcPath> {
        self.paths.values()
    }

    /// The pair `volume` is in.
    pub fn pair_of(&self, volume: &str) -> Result<(VolumeId, &MirrorPair), CommandError> {
        let id = self
            .volume_id(volume)
            .ok_or_else(|| CommandError::VolumeNotFound { name: volume.into() })?;
        let pair = self.records[&id]
            .mirror
            .as_ref()
            .ok_or_else(|| CommandError::PairNotFound { volume: volume.into() })?;
        Ok((id, pair))
    }

    /// The pair `volume` is the primary of.
    pub fn primary(&self, volume: &str) -> Result<(VolumeId, &MirrorPair), CommandError> {
        let (id, pair) = self.pair_of(volume)?;
        if pair.role != PairRole::Primary {
            return Err(CommandError::PairState {
                volume: volume.into(),
                state: pair.state_name(),
                wanted: "the primary of a pair: run this at the primary's site".into(),
            });
        }
        Ok((id, pair))
    }

    /// `volume` may become one side of a new pair (and, at the primary, `remote` is a path).
    pub fn check_new_pair(&self, volume: &str, remote: Option<&str>) -> Result<VolumeId, CommandError> {
        let id = self
            .volume_id(volume)
            .ok_or_else(|| CommandError::VolumeNotFound { name: volume.into() })?;
        if let Some(remote) = remote {
            self.path(remote)?;
        }
        let record = &self.records[&id];
        if let Some(m) = &record.mirror {
            return Err(CommandError::PairExists {
                volume: volume.into(),
                remote: format!("{}/{}", m.remote_cluster, m.remote_volume),
            });
        }
        if let Some(rel) = &record.incoming {
            // A FlashCopy target's content is the copy's to place (issue: `--tgtpprc`).
            return Err(CommandError::VolumeInUse {
                name: volume.into(),
                relationship: self.pair_name(rel),
            });
        }
        Ok(id)
    }

    /// Mirror pairs whose primary is here, with what the node must do for them.
    pub fn primaries(&self) -> impl Iterator<Item = (VolumeId, &str, &MirrorPair)> {
        self.records.values().filter_map(|r| {
            let m = r.mirror.as_ref().filter(|m| m.role == PairRole::Primary)?;
            Some((r.volume.id, r.volume.name.as_str(), m))
        })
    }

    /// Remote Pair FlashCopy of `pairs` (`--pmir` at the primaries' site): every source and
    /// target must be a full-duplex primary mirrored to one cluster. Returns that cluster and
    /// the same pairs as the secondaries' volume names.
    pub fn remote_pairs(&self, pairs: &[Pair]) -> Result<(String, Vec<Pair>), CommandError> {
        let mut cluster: Option<String> = None;
        let mut remote = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let id = |name: &str| {
                self.volume_id(name)
                    .ok_or_else(|| CommandError::VolumeNotFound { name: name.into() })
            };
            let (source, target) = (id(&pair.source)?, id(&pair.target)?);
            if let Some(error) =
                crate::establish::mirror_target(self, source, target, pair, crate::command::MirrorTarget::RemotePair)
            {
                return Err(error);
            }
            let m = |id: VolumeId| self.records[&id].mirror.as_ref().expect("checked");
            let (s, t) = (m(source), m(target));
            if cluster.get_or_insert_with(|| s.remote_cluster.clone()) != &s.remote_cluster {
                return Err(CommandError::PmirNotPossible {
                    pair: pair.to_string(),
                    reason: "the pairs of one command are mirrored to different clusters".into(),
                });
            }
            remote.push(Pair::new(s.remote_volume.clone(), t.remote_volume.clone()));
        }
        let cluster = cluster.ok_or(CommandError::NoPairs)?;
        Ok((cluster, remote))
    }

    /// For commands on existing relationships: `Some` (the cluster and the secondaries' pair
    /// names) if they are Remote Pair FlashCopies, `None` if none is; a mix is refused.
    pub fn existing_remote_pairs(&self, pairs: &[Pair]) -> Result<Option<(String, Vec<Pair>)>, CommandError> {
        let targets = crate::pairs::find_existing(self, pairs)?;
        let remote: Vec<bool> = targets
            .iter()
            .map(|t| self.incoming(*t).is_some_and(|r| r.remote_pair))
            .collect();
        if remote.iter().all(|r| !r) {
            return Ok(None);
        }
        if !remote.iter().all(|r| *r) {
            return Err(CommandError::PmirNotPossible {
                pair: pairs.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "),
                reason: "Remote Pair FlashCopy relationships run at both sites: name them in a command of their own"
                    .into(),
            });
        }
        let mut cluster: Option<String> = None;
        let mut remote = Vec::with_capacity(pairs.len());
        for (pair, target) in pairs.iter().zip(targets) {
            let rel = self.incoming(target).expect("found");
            let holds = |id: VolumeId| {
                let r = &self.records[&id];
                r.volume.frozen_until.is_some() || !r.held_writes.is_empty()
            };
            if holds(rel.source) || holds(target) {
                return Err(CommandError::PmirNotPossible {
                    pair: pair.to_string(),
                    reason: "a volume is frozen or still releasing held writes; thaw it first".into(),
                });
            }
            let m = |id: VolumeId| self.records[&id].mirror.as_ref();
            let (Some(s), Some(t)) = (m(rel.source), m(target)) else {
                return Err(CommandError::PmirNotPossible {
                    pair: pair.to_string(),
                    reason: "its volumes are no longer both in mirror pairs; withdraw it at each site".into(),
                });
            };
            if cluster.get_or_insert_with(|| s.remote_cluster.clone()) != &s.remote_cluster {
                return Err(CommandError::PmirNotPossible {
                    pair: pair.to_string(),
                    reason: "the pairs of one command are mirrored to different clusters".into(),
                });
            }
            remote.push(Pair::new(s.remote_volume.clone(), t.remote_volume.clone()));
        }
        Ok(cluster.map(|c| (c, remote)))
    }

    /// Whether `volume` is a mirror secondary (hosts may only read it).
    pub fn is_mirror_secondary(&self, id: VolumeId) -> bool {
        self.records
            .get(&id)
            .and_then(|r| r.mirror.as_ref())
            .is_some_and(|m| m.role == PairRole::Secondary)
    }
}
