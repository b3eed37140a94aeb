//! Digests computed from scratch, for audits: the metadata digest that `audit verify` compares
//! between a journal replay and the live state, and the whole digest recomputed from the stored
//! tracks. O(state): never on the apply path (that keeps the running digest, see `digest.rs`).

use crate::digest::{self, encode, hosts_hash};
use crate::globals::Globals;
use crate::state::State;
use crate::track::TrackReader;
use serde::Serialize;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

/// The metadata of a state — volumes, relationships with every bit of their bitmaps, held
/// writes (without their bytes), globals — hashed per volume. It is what a journal replay
/// rebuilds, so `audit verify` compares it between the replay and the live state. Computed from
/// scratch: O(metadata), for audits, not for every apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataDigest {
    pub total: u64,
    pub globals: Globals,
    /// Per volume name.
    pub volumes: BTreeMap<String, u64>,
    /// Hosts and their mappings.
    pub hosts: u64,
}

impl MetadataDigest {
    fn of(state: &State) -> MetadataDigest {
        #[derive(Serialize)]
        struct View<'a> {
            volume: &'a crate::volume::Volume,
            relationship: &'a Option<crate::relationship::Relationship>,
            held: Vec<(u64, &'a str, u64, u64, u64)>,
            stored_tracks: u64,
            kept_tracks: u64,
            kept_sweep: Option<u32>,
            mirror: &'a Option<crate::mirror::MirrorPair>,
        }
        let volumes: BTreeMap<String, u64> = state
            .records()
            .map(|record| {
                let view = View {
                    volume: &record.volume,
                    relationship: &record.incoming,
                    held: record
                        .held_writes
                        .iter()
                        .map(|h| {
                            (
                                h.seq,
                                h.write.volume.as_str(),
                                h.write.offset,
                                h.write.data.len(),
                                h.write.tag,
                            )
                        })
                        .collect(),
                    stored_tracks: record.stored_tracks,
                    kept_tracks: record.kept_tracks,
                    kept_sweep: record.kept_sweep,
                    mirror: &record.mirror,
                };
                (record.volume.name.clone(), xxh3_64(&encode(&view)))
            })
            .collect();
        // Hosts and mirror paths (without their tokens) together.
        let hosts = hosts_hash(&state.hosts) ^ digest::paths_hash(state.cluster_id.as_deref(), &state.paths);
        let total = xxh3_64(&encode(&(state.globals(), &volumes, hosts)));
        MetadataDigest {
            total,
            globals: state.globals(),
            volumes,
            hosts,
        }
    }

    /// What differs between two states' metadata, one sentence each (empty if equal).
    pub fn differences(&self, other: &MetadataDigest, names: (&str, &str)) -> Vec<String> {
        let mut out = Vec::new();
        let (a, b) = (&self.globals, &other.globals);
        if a.track_size != b.track_size {
            out.push(format!(
                "track size: {} {} vs {} {}",
                a.track_size, names.0, b.track_size, names.1
            ));
        }
        if a.next_volume_id != b.next_volume_id {
            out.push(format!(
                "volumes ever created: {} {} vs {} {}",
                a.next_volume_id - 1,
                names.0,
                b.next_volume_id - 1,
                names.1
            ));
        }
        if (a.last_time, a.last_stamp, a.stamp_term) != (b.last_time, b.last_stamp, b.stamp_term) {
            out.push(format!(
                "clock: time {}, latest stamp {} (term {}) {} vs time {}, latest stamp {} (term {}) {}",
                a.last_time, a.last_stamp, a.stamp_term, names.0, b.last_time, b.last_stamp, b.stamp_term, names.1
            ));
        }
        for (name, hash) in &self.volumes {
            match other.volumes.get(name) {
                None => out.push(format!("volume {name}: only in the {} state", names.0)),
                Some(h) if h != hash => out.push(format!(
                    "volume {name}: its metadata (size, relationship, bitmaps or held writes) differs"
                )),
                Some(_) => {}
            }
        }
        for name in other.volumes.keys().filter(|n| !self.volumes.contains_key(*n)) {
            out.push(format!("volume {name}: only in the {} state", names.1));
        }
        if self.hosts != other.hosts {
            out.push("hosts or their volume mappings differ".to_string());
        }
        out
    }
}

impl State {
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
            // Its own tracks and the old ones it keeps for its targets.
            for id in [record.volume.id, record.volume.id.kept()] {
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
        }
        Ok(meta
            .wrapping_add(content)
            .wrapping_add(digest::hosts_hash(&self.hosts))
            .wrapping_add(digest::paths_hash(self.cluster_id.as_deref(), &self.paths))
            .wrapping_add(digest::globals_hash(&self.globals)))
    }
}
