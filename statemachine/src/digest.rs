//! The state digest: a wrapping sum of per-item hashes, so an apply updates it in time
//! proportional to what it changed, and two replicas compare in O(1).
//!
//! Covered: every volume record (volume metadata, its incoming relationship with its flags,
//! times and bitmap *cardinalities*, its held writes) and the content of every track. Bit
//! positions are not hashed (that would cost O(bitmap) per write); a replica whose bits diverged
//! shows it in track content as soon as the tracks are copied.

use crate::globals::Globals;
use crate::record::VolumeRecord;
use crate::track::{is_zero, BlockSums, VolumeId};
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
        mirror: Option<MirrorView<'a>>,
    }
    #[derive(Serialize)]
    struct MirrorView<'a> {
        role: crate::mirror::PairRole,
        remote: (&'a str, &'a str),
        generation: u64,
        state: crate::mirror::PairState,
        bitmaps: [u64; 3],
        epochs: (u64, u64),
        sent: u64,
        confirmed: u64,
        consistent: bool,
    }
    #[derive(Serialize)]
    struct RelationshipView {
        source: u64,
        flags: [bool; 6],
        copy_rate: Option<u32>,
        seqnum: u32,
        out_of_sync: u64,
        kept: (u64, u64),
        source_changes: u64,
        target_changes: u64,
        created_at: u64,
        synced_at: u64,
        /// A revertible increment: the previous sequence number, time and change counts.
        revertible: Option<(u32, u64, u64, u64)>,
    }
    let view = View {
        volume: &record.volume,
        relationship: record.incoming.as_ref().map(|r| RelationshipView {
            source: r.source.0,
            flags: r.flags(),
            copy_rate: r.copy_rate,
            seqnum: r.seqnum,
            out_of_sync: r.out_of_sync.len(),
            kept: (r.kept.len(), r.kept_by.0),
            source_changes: r.source_changes.len(),
            target_changes: r.target_changes.len(),
            created_at: r.created_at.0,
            synced_at: r.synced_at.0,
            revertible: r
                .revertible
                .as_ref()
                .map(|p| (p.seqnum, p.synced_at.0, p.source_changes.len(), p.target_changes.len())),
        }),
        held: record.held_writes.digest(),
        mirror: record.mirror.as_ref().map(|m| MirrorView {
            role: m.role,
            remote: (&m.remote_cluster, &m.remote_volume),
            generation: m.generation,
            state: m.state,
            bitmaps: [m.out_of_sync.len(), m.older.len(), m.recent.len()],
            epochs: (m.older_from, m.recent_from),
            sent: m.sent,
            confirmed: m.confirmed,
            consistent: m.consistent,
        }),
    };
    xxh3_64(&encode(&view))
}

/// The hosts' contribution (hosts are few: hashed whole whenever they change).
pub(crate) fn hosts_hash(hosts: &BTreeMap<String, crate::hosts::Host>) -> u64 {
    xxh3_64(&encode(hosts))
}

/// The cluster id's and the mirror paths' contribution: their remote ids and URLs, not their tokens (the journal
/// keeps tokens redacted, and its replay must give the same digest).
pub(crate) fn paths_hash(cluster_id: Option<&str>, paths: &BTreeMap<String, crate::mirror::PprcPath>) -> u64 {
    let view: Vec<(&str, &str, Option<&str>)> = paths
        .values()
        .map(|p| (p.remote_cluster.as_str(), p.url.as_str(), p.ca.as_deref()))
        .collect();
    xxh3_64(&encode(&(cluster_id, view)))
}

/// The globals' contribution. `last_time` is left out: it moves with every entry, refused ones
/// too, and any divergence in it shows in the timestamps recorded in volume records.
pub(crate) fn globals_hash(globals: &Globals) -> u64 {
    xxh3_64(
        &[
            globals.next_volume_id.to_le_bytes().as_slice(),
            &globals.track_size.to_le_bytes(),
        ]
        .concat(),
    )
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("in-memory encode cannot fail")
}
