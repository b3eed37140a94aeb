//! What `lsvol`, `lsflash` and `lshost` show: one row per volume, relationship or host. These
//! types are also the admin API's JSON bodies.

use crate::hosts::HostInfo;
use crate::relationship::RelationshipState;
use crate::state::State;
use crate::track::VolumeId;
use crate::volume::VolumeState;
use serde::{Deserialize, Serialize};

/// One row of `lsvol`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub size: u64,
    /// Bytes of stored tracks: the space the volume uses (thin: never-written tracks use none),
    /// with the old tracks a source keeps once for several of its targets to share.
    pub used: u64,
    /// For a target, bytes of tracks still shared with its source (out of sync): what a
    /// withdraw now would leave it without.
    pub shared: u64,
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
    /// MiB/s of background copy at most (`None`: as fast as the node allows).
    pub copy_rate: Option<u32>,
    pub target_write_inhibit: bool,
    /// An increment is revertible (`setflashrevertible`): `commitflash` or `revertflash` next.
    pub revertible: bool,
    pub frozen: bool,
    pub out_of_sync_tracks: u64,
    pub total_tracks: u32,
    pub created_at: String,
    pub synced_at: String,
    /// The cascade this relationship is in, from its first source to this target (`[a, b]`
    /// alone; `[a, b, c]` for b:c when a:b exists).
    pub chain: Vec<String>,
}

impl State {
    /// Every volume by name (`lsvol`).
    pub fn volumes(&self) -> Vec<VolumeInfo> {
        self.names
            .values()
            .map(|id| {
                let record = &self.records[id];
                let v = &record.volume;
                let track_size = u64::from(self.track_size());
                VolumeInfo {
                    name: v.name.clone(),
                    size: v.size,
                    used: (record.stored_tracks + record.kept_tracks) * track_size,
                    shared: record.incoming.as_ref().map_or(0, |r| r.out_of_sync.len()) * track_size,
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
                copy_rate: rel.copy_rate,
                target_write_inhibit: rel.target_write_inhibit,
                revertible: rel.revertible.is_some(),
                frozen: self.records[&rel.source].volume.frozen_until.is_some(),
                out_of_sync_tracks: rel.out_of_sync.len(),
                total_tracks: rel.out_of_sync.tracks(),
                created_at: rel.created_at.rfc3339(),
                synced_at: rel.synced_at.rfc3339(),
                chain: self.cascade_of(rel.target),
            })
            .collect();
        out.sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
        out
    }

    /// The names of a volume's cascade, from its first source down to it.
    fn cascade_of(&self, volume: VolumeId) -> Vec<String> {
        let mut names: Vec<String> = self.upstream(volume).map(|v| self.name(v).to_string()).collect();
        names.reverse();
        names
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
}

/// One row of `lspprc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    pub volume: String,
    /// `primary` or `secondary`.
    pub role: String,
    pub remote_cluster: String,
    pub remote_volume: String,
    /// The DS CLI's state name: `copy-pending`, `full-duplex`, `suspended`, or at the secondary
    /// `target-copy-pending`, `target-full-duplex`, `target-suspended`.
    pub state: String,
    /// Why it is suspended.
    pub reason: Option<String>,
    /// Primary: tracks that may differ between the sites (to copy, or sent and not confirmed).
    pub out_of_sync_tracks: u64,
    /// Secondary: whether its image is the primary's as of one point in its write order.
    pub consistent: Option<bool>,
    pub generation: u64,
    /// Primary: the last sequence number sent; the highest the secondary confirmed (at the
    /// secondary: applied).
    pub sent: u64,
    pub confirmed: u64,
}

/// One row of `lspprcpath` as the state holds it (the node adds what the link costs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathInfo {
    pub remote_cluster: String,
    pub url: String,
    pub authenticated: bool,
    /// Volumes here in a pair over this path.
    pub pairs: usize,
}

impl State {
    /// Every Metro Mirror pair with a volume here, by volume name (`lspprc`).
    pub fn mirror_pairs(&self, volumes: &[String]) -> Vec<PairInfo> {
        self.names
            .iter()
            .filter(|(name, _)| volumes.is_empty() || volumes.contains(name))
            .filter_map(|(name, id)| {
                let m = self.records[id].mirror.as_ref()?;
                let primary = m.role == crate::mirror::PairRole::Primary;
                Some(PairInfo {
                    volume: name.clone(),
                    role: if primary { "primary" } else { "secondary" }.into(),
                    remote_cluster: m.remote_cluster.clone(),
                    remote_volume: m.remote_volume.clone(),
                    state: m.state_name(),
                    reason: match m.state {
                        crate::mirror::PairState::Suspended(r) => Some(r.to_string()),
                        _ => None,
                    },
                    out_of_sync_tracks: if primary { m.tracks_out_of_sync() } else { 0 },
                    consistent: (!primary).then_some(m.consistent),
                    generation: m.generation,
                    sent: m.sent,
                    confirmed: m.confirmed,
                })
            })
            .collect()
    }

    /// Every Metro Mirror path (`lspprcpath`).
    pub fn mirror_paths(&self) -> Vec<PathInfo> {
        self.paths
            .values()
            .map(|p| PathInfo {
                remote_cluster: p.remote_cluster.clone(),
                url: p.url.clone(),
                authenticated: p.token.is_some(),
                pairs: self
                    .records
                    .values()
                    .filter(|r| r.mirror.as_ref().is_some_and(|m| m.remote_cluster == p.remote_cluster))
                    .count(),
            })
            .collect()
    }
}
