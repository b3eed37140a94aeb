//! The audit history (the journal): one record per applied command, kept for the life of the
//! cluster — it is part of every snapshot, so purging the Raft log never loses it. Each record
//! keeps the command in its journal form (host writes as volume, offset, length and checksum,
//! never their bytes), the time it was applied at, its outcome and its events. That is enough to
//! replay: [`Journal::state_at`] rebuilds the metadata as it was at any index or time, and
//! [`Journal::verify`] replays everything and compares with the live state.

use crate::codec;
use crate::db::{index_key, parse_track_key, CF_AUDIT, CF_SUMS};
use roaring::RoaringBitmap;
use rocksdb::{IteratorMode, DB};
use serde::{Deserialize, Serialize};
use statemachine::{
    Command, CommandError, Event, MetadataDigest, Pair, Replay, Replayed, Stamp, State, Timestamp, VolumeId,
};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub index: u64,
    /// When the entry was applied, on the state's clock (never earlier than the entry before).
    pub time: Timestamp,
    /// The leader's stamp as proposed, and its term: what a replay feeds the state machine.
    pub stamp: Stamp,
    /// The command in its journal form (see `Command::journal_form`).
    pub command: Command,
    pub result: Result<(), CommandError>,
    pub events: Vec<Event>,
}

impl AuditRecord {
    /// Every volume the record is about: named by its command or by one of its events (an
    /// automatic thaw, a relationship ended by its copy).
    pub fn volumes(&self) -> Vec<&str> {
        let mut names = self.command.volumes();
        names.extend(self.events.iter().flat_map(Event::volumes));
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Which records `audit` lists.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Records about this volume.
    pub volume: Option<String>,
    /// Records about both volumes of this pair (either direction: a reversal turns S:T into T:S).
    pub relationship: Option<Pair>,
    /// Records applied at or after this time.
    pub since: Option<Timestamp>,
}

impl AuditFilter {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let names = record.volumes();
        let names_volume = |v: &str| names.contains(&v);
        self.volume.as_deref().is_none_or(names_volume)
            && self
                .relationship
                .as_ref()
                .is_none_or(|p| names_volume(&p.source) && names_volume(&p.target))
            && self.since.is_none_or(|t| record.time >= t)
    }
}

/// Where a replay stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// After the entry with this log index (or the last one before it).
    Index(u64),
    /// After the last entry applied at or before this time.
    Time(Timestamp),
}

/// The state a replay rebuilt, and the last entry it applied.
pub struct Rebuilt {
    pub index: u64,
    pub time: Timestamp,
    pub entries: u64,
    pub state: State,
}

/// The outcome of `audit verify`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verification {
    /// The live state's last applied index; the journal was replayed up to it.
    pub index: u64,
    /// Journal records replayed.
    pub entries: u64,
    /// Metadata digests (see `MetadataDigest`), hex.
    pub live_digest: String,
    pub replayed_digest: String,
    /// Empty when the replay matches the live state entry by entry and at the end.
    pub differences: Vec<String>,
}

impl Verification {
    pub fn consistent(&self) -> bool {
        self.differences.is_empty()
    }
}

/// At most this many entry mismatches are described one by one.
const MAX_REPORTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the audit history cannot be read: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("audit record at log index {index} cannot be read: {reason}")]
    Corrupt { index: u64, reason: String },
    #[error("the audit history has no entry at or before {0}")]
    NothingBefore(String),
}

/// The audit history as of one moment: reads go through a RocksDB snapshot, so a listing or a
/// replay sees one applied index even while entries keep being applied.
pub(crate) struct Journal<'a> {
    db: &'a DB,
    snapshot: rocksdb::Snapshot<'a>,
}

impl<'a> Journal<'a> {
    pub(crate) fn new(db: &'a DB) -> Self {
        Journal {
            db,
            snapshot: db.snapshot(),
        }
    }

    /// Records after index `after`, in index order.
    fn records(&self, after: u64) -> impl Iterator<Item = Result<AuditRecord, JournalError>> + '_ {
        let cf = self
            .db
            .cf_handle(CF_AUDIT)
            .expect("column families are created at open");
        let start = index_key(after.saturating_add(1));
        let iter = self
            .snapshot
            .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward));
        iter.map(|item| {
            let (key, value) = item?;
            let index = <[u8; 8]>::try_from(key.as_ref()).map_or(0, u64::from_be_bytes);
            let record: AuditRecord = codec::decode(&value).map_err(|e| JournalError::Corrupt {
                index,
                reason: e.to_string(),
            })?;
            if record.index != index {
                return Err(JournalError::Corrupt {
                    index,
                    reason: format!("it says it is entry {}", record.index),
                });
            }
            Ok(record)
        })
    }

    /// Records after index `after` that pass `filter`, at most `limit`.
    pub(crate) fn list(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, JournalError> {
        let mut out = Vec::new();
        for record in self.records(after) {
            let record = record?;
            if filter.matches(&record) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Replays the journal from the start up to `until` in a scratch state machine.
    pub(crate) fn state_at(&self, until: Until) -> Result<Rebuilt, JournalError> {
        let mut replay = Replay::new();
        let (mut index, mut time, mut entries) = (0, Timestamp(0), 0);
        for record in self.records(0) {
            let record = record?;
            let past = match until {
                Until::Index(last) => record.index > last,
                Until::Time(last) => record.time > last,
            };
            if past {
                break;
            }
            replay.apply(&record.command, record.stamp);
            (index, time, entries) = (record.index, record.time, entries + 1);
        }
        if entries == 0 {
            return Err(JournalError::NothingBefore(match until {
                Until::Index(i) => format!("index {i}"),
                Until::Time(t) => t.rfc3339(),
            }));
        }
        Ok(Rebuilt {
            index,
            time,
            entries,
            state: replay.state().clone(),
        })
    }

    /// Replays the whole journal up to `index` and compares every entry's outcome and events,
    /// then the rebuilt metadata and which tracks are stored, with what the live state machine
    /// recorded and holds. `names` are the live volume names by id.
    pub(crate) fn verify(
        &self,
        live: &MetadataDigest,
        names: &BTreeMap<VolumeId, String>,
        index: u64,
    ) -> Result<Verification, JournalError> {
        let mut replay = Replay::new();
        let mut differences = Vec::new();
        let mut mismatched = 0usize;
        let mut entries = 0;
        for record in self.records(0) {
            let record = match record {
                Ok(record) => record,
                Err(JournalError::Corrupt { index, reason }) => {
                    differences.push(format!("entry {index} cannot be read: {reason}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if record.index > index {
                break;
            }
            entries += 1;
            let replayed = replay.apply(&record.command, record.stamp);
            if replayed.result != record.result || replayed.events != record.events {
                mismatched += 1;
                if mismatched <= MAX_REPORTED {
                    differences.push(format!(
                        "entry {} ({}): {}",
                        record.index,
                        record.command.summary(),
                        mismatch(&record, &replayed)
                    ));
                }
            }
        }
        if mismatched > MAX_REPORTED {
            differences.push(format!("... {} more entries differ", mismatched - MAX_REPORTED));
        }
        let rebuilt = replay.state().metadata_digest();
        differences.extend(live.differences(&rebuilt, ("live", "replayed")));
        differences.extend(self.stored_track_differences(&replay, names)?);
        Ok(Verification {
            index,
            entries,
            live_digest: format!("{:016x}", live.total),
            replayed_digest: format!("{:016x}", rebuilt.total),
            differences,
        })
    }
}

impl Journal<'_> {
    /// Which tracks are stored live (the sums column family) against the replay's, per volume.
    fn stored_track_differences(
        &self,
        replay: &Replay,
        names: &BTreeMap<VolumeId, String>,
    ) -> Result<Vec<String>, JournalError> {
        let mut live: BTreeMap<VolumeId, RoaringBitmap> = BTreeMap::new();
        let cf = self.db.cf_handle(CF_SUMS).expect("column families are created at open");
        for item in self.snapshot.iterator_cf(cf, IteratorMode::Start) {
            let (key, _) = item?;
            if let Some((volume, track)) = parse_track_key(&key) {
                live.entry(volume).or_default().insert(track);
            }
        }
        let mut replayed: BTreeMap<VolumeId, RoaringBitmap> = BTreeMap::new();
        for (volume, track) in replay.stored_tracks() {
            replayed.entry(volume).or_default().insert(track);
        }
        let empty = RoaringBitmap::new();
        let volumes: std::collections::BTreeSet<VolumeId> = live.keys().chain(replayed.keys()).copied().collect();
        let mut out = Vec::new();
        for volume in volumes {
            let (l, r) = (
                live.get(&volume).unwrap_or(&empty),
                replayed.get(&volume).unwrap_or(&empty),
            );
            if l == r {
                continue;
            }
            let owner = volume.owner();
            let name = names
                .get(&owner)
                .cloned()
                .or_else(|| replay.state().record(owner).map(|r| r.volume.name.clone()))
                .unwrap_or_else(|| format!("#{}", owner.0));
            let name = match volume.is_kept() {
                true => format!("{name} (its kept tracks)"),
                false => name,
            };
            out.push(format!(
                "volume {name}: {} tracks stored live but not in the replay, {} the other way",
                (l - r).len(),
                (r - l).len()
            ));
        }
        Ok(out)
    }
}

/// How a replayed entry differs from its record, in a sentence.
fn mismatch(record: &AuditRecord, replayed: &Replayed) -> String {
    let outcome = |r: &Result<(), CommandError>| match r {
        Ok(()) => "accepted".to_string(),
        Err(e) => format!("refused ({})", e.code()),
    };
    if record.result != replayed.result {
        return format!(
            "the journal says {}, the replay gives {}",
            outcome(&record.result),
            outcome(&replayed.result)
        );
    }
    let at = record
        .events
        .iter()
        .zip(&replayed.events)
        .position(|(a, b)| a != b)
        .unwrap_or(record.events.len().min(replayed.events.len()));
    format!(
        "event {} differs: the journal has {:?}, the replay gives {:?}",
        at + 1,
        record.events.get(at),
        replayed.events.get(at)
    )
}
