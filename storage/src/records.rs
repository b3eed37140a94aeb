//! How volume records are persisted in the `meta` column family. A record's heavy parts live
//! under their own keys, so an apply rewrites only what it changed:
//!
//! - `r` + volume id → the record without bitmaps and held writes (`StoredRecord`);
//! - `b` + target id + bitmap kind + block → the bits of one 65,536-track block of a
//!   relationship bitmap (absent = no bits);
//! - `h` + volume id + seq → one held write.

use crate::codec::{self, CodecError};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use statemachine::{
    BitmapKind, DetailChanges, HeldWrite, HostWrite, OutOfSync, Relationship, Revertible, State, Timestamp, Volume,
    VolumeId, VolumeRecord, BITMAP_BLOCK_TRACKS,
};
use std::collections::{BTreeMap, HashMap};

const RECORD: u8 = b'r';
const BITMAP: u8 = b'b';
const HELD: u8 = b'h';

pub fn record_key(id: VolumeId) -> Vec<u8> {
    [&[RECORD][..], &id.0.to_be_bytes()].concat()
}

fn bitmap_key(target: VolumeId, kind: BitmapKind, block: u32) -> Vec<u8> {
    [
        &[BITMAP][..],
        &target.0.to_be_bytes(),
        &[kind as u8],
        &block.to_be_bytes(),
    ]
    .concat()
}

/// All bitmap keys of one target: [start, end).
fn bitmap_range(target: VolumeId) -> (Vec<u8>, Vec<u8>) {
    (
        [&[BITMAP][..], &target.0.to_be_bytes()].concat(),
        [&[BITMAP][..], &(target.0 + 1).to_be_bytes()].concat(),
    )
}

fn held_key(volume: VolumeId, seq: u64) -> Vec<u8> {
    [&[HELD][..], &volume.0.to_be_bytes(), &seq.to_be_bytes()].concat()
}

fn held_range(volume: VolumeId) -> (Vec<u8>, Vec<u8>) {
    (
        [&[HELD][..], &volume.0.to_be_bytes()].concat(),
        [&[HELD][..], &(volume.0 + 1).to_be_bytes()].concat(),
    )
}

#[derive(Serialize, Deserialize)]
struct StoredRelationship {
    source: VolumeId,
    seqnum: u32,
    flags: [bool; 6],
    copy_rate: Option<u32>,
    tracks: u32,
    out_of_sync_inverted: bool,
    created_at: Timestamp,
    synced_at: Timestamp,
    /// A revertible increment's previous sequence number and time (its change recording is in
    /// the `Previous…` bitmaps).
    revertible: Option<(u32, Timestamp)>,
    /// The volume keeping its kept tracks (the tracks are the `Kept` bitmap).
    kept_by: VolumeId,
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    volume: Volume,
    incoming: Option<StoredRelationship>,
    content_digest: u64,
    stored_tracks: u64,
    kept_tracks: u64,
    kept_digest: u64,
    kept_sweep: Option<u32>,
    mirror: Option<statemachine::MirrorPair>,
}

/// One write to the `meta` column family.
pub enum MetaWrite {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// One of a relationship's bitmaps; `None` for a revertible increment's while there is none.
fn bits(rel: &Relationship, kind: BitmapKind) -> Option<&RoaringBitmap> {
    match kind {
        BitmapKind::OutOfSync => Some(rel.out_of_sync.raw().0),
        BitmapKind::SourceChanges => Some(&rel.source_changes),
        BitmapKind::TargetChanges => Some(&rel.target_changes),
        BitmapKind::PreviousSourceChanges => rel.revertible.as_ref().map(|p| &p.source_changes),
        BitmapKind::PreviousTargetChanges => rel.revertible.as_ref().map(|p| &p.target_changes),
        BitmapKind::Kept => Some(&rel.kept),
    }
}

fn block_value(bitmap: &RoaringBitmap, block: u32) -> Result<Option<Vec<u8>>, CodecError> {
    let start = block * BITMAP_BLOCK_TRACKS;
    // An intersection works a container at a time (a block is one container of 2^16 bits);
    // collecting the range bit by bit cost a host write a pass over every bit of the block.
    let mut range = RoaringBitmap::new();
    range.insert_range(start..start.saturating_add(BITMAP_BLOCK_TRACKS));
    let part = range & bitmap;
    if part.is_empty() {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(part.serialized_size());
    part.serialize_into(&mut bytes).expect("writing to a Vec cannot fail");
    codec::encode(&bytes).map(Some)
}

/// The blocks holding at least one bit, found by jumping from block to block (not bit by bit).
fn blocks_with_bits(bitmap: &RoaringBitmap) -> Vec<u32> {
    let mut blocks = Vec::new();
    let mut next = bitmap.min();
    while let Some(bit) = next {
        let block = bit / BITMAP_BLOCK_TRACKS;
        blocks.push(block);
        next = (block + 1)
            .checked_mul(BITMAP_BLOCK_TRACKS)
            .and_then(|start| bitmap.range(start..).next());
    }
    blocks
}

fn put_block(
    out: &mut Vec<MetaWrite>,
    rel: &Relationship,
    target: VolumeId,
    kind: BitmapKind,
    block: u32,
) -> Result<(), CodecError> {
    let key = bitmap_key(target, kind, block);
    let value = match bits(rel, kind) {
        Some(bitmap) => block_value(bitmap, block)?,
        None => None,
    };
    out.push(match value {
        Some(value) => MetaWrite::Put(key, value),
        None => MetaWrite::Delete(key),
    });
    Ok(())
}

/// The writes that persist one apply's changes to volume records.
pub fn stage(state: &State, touched: &[VolumeId], details: &DetailChanges) -> Result<Vec<MetaWrite>, CodecError> {
    let mut out = Vec::new();
    for &id in touched {
        match state.record(id) {
            Some(record) => out.push(MetaWrite::Put(record_key(id), encode_record(record)?)),
            None => {
                out.push(MetaWrite::Delete(record_key(id)));
                let (from, to) = bitmap_range(id);
                out.push(MetaWrite::DeleteRange(from, to));
                let (from, to) = held_range(id);
                out.push(MetaWrite::DeleteRange(from, to));
            }
        }
    }
    let incoming = |target: VolumeId| state.incoming(target);
    for &target in &details.bitmaps_replaced {
        let (from, to) = bitmap_range(target);
        out.push(MetaWrite::DeleteRange(from, to));
        if let Some(rel) = incoming(target) {
            for kind in BitmapKind::ALL {
                for block in bits(rel, kind).map(blocks_with_bits).unwrap_or_default() {
                    put_block(&mut out, rel, target, kind, block)?;
                }
            }
        }
    }
    for &(target, kind, block) in &details.bitmap_blocks {
        if details.bitmaps_replaced.contains(&target) {
            continue;
        }
        if let Some(rel) = incoming(target) {
            put_block(&mut out, rel, target, kind, block)?;
        }
    }
    // Released writes are a prefix of the queue: delete through the last one. (A push in the
    // same apply comes after, in the same batch.)
    for (&volume, &last) in &details.held_released {
        out.push(MetaWrite::DeleteRange(held_key(volume, 0), held_key(volume, last + 1)));
    }
    for &(volume, seq) in &details.held_pushed {
        let held = state.record(volume).and_then(|r| r.held_writes.get(seq));
        if let Some(held) = held {
            out.push(MetaWrite::Put(held_key(volume, seq), codec::encode(&held.write)?));
        }
    }
    Ok(out)
}

fn encode_record(record: &VolumeRecord) -> Result<Vec<u8>, CodecError> {
    let stored = StoredRecord {
        volume: record.volume.clone(),
        incoming: record.incoming.as_ref().map(|r| StoredRelationship {
            source: r.source,
            seqnum: r.seqnum,
            flags: r.flags(),
            copy_rate: r.copy_rate,
            tracks: r.out_of_sync.tracks(),
            out_of_sync_inverted: r.out_of_sync.raw().1,
            created_at: r.created_at,
            synced_at: r.synced_at,
            revertible: r.revertible.as_ref().map(|p| (p.seqnum, p.synced_at)),
            kept_by: r.kept_by,
        }),
        content_digest: record.content_digest,
        stored_tracks: record.stored_tracks,
        kept_tracks: record.kept_tracks,
        kept_digest: record.kept_digest,
        kept_sweep: record.kept_sweep,
        mirror: record.mirror.clone(),
    };
    codec::encode(&stored)
}

/// Reassembles volume records from the `meta` keys of the three kinds above.
#[derive(Default)]
pub struct Loader {
    records: Vec<StoredRecord>,
    bitmaps: HashMap<(VolumeId, u8), RoaringBitmap>,
    held: BTreeMap<(VolumeId, u64), HostWrite>,
}

impl Loader {
    /// Takes a `meta` key/value; returns false if it is none of this module's keys.
    pub fn take(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        let id = |from: usize| VolumeId(u64::from_be_bytes(key[from..from + 8].try_into().expect("8 bytes")));
        match (key.first(), key.len()) {
            (Some(&RECORD), 9) => self.records.push(codec::decode(value)?),
            (Some(&BITMAP), 14) => {
                let bytes: Vec<u8> = codec::decode(value)?;
                let part = RoaringBitmap::deserialize_from(&bytes[..])
                    .map_err(|e| CodecError::Corrupt(format!("bitmap block: {e}")))?;
                *self.bitmaps.entry((id(1), key[9])).or_default() |= part;
            }
            (Some(&HELD), 17) => {
                let seq = u64::from_be_bytes(key[9..17].try_into().expect("8 bytes"));
                self.held.insert((id(1), seq), codec::decode(value)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn finish(mut self) -> Vec<VolumeRecord> {
        let mut bitmap =
            |target: VolumeId, kind: BitmapKind| self.bitmaps.remove(&(target, kind as u8)).unwrap_or_default();
        let mut records: Vec<VolumeRecord> = self
            .records
            .into_iter()
            .map(|stored| {
                let target = stored.volume.id;
                let incoming = stored.incoming.map(|r| {
                    let [persistent, recording, background_copy, target_write_inhibit, completing, remote_pair] =
                        r.flags;
                    Relationship {
                        source: r.source,
                        target,
                        seqnum: r.seqnum,
                        persistent,
                        recording,
                        background_copy,
                        copy_rate: r.copy_rate,
                        target_write_inhibit,
                        completing,
                        remote_pair,
                        out_of_sync: OutOfSync::from_raw(
                            r.tracks,
                            r.out_of_sync_inverted,
                            bitmap(target, BitmapKind::OutOfSync),
                        ),
                        kept: bitmap(target, BitmapKind::Kept),
                        kept_by: r.kept_by,
                        source_changes: bitmap(target, BitmapKind::SourceChanges),
                        target_changes: bitmap(target, BitmapKind::TargetChanges),
                        created_at: r.created_at,
                        synced_at: r.synced_at,
                        revertible: r.revertible.map(|(seqnum, synced_at)| Revertible {
                            seqnum,
                            synced_at,
                            source_changes: bitmap(target, BitmapKind::PreviousSourceChanges),
                            target_changes: bitmap(target, BitmapKind::PreviousTargetChanges),
                        }),
                    }
                });
                VolumeRecord {
                    volume: stored.volume,
                    incoming,
                    held_writes: Default::default(),
                    content_digest: stored.content_digest,
                    stored_tracks: stored.stored_tracks,
                    kept_tracks: stored.kept_tracks,
                    kept_digest: stored.kept_digest,
                    kept_sweep: stored.kept_sweep,
                    mirror: stored.mirror,
                }
            })
            .collect();
        let position: HashMap<VolumeId, usize> = records.iter().enumerate().map(|(i, r)| (r.volume.id, i)).collect();
        for ((volume, seq), write) in self.held {
            if let Some(&i) = position.get(&volume) {
                records[i].held_writes.push_held(HeldWrite { seq, write });
            }
        }
        records
    }
}
