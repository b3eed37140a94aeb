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
use roaring::RoaringBitmap;
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
    /// Kept tracks this apply may still drop as their readers let go of them in bulk; beyond
    /// that they are left to sweep steps (see `release_kept`).
    kept_budget: u64,
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
            kept_budget: u64::from(crate::SWEEP_TRACKS),
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
        if record.kept_tracks > 0 {
            self.tracks.drop_volume(id.kept());
        }
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
            *self.track_count(volume) += 1;
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
        *self.track_count(volume) -= 1;
        self.tracks.zero(volume, track);
        Ok(())
    }

    /// The count a stored track of `volume` is in: its record's, or its owner's kept tracks.
    fn track_count(&mut self, volume: VolumeId) -> &mut u64 {
        let record = self.record_mut(volume.owner());
        match volume.is_kept() {
            true => &mut record.kept_tracks,
            false => &mut record.stored_tracks,
        }
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
        let record = self.record_mut(volume.owner());
        record.content_digest = record.content_digest.wrapping_sub(old_hash).wrapping_add(new_hash);
        if volume.is_kept() {
            record.kept_digest = record.kept_digest.wrapping_sub(old_hash).wrapping_add(new_hash);
        }
        self.state.content_digest = self.state.content_digest.wrapping_sub(old_hash).wrapping_add(new_hash);
    }

    /// Copies what a target reads at an out-of-sync track (its source's track, one up the
    /// cascade, or a kept one) to the target and marks it in sync. The target's track is stored
    /// exactly when what it read is; the block hashes travel with the bytes.
    pub(crate) fn copy_to_target(&mut self, target: VolumeId, track: u32) -> Result<(), Failure<R::Error>> {
        let from = self.state.resolve_read(target, track);
        match self.stored_sums(from, track)? {
            Some(sums) => {
                let data = self.read_track(from, track)?;
                self.set_sums(target, track, sums)?;
                self.tracks.store_track(target, track, data, sums);
            }
            None => self.zero(target, track)?,
        }
        self.mark_copied(target, track)
    }

    fn read_track(&self, volume: VolumeId, track: u32) -> Result<Bytes, Failure<R::Error>> {
        let mut data = vec![0; self.state.track_size() as usize];
        self.read_into(volume, track, 0, &mut data)?;
        Ok(data.into())
    }

    /// Before a source's track changes, every target still reading it there gets the old
    /// content. Targets without change recording share one kept copy when two or more need it
    /// and the source keeps no other old version of that track; the others get a copy each.
    /// (A target with change recording holds its old tracks itself: a revertible increment
    /// relies on it.)
    pub(crate) fn preserve_for_targets(&mut self, source: VolumeId, track: u32) -> Result<(), Failure<R::Error>> {
        let record = self.state.record(source).expect("sources exist");
        let needing: Vec<VolumeId> = record
            .volume
            .targets
            .iter()
            .copied()
            .filter(|t| {
                let rel = self.state.incoming(*t).expect("targets have relationships");
                rel.out_of_sync.contains(track) && !rel.kept.contains(track)
            })
            .collect();
        if needing.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "sabotage")]
        if crate::sabotage::active(crate::sabotage::Sabotage::SkipCopyOnWrite) {
            return Ok(());
        }
        let sharing: Vec<VolumeId> = needing
            .iter()
            .copied()
            .filter(|t| {
                let rel = self.state.incoming(*t).expect("targets have relationships");
                !rel.recording && rel.kept_by == source
            })
            .collect();
        let from = self.state.resolve_read(source, track);
        let shared = match sharing.len() >= 2 && !self.state.holds_kept(source, track) {
            true => self.stored_sums(from, track)?,
            false => None,
        };
        if let Some(sums) = shared {
            let data = self.read_track(from, track)?;
            let kept = source.kept();
            self.set_sums(kept, track, sums)?;
            self.tracks.store_track(kept, track, data, sums);
            for &target in &sharing {
                self.relationship_mut(target).kept.insert(track);
                self.note_kept_block(target, track);
            }
        }
        for target in needing {
            if shared.is_none() || !sharing.contains(&target) {
                self.copy_to_target(target, track)?;
            }
        }
        Ok(())
    }

    fn note_kept_block(&mut self, target: VolumeId, track: u32) {
        self.changes
            .bitmap_blocks
            .insert((target, BitmapKind::Kept, track / BITMAP_BLOCK_TRACKS));
    }

    /// A target stops reading a kept track (it copied it, was written over, or lets go); the
    /// last relationship to stop drops it.
    fn let_go(&mut self, target: VolumeId, track: u32) -> Result<(), Failure<R::Error>> {
        let rel = self.relationship_mut(target);
        if !rel.kept.remove(track) {
            return Ok(());
        }
        let owner = rel.kept_by;
        self.note_kept_block(target, track);
        if drops_read_kept() || !self.state.holds_kept(owner, track) {
            self.zero(owner.kept(), track)?;
        }
        Ok(())
    }

    /// The relationship targeting `target` stops reading every kept track (it ends, or turns
    /// into one that needs none); those no other relationship reads are dropped. The caller
    /// replaces the target's bitmaps.
    pub(crate) fn let_go_all(&mut self, target: VolumeId) -> Result<(), Failure<R::Error>> {
        let kept = std::mem::take(&mut self.relationship_mut(target).kept);
        self.release_kept(target, kept)
    }

    /// `target` has stopped reading `tracks` (the caller took them out of its kept bits and
    /// notes its kept bitmap blocks). Those no other relationship reads are dropped now while
    /// this apply's budget lasts (the whole store in one op when nobody reads any); beyond it the
    /// owner's sweep bookmark is set and sweep steps drop them (`kept_sweep.rs`), so no apply
    /// drops an unbounded number.
    fn release_kept(&mut self, target: VolumeId, tracks: RoaringBitmap) -> Result<(), Failure<R::Error>> {
        if tracks.is_empty() {
            return Ok(());
        }
        let owner = self.relationship_mut(target).kept_by;
        if !self.state.keeps_any(owner) {
            self.drop_kept_store(owner);
            return Ok(());
        }
        let orphans = if drops_read_kept() {
            tracks
        } else {
            self.state.unread_kept(owner, tracks)
        };
        if orphans.len() <= self.kept_budget {
            self.kept_budget -= orphans.len();
            for track in &orphans {
                self.zero(owner.kept(), track)?;
            }
        } else if let Some(first) = orphans.min() {
            let record = self.record_mut(owner);
            record.kept_sweep = Some(record.kept_sweep.map_or(first, |at| at.min(first)));
        }
        Ok(())
    }

    /// Drops every track `owner` keeps, in one op (no relationship reads any of them).
    pub(crate) fn drop_kept_store(&mut self, owner: VolumeId) {
        let record = self.record_mut(owner);
        let hash = record.kept_digest;
        record.kept_tracks = 0;
        record.kept_sweep = None;
        self.shift_content_digest(owner.kept(), hash, 0);
        self.tracks.drop_volume(owner.kept());
    }

    /// Marks a target track in sync without copying (a host write replaced it whole).
    pub(crate) fn mark_copied(&mut self, target: VolumeId, track: u32) -> Result<(), Failure<R::Error>> {
        self.let_go(target, track)?;
        let rel = self.relationship_mut(target);
        let was_inverted = rel.out_of_sync.raw().1;
        if !rel.out_of_sync.mark_copied(track) {
            return Ok(());
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
        Ok(())
    }

    /// Marks the target's out-of-sync tracks in `range` in sync except the kept ones, which
    /// keep reading their kept content (the source's tracks there changed, not theirs).
    pub(crate) fn mark_unkept_range_copied(
        &mut self,
        target: VolumeId,
        range: std::ops::Range<u32>,
    ) -> Result<u64, Failure<R::Error>> {
        let kept = self.kept_in(target, &range);
        let mut start = range.start;
        let mut cleared = 0;
        for track in kept.iter().chain(std::iter::once(range.end)) {
            if start < track {
                cleared += self.mark_range_copied(target, start..track)?;
            }
            start = track + 1;
        }
        Ok(cleared)
    }

    /// The target's kept tracks in `range`.
    fn kept_in(&self, target: VolumeId, range: &std::ops::Range<u32>) -> RoaringBitmap {
        let rel = self.state.incoming(target).expect("targets have relationships");
        rel.kept.range(range.clone()).collect()
    }

    /// Marks a range of target tracks in sync at once (nothing stored on either side, or the
    /// target's own range zeroed); kept ones are let go. Returns how many were out of sync.
    pub(crate) fn mark_range_copied(
        &mut self,
        target: VolumeId,
        range: std::ops::Range<u32>,
    ) -> Result<u64, Failure<R::Error>> {
        let kept = self.kept_in(target, &range);
        if !kept.is_empty() {
            for block in range.start / BITMAP_BLOCK_TRACKS..=(range.end - 1) / BITMAP_BLOCK_TRACKS {
                self.changes.bitmap_blocks.insert((target, BitmapKind::Kept, block));
            }
            self.relationship_mut(target).kept.remove_range(range.clone());
            self.release_kept(target, kept)?;
        }
        let rel = self.relationship_mut(target);
        let was_inverted = rel.out_of_sync.raw().1;
        let cleared = rel.out_of_sync.mark_range_copied(range.clone());
        if cleared == 0 {
            return Ok(0);
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
        Ok(cleared)
    }

    pub(crate) fn next_stored(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Failure<R::Error>> {
        self.tracks.next_stored(volume, from).map_err(Failure::Storage)
    }

    /// The lowest track at or after `from` that the volume or a source up its cascade stores,
    /// or that one of them reads from kept tracks: before it, the volume reads as zeros
    /// whatever its out-of-sync bits say.
    pub(crate) fn next_stored_upstream(&self, volume: VolumeId, from: u32) -> Result<Option<u32>, Failure<R::Error>> {
        let mut lowest: Option<u32> = None;
        for v in self.state.upstream(volume) {
            let kept = self.state.incoming(v).and_then(|rel| rel.kept.range(from..).next());
            for track in [self.next_stored(v, from)?, kept].into_iter().flatten() {
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
            BitmapKind::OutOfSync | BitmapKind::Kept => {
                unreachable!("out-of-sync and kept bits change through mark_copied and preserve_for_targets")
            }
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
            BitmapKind::OutOfSync | BitmapKind::Kept => {
                unreachable!("out-of-sync and kept bits change through mark_range_copied and preserve_for_targets")
            }
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

/// The `KeptDroppedWhileRead` sabotage: a kept track let go of is dropped even where another
/// relationship still reads it. Never in a product build.
fn drops_read_kept() -> bool {
    #[cfg(feature = "sabotage")]
    return crate::sabotage::active(crate::sabotage::Sabotage::KeptDroppedWhileRead);
    #[cfg(not(feature = "sabotage"))]
    false
}
