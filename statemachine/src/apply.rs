//! `apply`: (state, command, leader timestamp) → new state, track operations, events.
//!
//! Every change to a volume record goes through [`Tx::record_mut`], which keeps the digest and
//! the list of touched records exact; every change to a track goes through [`Tx::store`].
//! Handlers validate everything before they change anything, so a refused command changes
//! nothing (multi-pair commands are all-or-nothing).

use crate::changes::{BitmapKind, DetailChanges, BITMAP_BLOCK_TRACKS};
use crate::command::Command;
use crate::digest;
use crate::error::CommandError;
use crate::event::Event;
use crate::relationship::Relationship;
use crate::state::{State, VolumeRecord};
use crate::timestamp::{Stamp, Timestamp};
use crate::track::{block_size, BlockSums, TrackOp, TrackReader, VolumeId, BLOCKS_PER_TRACK};
use crate::track_view::TrackView;
use crate::{background_copy, establish, freeze, host_write, hosts, resync, reverse, volume, withdraw};
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
}

/// Applies one command. `Err` only if reading a stored track failed; then the in-memory state
/// may be half-changed and must be discarded (reload it from storage).
pub fn apply<R: TrackReader>(
    state: &mut State,
    tracks: &R,
    command: &Command,
    stamp: impl Into<Stamp>,
) -> Result<Applied, R::Error> {
    apply_as(state, tracks, command, stamp.into(), false)
}

/// `apply`, or with `replaying` a journal replay's apply: only a replay accepts writes whose
/// data is a `WriteData::Summary`.
pub(crate) fn apply_as<R: TrackReader>(
    state: &mut State,
    tracks: &R,
    command: &Command,
    stamp: Stamp,
    replaying: bool,
) -> Result<Applied, R::Error> {
    // Leaders' clocks differ: the state keeps its own clock, moved by the stamps.
    let now = state.globals.tick_clock(stamp);
    let mut tx = Tx::new(state, tracks, now, replaying);
    let outcome = match tx.thaw_due() {
        Ok(()) => dispatch(&mut tx, command),
        Err(failure) => Err(failure),
    };
    let result = match outcome {
        Ok(()) => Ok(()),
        Err(Failure::Refused(error)) => {
            tx.events.push(Event::Refused { error: error.clone() });
            Err(error)
        }
        Err(Failure::Storage(error)) => return Err(error),
    };
    tx.finish(result)
}

fn dispatch<R: TrackReader>(tx: &mut Tx<'_, R>, command: &Command) -> Result<(), Failure<R::Error>> {
    match command {
        Command::CreateVolume { name, size } => volume::create(tx, name, *size),
        Command::DeleteVolume { name } => volume::delete(tx, name),
        Command::Write(write) => host_write::write(tx, write),
        Command::WriteBatch(writes) => host_write::write_batch(tx, writes),
        Command::MkFlash { pairs, options } => establish::mkflash(tx, pairs, options),
        Command::RmFlash { pairs, cp, seqnum } => withdraw::rmflash(tx, pairs, *cp, *seqnum),
        Command::ResyncFlash {
            pairs,
            nocp,
            tgtinhibit,
            seqnum,
        } => resync::resyncflash(tx, pairs, *nocp, *tgtinhibit, *seqnum),
        Command::ReverseFlash { pairs, fast, seqnum } => reverse::reverseflash(tx, pairs, *fast, *seqnum),
        Command::UnfreezeFlash { sources } => freeze::unfreezeflash(tx, sources),
        Command::CopyStep {
            source,
            target,
            max_tracks,
        } => background_copy::copy_step(tx, source, target, *max_tracks),
        Command::CreateHost { name, identity } => hosts::create(tx, name, identity),
        Command::DeleteHost { name } => hosts::delete(tx, name),
        Command::MapVolume {
            volume,
            host,
            read_only,
        } => hosts::map(tx, volume, host, *read_only),
        Command::UnmapVolume { volume, host } => hosts::unmap(tx, volume, host),
        Command::Tick => Ok(()),
    }
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

pub(crate) struct Tx<'a, R> {
    pub(crate) state: &'a mut State,
    tracks: TrackView<'a, R>,
    pub(crate) events: Vec<Event>,
    pub(crate) now: Timestamp,
    touched: BTreeSet<VolumeId>,
    /// Targets whose out-of-sync bitmap a copy emptied during this apply.
    copied_out: Vec<VolumeId>,
    pub(crate) changes: DetailChanges,
    /// A journal replay: writes may carry a summary instead of their bytes.
    pub(crate) replaying: bool,
    hosts_changed: bool,
}

impl<'a, R: TrackReader> Tx<'a, R> {
    fn new(state: &'a mut State, tracks: &'a R, now: Timestamp, replaying: bool) -> Self {
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
        }
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
    pub(crate) fn store_track(&mut self, volume: VolumeId, track: u32, data: Vec<u8>) -> Result<(), Failure<R::Error>> {
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
        data: Vec<u8>,
    ) -> Result<(), Failure<R::Error>> {
        let mut sums = self.stored_sums(volume, track)?.unwrap_or([0; BLOCKS_PER_TRACK]);
        digest::hash_blocks(track, first_block, &data, self.block_size(), &mut sums);
        self.set_sums(volume, track, sums)?;
        self.tracks.write_blocks(volume, track, first_block, data, sums);
        Ok(())
    }

    /// Moves the content digest from the track's stored sums to `sums`.
    fn set_sums(&mut self, volume: VolumeId, track: u32, sums: BlockSums) -> Result<(), Failure<R::Error>> {
        let old = self
            .stored_sums(volume, track)?
            .map_or(0, |old| digest::track_hash(volume, track, &old));
        self.shift_content_digest(volume, old, digest::track_hash(volume, track, &sums));
        Ok(())
    }

    /// The track reads as zeros and is not stored any more (nothing to do if it was not).
    pub(crate) fn zero(&mut self, volume: VolumeId, track: u32) -> Result<(), Failure<R::Error>> {
        let Some(old) = self.stored_sums(volume, track)? else {
            return Ok(());
        };
        self.shift_content_digest(volume, digest::track_hash(volume, track, &old), 0);
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
        match self.stored_sums(source, track)? {
            Some(sums) => {
                let mut data = vec![0; self.state.track_size() as usize];
                self.read_into(source, track, 0, &mut data)?;
                self.set_sums(target, track, sums)?;
                self.tracks.store_track(target, track, data, sums);
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

    /// Records a write to a track in one of a relationship's change bitmaps.
    pub(crate) fn note_change(&mut self, target: VolumeId, kind: BitmapKind, track: u32) {
        let rel = self.relationship_mut(target);
        let bits = match kind {
            BitmapKind::SourceChanges => &mut rel.source_changes,
            BitmapKind::TargetChanges => &mut rel.target_changes,
            BitmapKind::OutOfSync => unreachable!("out-of-sync bits change through mark_copied"),
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

    /// Releases the next batch of held writes of volumes thawed earlier, then thaws every
    /// volume whose automatic thaw is due at this entry's time.
    fn thaw_due(&mut self) -> Result<(), Failure<R::Error>> {
        let draining: Vec<VolumeId> = self.state.draining.iter().copied().collect();
        for id in draining {
            freeze::release(self, id)?;
        }
        while let Some(&(until, id)) = self.state.thaw_queue.first() {
            if until > self.now {
                break;
            }
            freeze::thaw(self, id, true)?;
        }
        Ok(())
    }

    /// Ends relationships whose copy completed in this apply (non-persistent or completing),
    /// then puts the touched records' hashes back into the digest.
    fn finish(mut self, result: Result<(), CommandError>) -> Result<Applied, R::Error> {
        for target in std::mem::take(&mut self.copied_out) {
            let Some(rel) = self.state.incoming(target) else {
                continue;
            };
            if !rel.out_of_sync.is_empty() {
                continue;
            }
            let ends = rel.ends_when_copied();
            let (source, target_name) = (self.name(rel.source), self.name(target));
            self.events.push(Event::CopyCompleted {
                source,
                target: target_name,
            });
            if ends {
                withdraw::withdraw(&mut self, target, true);
            }
        }
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
        Ok(Applied {
            result,
            events: self.events,
            ops: self.tracks.ops,
            touched: self.touched.into_iter().collect(),
            details: self.changes,
            hosts_changed: self.hosts_changed,
        })
    }
}
