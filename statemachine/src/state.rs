//! The replicated state: volume records (each with the relationship it is the target of),
//! hosts, the globals, the indexes derived from them and the running digests. Track contents
//! live in storage, not here. The queries the node asks are `impl State` blocks in files of
//! their own: `reads.rs`, `allocation.rs`, `listing.rs`, `scheduling.rs`, `metadata_digest.rs`.

use crate::digest;
use crate::globals::Globals;
use crate::hosts::{Access, Host, HostIdentity};
use crate::mirror::PprcPath;
use crate::record::VolumeRecord;
use crate::relationship::Relationship;
use crate::timestamp::Timestamp;
use crate::track::{VolumeId, TRACK_SIZE};
use crate::volume::Volume;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The replicated FlashCopy state. Change it only through [`crate::apply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "StateParts", into = "StateParts")]
pub struct State {
    pub(crate) globals: Globals,
    pub(crate) records: BTreeMap<VolumeId, VolumeRecord>,
    /// Hosts by name, with the volumes mapped to them.
    pub(crate) hosts: BTreeMap<String, Host>,
    /// This cluster's id, as a remote cluster's path names it (chosen by the first leader).
    pub(crate) cluster_id: Option<String>,
    /// Metro Mirror paths by remote cluster id.
    pub(crate) paths: BTreeMap<String, PprcPath>,
    // Derived from the records (rebuilt on load):
    pub(crate) names: BTreeMap<String, VolumeId>,
    pub(crate) thaw_queue: BTreeSet<(Timestamp, VolumeId)>,
    /// Thawed volumes whose held writes are still being released.
    pub(crate) draining: BTreeSet<VolumeId>,
    pub(crate) meta_digest: u64,
    pub(crate) content_digest: u64,
    pub(crate) hosts_digest: u64,
    pub(crate) paths_digest: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct StateParts {
    globals: Globals,
    records: Vec<VolumeRecord>,
    hosts: Vec<Host>,
    cluster_id: Option<String>,
    paths: Vec<PprcPath>,
}

impl From<StateParts> for State {
    fn from(parts: StateParts) -> State {
        State::from_records(parts.globals, parts.records)
            .with_hosts(parts.hosts)
            .with_site(parts.cluster_id, parts.paths)
    }
}

impl From<State> for StateParts {
    fn from(state: State) -> StateParts {
        StateParts {
            globals: state.globals,
            records: state.records.into_values().collect(),
            hosts: state.hosts.into_values().collect(),
            cluster_id: state.cluster_id,
            paths: state.paths.into_values().collect(),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
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
            cluster_id: None,
            paths: BTreeMap::new(),
            names: BTreeMap::new(),
            thaw_queue: BTreeSet::new(),
            draining: BTreeSet::new(),
            meta_digest: 0,
            content_digest: 0,
            hosts_digest: digest::hosts_hash(&BTreeMap::new()),
            paths_digest: digest::paths_hash(None, &BTreeMap::new()),
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

    /// Adds the persisted cluster id and mirror paths to a state rebuilt by
    /// [`State::from_records`].
    pub fn with_site(mut self, cluster_id: Option<String>, paths: impl IntoIterator<Item = PprcPath>) -> State {
        self.cluster_id = cluster_id;
        self.paths = paths.into_iter().map(|p| (p.remote_cluster.clone(), p)).collect();
        self.paths_digest = digest::paths_hash(self.cluster_id.as_deref(), &self.paths);
        self
    }

    /// This cluster's id (`None` until its first leader named it).
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The hosts as storage persists them.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
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

    /// Whether hosts may not write `name`: the target of a `--tgtinhibit` relationship, or a
    /// Metro Mirror secondary.
    pub fn is_write_inhibited(&self, name: &str) -> bool {
        self.volume_id(name)
            .is_some_and(|id| self.incoming(id).is_some_and(|r| r.target_write_inhibit) || self.is_mirror_secondary(id))
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
            .wrapping_add(self.paths_digest)
            .wrapping_add(digest::globals_hash(&self.globals))
    }

    pub(crate) fn track_count(&self, size: u64) -> u32 {
        u32::try_from(size / u64::from(self.globals.track_size)).expect("volume sizes are validated")
    }
}
