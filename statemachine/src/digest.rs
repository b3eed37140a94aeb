//! The state digest: a wrapping sum of per-item hashes, so an apply updates it in time
//! proportional to what it changed, and two replicas compare in O(1).
//!
//! Covered: every volume record (volume metadata, its incoming relationship with its flags,
//! times and bitmap *cardinalities*, its held writes) and the content of every track. Bit
//! positions are not hashed (that would cost O(bitmap) per write); a replica whose bits diverged
//! shows it in track content as soon as the tracks are copied.

use crate::state::VolumeRecord;
use crate::track::{is_zero, VolumeId};
use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Contribution of one track's content. Zero for a track of zeros, so a never-written track and
/// a track written with zeros digest alike (both are absent in storage).
pub(crate) fn track_hash(volume: VolumeId, track: u32, data: &[u8]) -> u64 {
    if is_zero(data) {
        0
    } else {
        xxh3_64_with_seed(data, volume.0.rotate_left(32) ^ u64::from(track))
    }
}

/// Contribution of one volume record's metadata.
pub(crate) fn record_hash(record: &VolumeRecord) -> u64 {
    #[derive(Serialize)]
    struct View<'a> {
        volume: &'a crate::volume::Volume,
        relationship: Option<RelationshipView>,
        held: Vec<(u64, u64, u64)>,
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
        held: record
            .held_writes
            .iter()
            .map(|h| (h.write.tag, h.write.offset, h.write.data.len()))
            .collect(),
    };
    let bytes =
        bincode::serde::encode_to_vec(&view, bincode::config::standard()).expect("in-memory encode cannot fail");
    xxh3_64(&bytes)
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
