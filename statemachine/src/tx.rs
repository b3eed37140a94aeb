//! `Tx`: one apply's view of the state. Every change to a volume record goes through
//! [`Tx::record_mut`], which keeps the digest and the list of touched records exact; every change
//! to a track goes through [`Tx::store_track`], [`Tx::store_blocks`] or [`Tx::zero`]. Handlers
//! depend on this file; the dispatch in `apply.rs` depends on the handlers: one way.

use crate::changes::{BitmapKind, DetailChanges, BITMAP_BLOCK_TRACKS};
use crate::digest;
use crate::error::CommandError;
use crate::event::Event;
use crate::record::VolumeRecord;
use crate::relationship::Relationship;
use crate::state::State;
use crate::timestamp::Timestamp;
use crate::track::{block_size, BlockSums, TrackOp, TrackReader, VolumeId, BLOCKS_PER_TRACK};
use crate::track_view::TrackView;
use bytes::Bytes;
use std::collections::BTreeSet;

/// What one apply produced. Storage must make `ops`, the `touched` records and the applied
/// index durable in one atomic write.
#[derive(Debug)]
pub struct Applied {
    /// The command's own outcome (a refusal is also in `events`).
    pub result: Result<(), CommandError>,
    pub events: Vec<Event>,
    pub ops: Vec<TrackOp>,
    /// Volume records changed, created or removed by this apply, in id order.
    pub touched: Vec<VolumeId>,
    /// Bitmap blocks and held writes changed, within the touched records.
    pub details: DetailChanges,
    /// Hosts or their mappings changed: storage rewrites them (they are few).
    pub hosts_changed: bool,
    /// The cluster id or the mirror paths changed: storage rewrites them (they are few).
    pub paths_changed: bool,
    /// The tap: host writes that landed on full-duplex mirror primaries in this apply, in
    /// order, with their sequence numbers. The node sends them to the secondaries.
    pub mirrored: Vec<Mirrored>,
}

/// A write that landed on a full-duplex mirror primary (see [`Applied::mirrored`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrored {
    pub volume: VolumeId,
    pub generation: u64,
    pub seq: u64,
    pub offset: u64,
    pub data: crate::command::WriteData,
}

/// Why a handler stopped: the command was refused, or storage failed underneath it.
pub(crate) enum Failure<E> {
    Refused(CommandError),
    Storage(E),
}

impl<E> From<CommandError> for Failure<E> {
    fn from(error: CommandError) -> Self {
        Failure::Refused(error)
    }
}

/// One apply's transaction: the state, the tracks as this apply sees them, and everything the
/// apply changed so far. Fields are private: handlers read the state through [`Tx::state`] and
/// change it only through the methods below, which keep the digest and the lists of changes
/// that storage persists exact.
pub(crate) struct Tx<'a, R> {
    state: &'a mut State,
    tracks: TrackView<'a, R>,
    events: Vec<Event>,
    now: Timestamp,
    touched: BTreeSet<VolumeId>,
    /// Targets whose out-of-sync bitmap a copy emptied during this apply.
    copied_out: Vec<VolumeId>,
    changes: DetailChanges,
    /// A journal replay: writes may carry a summary instead of their bytes.
    replaying: bool,
    hosts_changed: bool,
    paths_changed: bool,
    mirrored: Vec<Mirrored>,
}

impl<'a, R: TrackReader> Tx<'a, R> {
    pub(crate) fn new(state: &'a mut State, tracks: &'a R, now: Timestamp, replaying: bool) -> Self {
        let track_size = state.track_size();
        Tx {
            state,
            tracks: TrackView::new(tracks, track_size),
            events: Vec::new(),
            now,
            touched: BTreeSet::new(),
            copied_out: Vec::new(),
            changes: DetailChanges::default(),
            replaying,
            hosts_changed: false,
            paths_changed: false,
            mirrored: Vec::new(),
        }
    }

    /// The state as this apply has changed it so far.
    pub(crate) fn state(&self) -> &State {
        self.state
    }

    /// The entry's time on the state's clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }

    /// A journal replay: writes may carry a summary instead of their bytes.
    pub(crate) fn replaying(&self) -> bool {
        self.replaying
    }

    pub(crate) fn push_event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// How many events this apply produced so far: a place for [`Tx::insert_event`].
    pub(crate) fn event_count(&self) -> usize {
        self.events.len()
    }

    /// Puts an event before those produced since `event_count` said `at`.
    pub(crate) fn insert_event(&mut self, at: usize, event: Event) {
        self.events.insert(at, event);
    }

    /// The id the next created volume gets (ids are never reused).
    pub(crate) fn next_volume_id(&mut self) -> VolumeId {
        let id = VolumeId(self.state.globals.next_volume_id);
        self.state.globals.next_volume_id += 1;
        id
    }

    /// A write was queued behind a freeze as `seq`.
    pub(crate) fn note_held_pushed(&mut self, volume: VolumeId, seq: u64) {
        self.changes.held_pushed.push((volume, seq));
    }

    /// The volume's held writes up to `seq` were taken off its queue.
    pub(crate) fn note_held_released(&mut self, volume: VolumeId, seq: u64) {
        self.changes.held_released.insert(volume, seq);
    }

    /// The only way to change a record: the first touch takes its hash out of the digest, and
    /// `finish` puts the new hash back.
    pub(crate) fn record_mut(&mut self, id: VolumeId) -> &mut VolumeRecord {
        if self.touched.insert(id) {
            if let Some(record) = self.state.records.get(&id) {
                self.state.meta_digest = self.state.meta_digest.wrapping_sub(digest::record_hash(record));
            }
        }
        self.state
            .records
            .get_mut(&id)
            .expect("records are looked up before they are changed")
    }

    /// The only way to change hosts: `finish` rehashes them and storage rewrites them.
    pub(crate) fn hosts_mut(&mut self) -> &mut std::collections::BTreeMap<String, crate::hosts::Host> {
        self.hosts_changed = true;
        &mut self.state.hosts
    }

    /// The only way to change mirror paths: `finish` rehashes them and storage rewrites them.
    pub(crate) fn paths_mut(&mut self) -> &mut std::collections::BTreeMap<String, crate::mirror::PprcPath> {
        self.paths_changed = true;
        &mut self.state.paths
    }

    pub(crate) fn mirror_mut(&mut self, id: VolumeId) -> &mut crate::mirror::MirrorPair {
        self.record_mut(id)
            .mirror
            .as_mut()
            .expect("pairs are looked up before they are changed")
    }

    /// Names the cluster (once): persisted and hashed with the paths.
    pub(crate) fn set_cluster_id(&mut self, id: &str) {
        self.paths_changed = true;
        self.state.cluster_id = Some(id.to_string());
    }

    /// The tap: a write to a full-duplex primary landed under sequence number `seq`.
    pub(crate) fn push_mirrored(
        &mut self,
        volume: VolumeId,
        generation: u64,
        seq: u64,
        offset: u64,
        data: crate::command::WriteData,
    ) {
        self.mirrored.push(Mirrored {
            volume,
            generation,
            seq,
            offset,
            data,
        });
    }

    pub(crate) fn relationship_mut(&mut self, target: VolumeId) -> &mut Relationship {
        self.record_mut(target)
            .incoming
            .as_mut()
            .expect("relationships are looked up before they are changed")
    }

    pub(crate) fn insert_record(&mut self, record: VolumeRecord) {
        let id = record.volume.id;
        self.touched.insert(id);
        self.state.index(&record);
        self.state.records.insert(id, record);
    }

    pub(crate) fn remove_record(&mut self, id: VolumeId) {
        self.record_mut(id);
        let record = self.state.records.remove(&id).expect("record exists");
        self.state.unindex(&record);
        self.state.content_digest = self.state.content_digest.wrapping_sub(record.content_digest);
        self.tracks.drop_volume(id);
    }

    pub(crate) fn name(&self, id: VolumeId) -> String {
        self.state.name(id).to_string()
    }

    /// Sets a track's whole content, keeping the content digest exact. The track is stored
    /// from now on whatever its bytes: which tracks are stored depends only on the commands,
    /// never on data, so a replay of the journal (which keeps no write payloads) rebuilds it
    /// exactly. Proposers send all-zero writes as `WriteData::Zeroes`.
    pub(crate) fn store_track(&mut self, volume: VolumeId, track: u32, data: Bytes) -> Result<(), Failure<R::Error>> {
        let mut sums = [0; BLOCKS_PER_TRACK];
        digest::hash_blocks(track, 0, &data, self.block_size(), &mut sums);
        self.set_sums(volume, track, sums)?;
        self.tracks.store_track(volume, track, data, sums);
        Ok(())
    }

    /// Stores whole blocks `first_block..` of a track (the others keep their content, or read
    /// as zeros if the track was not stored). Only the written blocks are hashed: the digest
    /// follows from the stored block hashes, never from old data.
    pub(crate) fn store_blocks(
        &mut self,
        volume: VolumeId,
        track: u32,
        first_block: u32,
        data: Bytes,
    ) -> Result<(), Failure<R::Error>> {
        let mut sums = self.stored_sums(volume, track)?.unwrap_or([0; BLOCKS_PER_TRACK]);
        digest::hash_blocks(track, first_block, &data, self.block_size(), &mut sums);
        self.set_sums(volume, track, sums)?;
        self.tracks.write_blocks(volume, track, first_block, data, sums);
        Ok(())
    }

    /// Moves the content digest from the track's stored sums to `sums`; a track not stored
    /// before counts as stored from now on.
    fn set_sums(&mut self, volume: VolumeId, track: u32, sums: BlockSums) -> Result<(), Failure<R::Error>> {
        let old = self.stored_sums(volume, track)?;
        if old.is_none() {
            self.record_mut(volume).stored_tracks += 1;
        }
        let old = old.map_or(0, |old| digest::track_hash(volume, track, &old));
        self.shift_content_digest(volume, old, digest::track_hash(volume, track, &sums));
        Ok(())
    }

    /// The track reads as zeros and is not stored any more (nothing to do if it was not).
    pub(crate) fn zero(&mut self, volume: VolumeId, track: u32) -> Result<(), Failure<R::Error>> {
        let Some(old) = self.stored_sums(volume, track)? else {
            return Ok(());
        };
        self.shift_content_digest(volume, digest::track_hash(volume, track, &old), 0);
        self.record_mut(volume).stored_tracks -= 1;
        self.tracks.zero(volume, track);
        Ok(())
    }

    /// The block hashes of a track, `None` if it is not stored.
    pub(crate) fn stored_sums(&self, volume: VolumeId, track: u32) -> Result<Option<BlockSums>, Failure<R::Error>> {
        self.tracks.sums(volume, track).map_err(Failure::Storage)
    }

    /// Fills `out` with a track's content from byte `within` on.
    pub(crate) fn read_into(
        &self,
        volume: VolumeId,
        track: u32,
        within: usize,
        out: &mut [u8],
    ) -> Result<(), Failure<R::Error>> {
        self.tracks
            .read_into(volume, track, within, out)
            .map_err(Failure::Storage)
    }

    pub(crate) fn block_size(&self) -> usize {
        block_size(self.state.track_size()) as usize
    }

    fn shift_content_digest(&mut self, volume: VolumeId, old_hash: u64, new_hash: u64) {
        let record = self.record_mut(volume);
        record.content_digest = record.content_digest.wrapping_sub(old_hash).wrapping_add(new_hash);
        self.state.content_digest = self.state.content_digest.wrapping_sub(old_hash).wrapping_add(new_hash);
    }

    /// Copies a track of the target's source to the target and marks it in sync. The target's
    /// track is stored exactly when the source's is; the block hashes travel with the bytes.
    pub(crate) fn copy_to_target(
        &mut self,
        source: VolumeId,
        target: VolumeId,
        track: u32,
    ) -> Result<(), Failure<R::Error>> {
        // What the source reads there: its own track, or one up the cascade.
        let from = self.state.resolve_read(source, track);
        match self.stored_sums(from, track)? {
            Some(sums) => {
                let mut data = vec![0; self.state.track_size() as usize];
                self.read_into(from, track, 0, &mut data)?;
                self.set_sums(target, track, sums)?;
                self.tracks.store_track(target, track, data.into(), sums);
            }
            None => self.zero(target, track)?,
        }
        self.mark_copied(target, track);
        Ok(())
    }

    /// Marks a target track in sync without copying (a host write replaced it whole).
    pub(crate) fn mark_copied(&mut self, target: VolumeId, track: u32) {
        let rel = self.relationship_mut(target);
        let was_inverted = rel.out_of_sync.raw().1;
        if !rel.out_of_sync.mark_copied(track) {
            return;
        }
        let emptied = rel.out_of_sync.is_empty();
        if rel.out_of_sync.raw().1 != was_inverted {
            self.changes.bitmaps_replaced.insert(target);
        } else {
            let block = track / BITMAP_BLOCK_TRACKS;
            self.changes
                .bitmap_blocks
                .insert((target, BitmapKind::OutOfSync, block));
        }
        if emptied {
            self.copied_out.push(target);
        }
    }

    /// Marks a range of target tracks in sync at once (nothing stored on either side).
    /// Returns how many were out of sync.
    pub(crate) fn mark_range_copied(&mut self, target: VolumeId, range: std::ops::Range<u32>) -> u64 {
        let rel = self.relationship_mut(target);
        let was_inverted = rel.out_of_sync.raw().1;
        let cleared = rel.out_of_sync.mark_range_copied(range.clone());
        if cleared == 0 {
            return 0;
        }
        let emptied = rel.out_of_sync.is_empty();
        if rel.out_of_sync.raw().1 != was_inverted {
            self.changes.bitmaps_replaced.insert(target);
        } else {
            for block in range.start / BITMAP_BLOCK_TRACKS..=(range.end - 1) / BITMAP_BLOCK_TRACKS {
                self.changes
                    .bitmap_blocks
                    .insert((target, BitmapKind::OutOfSync, block));
            }
        }
        if emptied {
            self.copied_out.push(target);
        }
        cleared
    }

    pub(crate) fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Failure<R::Error>> {
        self.tracks.next_stored(volume, from).map_err(Failure::Storage)
    }

    /// The lowest track at or after `from` that the volume or a source up its cascade stores:
    /// before it, the volume reads as zeros whatever its out-of-sync bits say.
    pub(crate) fn next_stored_upstream(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Failure<R::Error>> {
        let mut lowest: Option<u32> = None;
        for v in self.state.upstream(volume) {
            if let Some(track) = self.next_stored(v, from)? {
                lowest = Some(lowest.map_or(track, |l| l.min(track)));
            }
        }
        Ok(lowest)
    }

    /// Records a write to a track in one of a relationship's change bitmaps.
    pub(crate) fn note_change(&mut self, target: VolumeId, kind: BitmapKind, track: u32) {
        let rel = self.relationship_mut(target);
        let bits = match kind {
            BitmapKind::SourceChanges => &mut rel.source_changes,
            BitmapKind::TargetChanges => &mut rel.target_changes,
            BitmapKind::OutOfSync => unreachable!("out-of-sync bits change through mark_copied"),
            BitmapKind::PreviousSourceChanges | BitmapKind::PreviousTargetChanges => {
                unreachable!("a revertible increment's bitmaps are replaced whole")
            }
        };
        if bits.insert(track) {
            self.changes
                .bitmap_blocks
                .insert((target, kind, track / BITMAP_BLOCK_TRACKS));
        }
    }

    /// Records writes to a range of tracks in one of a relationship's change bitmaps.
    pub(crate) fn note_range_changed(&mut self, target: VolumeId, kind: BitmapKind, tracks: std::ops::Range<u32>) {
        if tracks.is_empty() {
            return;
        }
        let rel = self.relationship_mut(target);
        let bits = match kind {
            BitmapKind::SourceChanges => &mut rel.source_changes,
            BitmapKind::TargetChanges => &mut rel.target_changes,
            BitmapKind::OutOfSync => unreachable!("out-of-sync bits change through mark_range_copied"),
            BitmapKind::PreviousSourceChanges | BitmapKind::PreviousTargetChanges => {
                unreachable!("a revertible increment's bitmaps are replaced whole")
            }
        };
        if bits.insert_range(tracks.clone()) == 0 {
            return;
        }
        for block in tracks.start / BITMAP_BLOCK_TRACKS..=(tracks.end - 1) / BITMAP_BLOCK_TRACKS {
            self.changes.bitmap_blocks.insert((target, kind, block));
        }
    }

    /// The relationship targeting this volume got new bitmaps wholesale, or went away.
    pub(crate) fn bitmaps_replaced(&mut self, target: VolumeId) {
        self.changes.bitmaps_replaced.insert(target);
    }

    pub(crate) fn set_frozen(&mut self, id: VolumeId, until: Option<Timestamp>) {
        let record = self.record_mut(id);
        let old = std::mem::replace(&mut record.volume.frozen_until, until);
        if let Some(old) = old {
            self.state.thaw_queue.remove(&(old, id));
        }
        if let Some(until) = until {
            self.state.thaw_queue.insert((until, id));
        }
    }

    /// Targets whose copy completed in this apply so far (each once).
    pub(crate) fn take_copied_out(&mut self) -> Vec<VolumeId> {
        std::mem::take(&mut self.copied_out)
    }

    /// Puts the touched records' hashes back into the digest and hands storage what changed.
    pub(crate) fn finish(self, result: Result<(), CommandError>) -> Applied {
        for id in &self.touched {
            if let Some(record) = self.state.records.get(id) {
                self.state.meta_digest = self.state.meta_digest.wrapping_add(digest::record_hash(record));
                let drains = record.drains();
                self.state.set_draining(*id, drains);
            }
        }
        if self.hosts_changed {
            self.state.hosts_digest = digest::hosts_hash(&self.state.hosts);
        }
        if self.paths_changed {
            self.state.paths_digest = digest::paths_hash(self.state.cluster_id.as_deref(), &self.state.paths);
        }
        Applied {
            result,
            events: self.events,
            ops: self.tracks.ops,
            touched: self.touched.into_iter().collect(),
            details: self.changes,
            hosts_changed: self.hosts_changed,
            paths_changed: self.paths_changed,
            mirrored: self.mirrored,
        }
    }
}
