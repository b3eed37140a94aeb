//! The state digest: a wrapping sum of per-item hashes, so an apply updates it in time
//! proportional to what it changed, and two replicas compare in O(1).
//!
//! Covered: every volume record (volume metadata, its incoming relationship with its flags,
//! times and bitmap *cardinalities*, its held writes) and the content of every track. Bit
//! positions are not hashed (that would cost O(bitmap) per write); a replica whose bits diverged
//! shows it in track content as soon as the tracks are copied.

use crate::state::{State, VolumeRecord};
use crate::track::{is_zero, BlockSums, VolumeId};
use crate::Globals;
use serde::Serialize;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Hash of one block's content at its place in a track. Zero for a block of zeros, so a block
/// never written and a block written with zeros digest alike. Not seeded by the volume, so a
/// copied track carries its sums to the target unchanged.
pub(crate) fn block_hash(track: u32, block: u32, data: &[u8]) -> u64 {
    if is_zero(data) {
        0
    } else {
        xxh3_64_with_seed(data, (u64::from(track) << 8) | u64::from(block))
    }
}

/// Hashes `data` (whole blocks of `block_size` bytes) as blocks `first_block..` of `track`
/// into `sums`.
pub(crate) fn hash_blocks(track: u32, first_block: u32, data: &[u8], block_size: usize, sums: &mut BlockSums) {
    for (i, chunk) in data.chunks(block_size).enumerate() {
        let block = first_block + i as u32;
        sums[block as usize] = block_hash(track, block, chunk);
    }
}

/// Contribution of one stored track's content, from its block hashes. Zero for a track of zeros.
pub(crate) fn track_hash(volume: VolumeId, track: u32, sums: &BlockSums) -> u64 {
    let total = sums.iter().fold(0u64, |acc, s| acc.wrapping_add(*s));
    if total == 0 {
        0
    } else {
        xxh3_64_with_seed(&total.to_le_bytes(), volume.0.rotate_left(32) ^ u64::from(track))
    }
}

/// Contribution of one volume record's metadata.
pub(crate) fn record_hash(record: &VolumeRecord) -> u64 {
    #[derive(Serialize)]
    struct View<'a> {
        volume: &'a crate::volume::Volume,
        relationship: Option<RelationshipView>,
        held: (usize, u64),
    }
    #[derive(Serialize)]
    struct RelationshipView {
        source: u64,
        flags: [bool; 5],
        seqnum: u32,
        out_of_sync: u64,
        source_changes: u64,
        target_changes: u64,
        created_at: u64,
        synced_at: u64,
    }
    let view = View {
        volume: &record.volume,
        relationship: record.incoming.as_ref().map(|r| RelationshipView {
            source: r.source.0,
            flags: r.flags(),
            seqnum: r.seqnum,
            out_of_sync: r.out_of_sync.len(),
            source_changes: r.source_changes.len(),
            target_changes: r.target_changes.len(),
            created_at: r.created_at.0,
            synced_at: r.synced_at.0,
        }),
        held: record.held_writes.digest(),
    };
    xxh3_64(&encode(&view))
}

/// The hosts' contribution (hosts are few: hashed whole whenever they change).
pub(crate) fn hosts_hash(hosts: &BTreeMap<String, crate::hosts::Host>) -> u64 {
    xxh3_64(&encode(hosts))
}

/// The globals' contribution. `last_time` is left out: it moves with every entry, refused ones
/// too, and any divergence in it shows in the timestamps recorded in volume records.
pub(crate) fn globals_hash(globals: &crate::Globals) -> u64 {
    xxh3_64(
        &[
            globals.next_volume_id.to_le_bytes().as_slice(),
            &globals.track_size.to_le_bytes(),
        ]
        .concat(),
    )
}

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
    pub(crate) fn of(state: &State) -> MetadataDigest {
        #[derive(Serialize)]
        struct View<'a> {
            volume: &'a crate::volume::Volume,
            relationship: &'a Option<crate::relationship::Relationship>,
            held: Vec<(u64, &'a str, u64, u64, u64)>,
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
                };
                (record.volume.name.clone(), xxh3_64(&encode(&view)))
            })
            .collect();
        let hosts = hosts_hash(&state.hosts);
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

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("in-memory encode cannot fail")
}
