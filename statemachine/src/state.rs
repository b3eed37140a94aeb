//! The replicated state: volume records (each with the relationship it is the target of) and
//! the queries the node answers from it. Track contents live in storage, not here.

use crate::digest::{self, MetadataDigest};
use crate::held_writes::HeldWrites;
use crate::hosts::{Access, Host, HostIdentity, HostInfo};
use crate::relationship::{Relationship, RelationshipState};
use crate::timestamp::{Stamp, Timestamp};
use crate::track::{TrackReader, VolumeId, TRACK_SIZE};
use crate::volume::{Volume, VolumeState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Everything the state keeps about one volume. It is also the unit of persistence: an apply
/// reports which records it touched and storage rewrites exactly those.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub volume: Volume,
    /// The relationship whose target this volume is (a target has exactly one source).
    pub incoming: Option<Relationship>,
    /// Host writes held by a freeze, in arrival order.
    pub held_writes: HeldWrites,
    /// Sum of the track hashes of this volume's stored content.
    pub content_digest: u64,
}

impl VolumeRecord {
    /// Thawed, with held writes still to release.
    pub(crate) fn drains(&self) -> bool {
        self.volume.frozen_until.is_none() && !self.held_writes.is_empty()
    }
}

/// State-wide values that are not part of any volume record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Globals {
    pub track_size: u32,
    pub next_volume_id: u64,
    /// The state's clock: the time of the last applied entry. It never goes backwards and it
    /// moves at the rate of the leaders' clocks, whatever their offsets (see `advance_clock`).
    pub last_time: Timestamp,
    /// The latest stamp of the current term's leader.
    pub last_stamp: Timestamp,
    /// The term of the last applied entry's leader.
    pub stamp_term: u64,
}

impl Globals {
    /// The clock for an entry stamped `stamp`. Within a term it moves by as much as the leader's
    /// clock moved past its latest stamp (entries may reach the log slightly out of stamp
    /// order: that moves nothing). A new term's leader moves it to its own time if that is
    /// later, else leaves it. So it never goes backwards, a leader whose clock ran ahead moves
    /// it ahead once while later leaders still move it at their rate — a timer on it (the
    /// automatic thaw) fires after its duration — and it drifts from the leaders' clocks by at
    /// most their largest offset.
    pub(crate) fn advance_clock(&self, stamp: Stamp) -> Timestamp {
        if stamp.term == self.stamp_term {
            Timestamp(self.last_time.0 + stamp.time.0.saturating_sub(self.last_stamp.0))
        } else {
            self.last_time.max(stamp.time)
        }
    }

    /// Applies `stamp` to the clock; returns the entry's time.
    pub(crate) fn tick_clock(&mut self, stamp: Stamp) -> Timestamp {
        let now = self.advance_clock(stamp);
        if stamp.term == self.stamp_term {
            self.last_stamp = self.last_stamp.max(stamp.time);
        } else {
            self.last_stamp = stamp.time;
            self.stamp_term = stamp.term;
        }
        self.last_time = now;
        now
    }
}

/// The replicated FlashCopy state. Change it only through [`crate::apply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "StateParts", into = "StateParts")]
pub struct State {
    pub(crate) globals: Globals,
    pub(crate) records: BTreeMap<VolumeId, VolumeRecord>,
    /// Hosts by name, with the volumes mapped to them.
    pub(crate) hosts: BTreeMap<String, Host>,
    // Derived from the records (rebuilt on load):
    pub(crate) names: BTreeMap<String, VolumeId>,
    pub(crate) thaw_queue: BTreeSet<(Timestamp, VolumeId)>,
    /// Thawed volumes whose held writes are still being released.
    pub(crate) draining: BTreeSet<VolumeId>,
    pub(crate) meta_digest: u64,
    pub(crate) content_digest: u64,
    pub(crate) hosts_digest: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct StateParts {
    globals: Globals,
    records: Vec<VolumeRecord>,
    hosts: Vec<Host>,
}

impl From<StateParts> for State {
    fn from(parts: StateParts) -> State {
        State::from_records(parts.globals, parts.records).with_hosts(parts.hosts)
    }
}

impl From<State> for StateParts {
    fn from(state: State) -> StateParts {
        StateParts {
            globals: state.globals,
            records: state.records.into_values().collect(),
            hosts: state.hosts.into_values().collect(),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// One row of `lsvol`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub size: u64,
    pub state: VolumeState,
    pub source_of: Vec<String>,
    pub target_of: Option<String>,
}

/// One row of `lsflash`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelationshipInfo {
    pub source: String,
    pub target: String,
    pub seqnum: u32,
    pub state: RelationshipState,
    pub persistent: bool,
    pub recording: bool,
    pub background_copy: bool,
    pub target_write_inhibit: bool,
    pub frozen: bool,
    pub out_of_sync_tracks: u64,
    pub total_tracks: u32,
    pub created_at: String,
    pub synced_at: String,
}

/// A run of a volume's bytes that are all allocated (stored) or all a hole (read as zeros
/// without anything stored), as NBD block status reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub length: u64,
    pub allocated: bool,
}

/// What `State::next_allocated` found.
enum Allocated {
    At(u32),
    /// No track before this one (from where the search began) is allocated.
    NoneBefore(u32),
}

/// Background-copy work the leader should schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyWork {
    pub source: String,
    pub target: String,
    pub remaining: u64,
}

impl State {
    /// An empty state with 64 KiB tracks.
    pub fn new() -> State {
        State::with_track_size(TRACK_SIZE)
    }

    /// An empty state with another track size. Production uses [`TRACK_SIZE`]; tests use tiny
    /// tracks so a reference model can hold whole volumes.
    pub fn with_track_size(track_size: u32) -> State {
        assert!(track_size > 0, "track size must be positive");
        assert!(
            track_size.is_multiple_of(crate::track::blocks_per_track(track_size)),
            "a track holds whole blocks"
        );
        State::from_records(
            Globals {
                track_size,
                next_volume_id: 1,
                last_time: Timestamp(0),
                last_stamp: Timestamp(0),
                stamp_term: 0,
            },
            Vec::new(),
        )
    }

    /// Rebuilds a state from its persisted parts.
    pub fn from_records(globals: Globals, records: impl IntoIterator<Item = VolumeRecord>) -> State {
        let mut state = State {
            globals,
            records: BTreeMap::new(),
            hosts: BTreeMap::new(),
            names: BTreeMap::new(),
            thaw_queue: BTreeSet::new(),
            draining: BTreeSet::new(),
            meta_digest: 0,
            content_digest: 0,
            hosts_digest: digest::hosts_hash(&BTreeMap::new()),
        };
        for record in records {
            state.index(&record);
            state.meta_digest = state.meta_digest.wrapping_add(digest::record_hash(&record));
            state.content_digest = state.content_digest.wrapping_add(record.content_digest);
            state.records.insert(record.volume.id, record);
        }
        state
    }

    /// Adds the persisted hosts to a state rebuilt by [`State::from_records`].
    pub fn with_hosts(mut self, hosts: impl IntoIterator<Item = Host>) -> State {
        self.hosts = hosts.into_iter().map(|h| (h.name.clone(), h)).collect();
        self.hosts_digest = digest::hosts_hash(&self.hosts);
        self
    }

    /// The hosts as storage persists them.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// Every host with its mapped volumes by name (`lshost`).
    pub fn host_infos(&self) -> Vec<HostInfo> {
        self.hosts
            .values()
            .map(|h| HostInfo {
                name: h.name.clone(),
                identity: h.identity.clone(),
                volumes: h
                    .volumes
                    .iter()
                    .map(|(id, access)| (self.name(*id).to_string(), *access))
                    .collect(),
            })
            .collect()
    }

    /// What a client that proved `identity` (or nothing) may do with a volume: everything while
    /// no host is defined; otherwise only what its host's mapping allows, and nothing for a
    /// client no host names.
    pub fn access(&self, identity: Option<&HostIdentity>, volume: VolumeId) -> Option<Access> {
        if self.hosts.is_empty() {
            return Some(Access::ReadWrite);
        }
        let identity = identity?;
        self.hosts
            .values()
            .find(|h| &h.identity == identity)
            .and_then(|h| h.volumes.get(&volume).copied())
    }

    pub(crate) fn index(&mut self, record: &VolumeRecord) {
        self.names.insert(record.volume.name.clone(), record.volume.id);
        if let Some(until) = record.volume.frozen_until {
            self.thaw_queue.insert((until, record.volume.id));
        }
        self.set_draining(record.volume.id, record.drains());
    }

    pub(crate) fn set_draining(&mut self, id: VolumeId, drains: bool) {
        if drains {
            self.draining.insert(id);
        } else {
            self.draining.remove(&id);
        }
    }

    pub(crate) fn unindex(&mut self, record: &VolumeRecord) {
        self.names.remove(&record.volume.name);
        self.draining.remove(&record.volume.id);
        if let Some(until) = record.volume.frozen_until {
            self.thaw_queue.remove(&(until, record.volume.id));
        }
    }

    pub fn globals(&self) -> Globals {
        self.globals
    }

    pub fn track_size(&self) -> u32 {
        self.globals.track_size
    }

    pub fn record(&self, id: VolumeId) -> Option<&VolumeRecord> {
        self.records.get(&id)
    }

    /// The relationship whose target is `target`, if any.
    pub fn incoming(&self, target: VolumeId) -> Option<&Relationship> {
        self.records.get(&target).and_then(|r| r.incoming.as_ref())
    }

    pub fn records(&self) -> impl Iterator<Item = &VolumeRecord> {
        self.records.values()
    }

    pub fn volume_id(&self, name: &str) -> Option<VolumeId> {
        self.names.get(name).copied()
    }

    /// Whether hosts may not write `name`: the target of a `--tgtinhibit` relationship.
    pub fn is_write_inhibited(&self, name: &str) -> bool {
        self.volume_id(name)
            .and_then(|id| self.incoming(id))
            .is_some_and(|r| r.target_write_inhibit)
    }

    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volume_id(name).map(|id| &self.records[&id].volume)
    }

    pub(crate) fn name(&self, id: VolumeId) -> &str {
        &self.records[&id].volume.name
    }

    pub(crate) fn pair_name(&self, rel: &Relationship) -> String {
        format!("{}:{}", self.name(rel.source), self.name(rel.target))
    }

    /// The digest of the whole state (metadata and every track), comparable across replicas.
    pub fn digest(&self) -> u64 {
        self.meta_digest
            .wrapping_add(self.content_digest)
            .wrapping_add(self.hosts_digest)
            .wrapping_add(digest::globals_hash(&self.globals))
    }

    /// The digest of the metadata alone, every bitmap bit included (see [`MetadataDigest`]).
    pub fn metadata_digest(&self) -> MetadataDigest {
        MetadataDigest::of(self)
    }

    /// Recomputes the digest from scratch (reads and hashes every stored track): for tests and
    /// audits that check the incremental one and the stored block hashes.
    pub fn recompute_digest<R: TrackReader>(&self, tracks: &R) -> Result<u64, R::Error> {
        let ts = self.globals.track_size;
        let bs = crate::track::block_size(ts) as usize;
        let mut meta = 0u64;
        let mut content = 0u64;
        let mut data = vec![0; ts as usize];
        for record in self.records.values() {
            meta = meta.wrapping_add(digest::record_hash(record));
            let id = record.volume.id;
            let mut from = 0;
            while let Some(track) = tracks.next_stored(id, from)? {
                tracks.read_into(id, track, 0, &mut data)?;
                let mut sums = [0; crate::track::BLOCKS_PER_TRACK];
                digest::hash_blocks(track, 0, &data, bs, &mut sums);
                content = content.wrapping_add(digest::track_hash(id, track, &sums));
                match track.checked_add(1) {
                    Some(next) => from = next,
                    None => break,
                }
            }
        }
        Ok(meta
            .wrapping_add(content)
            .wrapping_add(digest::hosts_hash(&self.hosts))
            .wrapping_add(digest::globals_hash(&self.globals)))
    }

    pub(crate) fn track_count(&self, size: u64) -> u32 {
        u32::try_from(size / u64::from(self.globals.track_size)).expect("volume sizes are validated")
    }

    /// Which volume's stored track holds the bytes a host reading `track` of `volume` must see:
    /// the volume itself, or the source of its relationship while the track is out of sync.
    /// No cascading, so one hop is enough.
    pub fn resolve_read(&self, volume: VolumeId, track: u32) -> VolumeId {
        match self.incoming(volume) {
            Some(rel) if rel.out_of_sync.contains(track) => rel.source,
            _ => volume,
        }
    }

    /// Reads `length` bytes at `offset` of a volume as a host sees them. The caller checks the
    /// range (see [`State::check_range`]).
    pub fn read<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, R::Error> {
        let mut out = vec![0; length as usize];
        self.read_into(tracks, volume, offset, &mut out)?;
        Ok(out)
    }

    /// Fills `out` with the volume's bytes from `offset` on, as a host sees them: only the
    /// blocks asked for are read. The caller checks the range.
    pub fn read_into<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), R::Error> {
        let ts = u64::from(self.globals.track_size);
        let mut done = 0usize;
        while done < out.len() {
            let pos = offset + done as u64;
            let track = (pos / ts) as u32;
            let within = (pos % ts) as usize;
            let take = (ts as usize - within).min(out.len() - done);
            tracks.read_into(
                self.resolve_read(volume, track),
                track,
                within,
                &mut out[done..done + take],
            )?;
            done += take;
        }
        Ok(())
    }

    /// How `length` bytes at `offset` of a volume are allocated, track by track, from the state
    /// alone (no track data is read): a track is allocated when the track its reads resolve to
    /// is stored, so a target's tracks still shared with the source report the source's. Stops
    /// once about `budget` stored tracks have been looked at, so the extents may cover less than
    /// was asked (never nothing); the caller checks the range.
    pub fn allocation<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        offset: u64,
        length: u64,
        budget: u32,
    ) -> Result<Vec<Extent>, R::Error> {
        let ts = u64::from(self.globals.track_size);
        let end = offset + length;
        let last = ((end - 1) / ts) as u32;
        let mut looked = 0u32;
        // Runs of tracks: (first, end, allocated).
        let mut runs: Vec<(u32, u32, bool)> = Vec::new();
        let push = |runs: &mut Vec<(u32, u32, bool)>, from: u32, to: u32, allocated: bool| match runs.last_mut() {
            Some(run) if run.2 == allocated && run.1 == from => run.1 = to,
            _ => runs.push((from, to, allocated)),
        };
        let mut track = (offset / ts) as u32;
        while track <= last {
            match self.next_allocated(tracks, volume, track, last, &mut looked, budget)? {
                Allocated::At(found) => {
                    if found > track {
                        push(&mut runs, track, found, false);
                    }
                    push(&mut runs, found, found + 1, true);
                    track = found + 1;
                }
                Allocated::NoneBefore(bound) => {
                    push(&mut runs, track, bound, false);
                    track = bound;
                }
            }
            if looked >= budget {
                break;
            }
        }
        Ok(runs
            .into_iter()
            .map(|(from, to, allocated)| {
                let start = (u64::from(from) * ts).max(offset);
                let stop = (u64::from(to) * ts).min(end);
                Extent {
                    length: stop - start,
                    allocated,
                }
            })
            .collect())
    }

    /// The first allocated track in `from..=last` — one this volume stores and does not share,
    /// or one the source stores and this volume shares — or, when the budget of stored tracks
    /// to look at runs out first, how far the search got. A search always gets past `from`.
    fn next_allocated<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        from: u32,
        last: u32,
        looked: &mut u32,
        budget: u32,
    ) -> Result<Allocated, R::Error> {
        let relationship = self.incoming(volume);
        let shared = |track: u32| relationship.is_some_and(|r| r.out_of_sync.contains(track));
        // Nothing of the source's is allocated before `bound`, unless `theirs`.
        let mut bound = last + 1;
        let mut theirs = None;
        if let Some(rel) = relationship {
            // Leapfrog over the two sets: the source's stored tracks, the shared ones.
            let mut at = from;
            loop {
                if *looked >= budget && at > from {
                    bound = at;
                    break;
                }
                let Some(stored) = tracks.next_stored(rel.source, at)?.filter(|t| *t <= last) else {
                    break;
                };
                *looked += 1;
                let Some(next_shared) = rel.out_of_sync.first_from(stored).filter(|t| *t <= last) else {
                    break;
                };
                if next_shared == stored {
                    theirs = Some(stored);
                    break;
                }
                at = next_shared;
            }
        }
        // This volume's own tracks only matter before what the source answered.
        let limit = theirs.map_or(bound, |t| t.min(bound));
        let mut at = from;
        while at < limit {
            if *looked >= budget && at > from {
                return Ok(Allocated::NoneBefore(at));
            }
            let Some(stored) = tracks.next_stored(volume, at)?.filter(|t| *t < limit) else {
                break;
            };
            *looked += 1;
            if !shared(stored) {
                return Ok(Allocated::At(stored));
            }
            at = stored + 1;
        }
        Ok(match theirs {
            Some(t) if t < bound => Allocated::At(t),
            _ => Allocated::NoneBefore(limit),
        })
    }

    /// Checks that a host request fits the volume, and that `name` still names the volume the
    /// host opened (`opened`, when it opened one).
    pub fn check_range(
        &self,
        name: &str,
        opened: Option<VolumeId>,
        offset: u64,
        length: u64,
    ) -> Result<VolumeId, crate::CommandError> {
        let id = self
            .volume_id(name)
            .ok_or_else(|| crate::CommandError::VolumeNotFound { name: name.to_string() })?;
        if opened.is_some_and(|opened| opened != id) {
            return Err(crate::CommandError::VolumeReplaced { name: name.to_string() });
        }
        let size = self.records[&id].volume.size;
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(id),
            _ => Err(crate::CommandError::OutOfRange {
                volume: name.to_string(),
                offset,
                length,
                size,
            }),
        }
    }

    /// Whether zeroing the volume may copy tracks first: it is a source, and its targets may
    /// still share what it stores. `None` if there is no such volume.
    pub fn zeroing_copies(&self, volume: VolumeId) -> Option<bool> {
        self.records.get(&volume).map(|r| !r.volume.targets.is_empty())
    }

    /// Whether hosts may write the volume (false for the target of a `--tgtinhibit` relationship).
    pub fn writable(&self, volume: VolumeId) -> bool {
        !self.incoming(volume).is_some_and(|r| r.target_write_inhibit)
    }

    pub fn volumes(&self) -> Vec<VolumeInfo> {
        self.names
            .values()
            .map(|id| {
                let record = &self.records[id];
                let v = &record.volume;
                VolumeInfo {
                    name: v.name.clone(),
                    size: v.size,
                    state: v.state(),
                    source_of: v.targets.iter().map(|t| self.name(*t).to_string()).collect(),
                    target_of: record.incoming.as_ref().map(|r| self.name(r.source).to_string()),
                }
            })
            .collect()
    }

    /// Relationships touching any of `volumes` (all of them if empty), ordered by source, target.
    pub fn relationships(&self, volumes: &[String]) -> Vec<RelationshipInfo> {
        let mut out: Vec<RelationshipInfo> = self
            .records
            .values()
            .filter_map(|r| r.incoming.as_ref())
            .filter(|rel| {
                volumes.is_empty()
                    || volumes
                        .iter()
                        .any(|v| v == self.name(rel.source) || v == self.name(rel.target))
            })
            .map(|rel| RelationshipInfo {
                source: self.name(rel.source).to_string(),
                target: self.name(rel.target).to_string(),
                seqnum: rel.seqnum,
                state: rel.state(),
                persistent: rel.persistent,
                recording: rel.recording,
                background_copy: rel.background_copy,
                target_write_inhibit: rel.target_write_inhibit,
                frozen: self.records[&rel.source].volume.frozen_until.is_some(),
                out_of_sync_tracks: rel.out_of_sync.len(),
                total_tracks: rel.out_of_sync.tracks(),
                created_at: rel.created_at.rfc3339(),
                synced_at: rel.synced_at.rfc3339(),
            })
            .collect();
        out.sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
        out
    }

    /// Relationships whose background copy has work left, for the leader's copy scheduler.
    pub fn copy_work(&self) -> Vec<CopyWork> {
        self.records
            .values()
            .filter_map(|r| r.incoming.as_ref())
            .filter(|rel| rel.background_copy && !rel.out_of_sync.is_empty())
            .map(|rel| CopyWork {
                source: self.name(rel.source).to_string(),
                target: self.name(rel.target).to_string(),
                remaining: rel.out_of_sync.len(),
            })
            .collect()
    }

    /// When the next automatic thaw is due, if any volume is frozen (on the state's clock).
    pub fn next_thaw(&self) -> Option<Timestamp> {
        self.thaw_queue.first().map(|(t, _)| *t)
    }

    /// Whether a thawed volume still has held writes to release (the leader proposes ticks).
    pub fn releasing_held_writes(&self) -> bool {
        !self.draining.is_empty()
    }

    /// What the state's clock would read for an entry the current term's leader stamps `time`.
    pub fn clock_at(&self, time: Timestamp) -> Timestamp {
        self.globals.advance_clock(Stamp {
            time,
            term: self.globals.stamp_term,
        })
    }

    /// Whether the tag's write is waiting in a freeze queue.
    pub fn is_held(&self, volume: &str, tag: u64) -> bool {
        self.volume_id(volume)
            .is_some_and(|id| self.records[&id].held_writes.contains_tag(tag))
    }
}
