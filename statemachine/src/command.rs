//! Commands: everything that changes the state is one of these, carried in one log entry.

use crate::error::CommandError;
use crate::hosts::HostIdentity;
use crate::mirror::{PprcPath, SuspendReason, REDACTED};
use crate::track::VolumeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A `SRC:TGT` pair of volume names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pair {
    pub source: String,
    pub target: String,
}

impl Pair {
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Pair {
            source: source.into(),
            target: target.into(),
        }
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.target)
    }
}

impl std::str::FromStr for Pair {
    type Err = CommandError;
    /// Parses `SRC:TGT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((source, target)) if !source.is_empty() && !target.is_empty() && !target.contains(':') => {
                Ok(Pair::new(source, target))
            }
            _ => Err(CommandError::InvalidPair {
                pair: s.to_string(),
                reason: "a pair is written SRC:TGT, two volume names separated by one colon".into(),
            }),
        }
    }
}

/// Options of `mkflash`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstablishOptions {
    /// `--nocp`: no background copy; only copy-on-write moves tracks.
    pub nocp: bool,
    pub persist: bool,
    /// Change recording (needed by resync and reverse). Requires `persist`.
    pub record: bool,
    /// Hosts may not write the target while the relationship exists.
    pub tgtinhibit: bool,
    /// Hold host writes to the sources until `unfreezeflash` or the automatic thaw.
    pub freeze: bool,
    pub seqnum: u32,
    /// How the FlashCopy reaches a target that is a Metro Mirror primary.
    pub mirror: MirrorTarget,
    /// `--copy-rate`: MiB/s of background copy at most (`None`: as fast as the node allows;
    /// 0: no background copy, as `--nocp`).
    pub copy_rate: Option<u32>,
}

/// `mkflash --tgtpprc` and `--pmir`: a FlashCopy onto a Metro Mirror primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MirrorTarget {
    /// Refused if the target is a mirror primary.
    #[default]
    None,
    /// `--tgtpprc`: every track the FlashCopy places on the target is copied to its secondary
    /// (the pair is copy-pending until it has been).
    Copy,
    /// `--pmir` at the primaries' site: source and target are full-duplex primaries whose
    /// secondaries run the same FlashCopy at the same point in the write stream.
    RemotePair,
    /// The same FlashCopy, at the secondaries' site: it may target a secondary.
    RemotePairSecondary,
}

/// What a host write puts into the volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteData {
    /// Encoded as one byte string (not a sequence of u8): writes are large. A shared buffer: the
    /// NBD request's bytes, the log entry, apply and the mirror's tap hold the same memory.
    Bytes(bytes::Bytes),
    /// NBD WRITE_ZEROES and TRIM (and writes of all-zero data): the range reads as zeros
    /// afterwards; whole tracks stop being stored.
    Zeroes(u64),
    /// What the journal keeps of written bytes: their length and checksum, never the bytes.
    /// Only a journal replay applies it (see `crate::replay`): the tracks it covers are
    /// stored, with unknown content.
    Summary { length: u64, xxh3: u64 },
}

impl WriteData {
    pub fn len(&self) -> u64 {
        match self {
            WriteData::Bytes(b) => b.len() as u64,
            WriteData::Zeroes(n) => *n,
            WriteData::Summary { length, .. } => *length,
        }
    }

    /// The form the journal keeps: bytes become their length and checksum.
    pub fn journal_form(&self) -> WriteData {
        match self {
            WriteData::Bytes(b) => WriteData::Summary {
                length: b.len() as u64,
                xxh3: xxhash_rust::xxh3::xxh3_64(b),
            },
            other => other.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A host write as it travels in the log. `tag` is chosen by the proposer so it can recognise
/// the outcome of a write that a freeze held and a later entry released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostWrite {
    pub volume: String,
    /// The volume the writer opened, when it opened one (NBD binds a connection to a volume,
    /// not to its name): refused if `volume` now names another one.
    pub opened: Option<VolumeId>,
    pub offset: u64,
    pub data: WriteData,
    pub tag: u64,
}

impl HostWrite {
    /// Volume, range and a checksum of the data: what the audit history keeps of a write.
    pub fn summary(&self) -> String {
        match self.data.journal_form() {
            WriteData::Summary { length, xxh3 } => format!(
                "write {} offset={} length={length} xxh3={xxh3:016x}",
                self.volume, self.offset
            ),
            data => format!(
                "write-zeroes {} offset={} length={}",
                self.volume,
                self.offset,
                data.len()
            ),
        }
    }

    /// The write as the journal keeps it (see [`WriteData::journal_form`]).
    pub fn journal_form(&self) -> HostWrite {
        HostWrite {
            volume: self.volume.clone(),
            opened: self.opened,
            offset: self.offset,
            data: self.data.journal_form(),
            tag: self.tag,
        }
    }
}

/// One write as a mirror primary sends it: its sequence number in the pair's stream (a copy
/// step's tracks share one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirroredWrite {
    pub seq: u64,
    /// The primary's log index of the entry that applied it: writes of several pairs in one
    /// request are applied in this order, as the primary did.
    pub order: u64,
    pub offset: u64,
    pub data: WriteData,
}

/// What the primary says the pair is in, after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecondaryMark {
    /// A copy runs: the secondary's image is not consistent until it ends.
    Copying,
    /// Streamed in the primary's write order: consistent.
    Duplex,
    /// `pausepprc`.
    Suspended,
}

/// What a mirror primary sends its secondary in one request, applied there as one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorBatch {
    /// The secondary volume.
    pub volume: String,
    pub generation: u64,
    pub writes: Vec<MirroredWrite>,
    pub mark: SecondaryMark,
    /// The last sequence number the primary had given when it made the batch: a mark older
    /// than what the secondary applied is stale and ignored.
    pub upto: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateVolume {
        name: String,
        size: u64,
    },
    DeleteVolume {
        name: String,
    },
    Write(HostWrite),
    /// Concurrent host writes committed together (group commit), applied in order. Each write
    /// succeeds, is held, or is refused on its own (`Written`, `WriteHeld`, `WriteRefused`).
    WriteBatch(Vec<HostWrite>),
    MkFlash {
        pairs: Vec<Pair>,
        options: EstablishOptions,
    },
    RmFlash {
        pairs: Vec<Pair>,
        /// `--cp`: finish the background copy first, then withdraw.
        cp: bool,
        /// Refuse unless the relationship carries this sequence number.
        seqnum: Option<u32>,
    },
    ResyncFlash {
        pairs: Vec<Pair>,
        nocp: bool,
        tgtinhibit: bool,
        /// Sets the relationship's sequence number.
        seqnum: Option<u32>,
    },
    ReverseFlash {
        pairs: Vec<Pair>,
        fast: bool,
        /// Sets the relationship's sequence number.
        seqnum: Option<u32>,
    },
    /// `setflashrevertible`: each relationship takes a revertible increment (a point in time as
    /// `resyncflash` takes one, keeping the previous one until a commit or a revert).
    SetFlashRevertible {
        pairs: Vec<Pair>,
        /// Sets the relationship's sequence number.
        seqnum: Option<u32>,
    },
    /// `commitflash`: the revertible increments become the relationships' points in time.
    CommitFlash {
        pairs: Vec<Pair>,
        /// Refuse unless the relationship carries this sequence number.
        seqnum: Option<u32>,
    },
    /// `revertflash`: the revertible increments are thrown away; the targets hold their
    /// previous points in time again.
    RevertFlash {
        pairs: Vec<Pair>,
        /// Refuse unless the relationship carries this sequence number.
        seqnum: Option<u32>,
    },
    UnfreezeFlash {
        sources: Vec<String>,
    },
    /// `chflash --copy-rate`: the relationships' background copy rate in MiB/s (`None`: as fast
    /// as the node allows; 0: no background copy).
    ChFlash {
        pairs: Vec<Pair>,
        copy_rate: Option<u32>,
    },
    /// Background copy: copy up to `max_tracks` out-of-sync tracks of one relationship, lowest first.
    CopyStep {
        source: String,
        target: String,
        max_tracks: u32,
    },
    /// `mkhost`: a host that proves `identity` over TLS sees the volumes mapped to it.
    CreateHost {
        name: String,
        identity: HostIdentity,
    },
    /// `rmhost`: only a host with no volumes mapped.
    DeleteHost {
        name: String,
    },
    /// `mapvol`: the host may use the volume (read-only or not); mapping again changes that.
    MapVolume {
        volume: String,
        host: String,
        read_only: bool,
    },
    /// `unmapvol`.
    UnmapVolume {
        volume: String,
        host: String,
    },
    /// Carries only a timestamp, so time-driven rules (the automatic thaw) fire.
    Tick,
    /// The first leader names the cluster (a later one changes nothing): remote sites know it
    /// by this id.
    NameCluster {
        id: String,
    },
    /// `mkpprcpath`: the node checked the remote (reachable, token accepted, its cluster id).
    MkPprcPath(PprcPath),
    RmPprcPath {
        remote_cluster: String,
    },
    /// `mkpprc` at the primary, after the secondary accepted the pair under `generation`.
    MkPprc {
        volume: String,
        remote_cluster: String,
        remote_volume: String,
        generation: u64,
    },
    /// The secondary's side of `mkpprc`.
    AcceptSecondary {
        volume: String,
        primary_cluster: String,
        primary_volume: String,
        size: u64,
        generation: u64,
    },
    /// At the secondary: what the primary sent, for one pair or for every full-duplex pair of a
    /// path at once (applied together, in the primary's order: the secondaries stay consistent
    /// with each other too).
    MirrorApply(Vec<MirrorBatch>),
    /// At the primary: send the next out-of-sync tracks.
    PprcCopyStep {
        volume: String,
        max_tracks: u32,
    },
    /// At the primary: the secondary confirmed everything through `seq`.
    PprcConfirmed {
        volume: String,
        generation: u64,
        seq: u64,
    },
    /// `pausepprc` (operator), or the leader's suspension (with the generation it sent under).
    PausePprc {
        volume: String,
        reason: SuspendReason,
        generation: Option<u64>,
    },
    ResumePprc {
        volume: String,
    },
    /// A new leader that cannot re-send what the old one had not confirmed: everything
    /// unconfirmed goes out of sync and is copied (the pair is copy-pending until it is).
    PprcResync {
        volume: String,
        generation: u64,
    },
    RmPprc {
        volume: String,
    },
    /// Every track of a mirror primary out of sync: a Remote Pair FlashCopy command ran at the
    /// secondaries' site but not here, so the secondary is rewritten from this side.
    PprcCopyAll {
        volume: String,
    },
    FailoverPprc {
        volume: String,
    },
    /// Failback, at the old primary: become the secondary of the failed-over side.
    BecomeSecondary {
        volume: String,
        generation: u64,
    },
    /// `failbackpprc` at the failed-over side, with the tracks the old primary changed.
    FailbackPprc {
        volume: String,
        remote_changes: Vec<u32>,
    },
    /// Drops up to `max_tracks` of the tracks `volume` keeps that no relationship reads any
    /// more, from where its sweep stands ([`crate::VolumeRecord::kept_sweep`]). The leader
    /// proposes these while a bookmark is set (see `kept_sweep.rs`).
    SweepKept {
        volume: String,
        max_tracks: u32,
    },
}

impl Command {
    /// The command as the journal keeps it: host-write bytes replaced by their length and
    /// checksum. Replaying journal forms rebuilds every volume, relationship and bitmap.
    pub fn journal_form(&self) -> Command {
        match self {
            Command::Write(w) => Command::Write(w.journal_form()),
            Command::WriteBatch(writes) => Command::WriteBatch(writes.iter().map(HostWrite::journal_form).collect()),
            Command::MkPprcPath(path) => Command::MkPprcPath(PprcPath {
                token: path.token.as_ref().map(|_| REDACTED.to_string()),
                ..path.clone()
            }),
            Command::MirrorApply(batches) => Command::MirrorApply(
                batches
                    .iter()
                    .map(|batch| MirrorBatch {
                        writes: batch
                            .writes
                            .iter()
                            .map(|w| MirroredWrite {
                                data: w.data.journal_form(),
                                ..w.clone()
                            })
                            .collect(),
                        ..batch.clone()
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Bytes of host data the command carries (what dominates its encoded size).
    pub fn payload_bytes(&self) -> usize {
        let carried = |w: &HostWrite| match &w.data {
            WriteData::Bytes(b) => b.len(),
            _ => 0,
        };
        match self {
            Command::Write(w) => carried(w),
            Command::WriteBatch(writes) => writes.iter().map(carried).sum(),
            Command::MirrorApply(batches) => batches
                .iter()
                .flat_map(|b| &b.writes)
                .map(|w| match &w.data {
                    WriteData::Bytes(b) => b.len(),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    /// A short description for the audit history (host writes summarised, never their bytes).
    pub fn summary(&self) -> String {
        let pairs = |p: &[Pair]| p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        let flag = |on: bool, name: &str| if on { format!(" --{name}") } else { String::new() };
        let seq = |s: &Option<u32>| s.map(|n| format!(" --seqnum {n}")).unwrap_or_default();
        match self {
            Command::CreateVolume { name, size } => format!("mkvol {name} --size {size}"),
            Command::DeleteVolume { name } => format!("rmvol {name}"),
            Command::Write(w) => w.summary(),
            Command::WriteBatch(writes) if writes.len() == 1 => writes[0].summary(),
            // Each write's own summary is listed with the batch (see `audit`).
            Command::WriteBatch(writes) => format!("write-batch of {} writes", writes.len()),
            Command::MkFlash { pairs: p, options: o } => {
                format!(
                    "mkflash {}{}{}{}{}{}{}",
                    pairs(p),
                    flag(o.nocp, "nocp"),
                    flag(o.persist, "persist"),
                    flag(o.record, "record"),
                    flag(o.tgtinhibit, "tgtinhibit"),
                    flag(o.freeze, "freeze"),
                    if o.seqnum != 0 {
                        format!(" --seqnum {}", o.seqnum)
                    } else {
                        String::new()
                    }
                ) + &o.copy_rate.map(|r| format!(" --copy-rate {r}")).unwrap_or_default()
                    + match o.mirror {
                        MirrorTarget::None => "",
                        MirrorTarget::Copy => " --tgtpprc",
                        MirrorTarget::RemotePair => " --pmir",
                        MirrorTarget::RemotePairSecondary => " --pmir (at the secondaries)",
                    }
            }
            Command::RmFlash { pairs: p, cp, seqnum } => {
                format!("rmflash {}{}{}", pairs(p), flag(*cp, "cp"), seq(seqnum))
            }
            Command::ResyncFlash {
                pairs: p,
                nocp,
                tgtinhibit,
                seqnum,
            } => format!(
                "resyncflash {}{}{}{}",
                pairs(p),
                flag(*nocp, "nocp"),
                flag(*tgtinhibit, "tgtinhibit"),
                seq(seqnum)
            ),
            Command::ReverseFlash { pairs: p, fast, seqnum } => {
                format!("reverseflash {}{}{}", pairs(p), flag(*fast, "fast"), seq(seqnum))
            }
            Command::SetFlashRevertible { pairs: p, seqnum } => {
                format!("setflashrevertible {}{}", pairs(p), seq(seqnum))
            }
            Command::CommitFlash { pairs: p, seqnum } => format!("commitflash {}{}", pairs(p), seq(seqnum)),
            Command::RevertFlash { pairs: p, seqnum } => format!("revertflash {}{}", pairs(p), seq(seqnum)),
            Command::UnfreezeFlash { sources } => format!("unfreezeflash {}", sources.join(" ")),
            Command::ChFlash { pairs: p, copy_rate } => format!(
                "chflash {} --copy-rate {}",
                pairs(p),
                copy_rate.map_or("unlimited".to_string(), |r| r.to_string())
            ),
            Command::CopyStep {
                source,
                target,
                max_tracks,
            } => format!("copy-step {source}:{target} max_tracks={max_tracks}"),
            Command::SweepKept { volume, max_tracks } => format!("sweep-kept {volume} max_tracks={max_tracks}"),
            Command::CreateHost { name, identity } => format!("mkhost {name} --{identity}"),
            Command::DeleteHost { name } => format!("rmhost {name}"),
            Command::MapVolume {
                volume,
                host,
                read_only,
            } => format!("mapvol {volume} {host}{}", flag(*read_only, "read-only")),
            Command::UnmapVolume { volume, host } => format!("unmapvol {volume} {host}"),
            Command::Tick => "tick".to_string(),
            Command::NameCluster { id } => format!("name-cluster {id}"),
            Command::MkPprcPath(p) => format!("mkpprcpath {} --remote {}", p.remote_cluster, p.url),
            Command::RmPprcPath { remote_cluster } => format!("rmpprcpath {remote_cluster}"),
            Command::MkPprc {
                volume,
                remote_cluster,
                remote_volume,
                generation,
            } => format!("mkpprc {volume}:{remote_cluster}/{remote_volume} generation={generation}"),
            Command::AcceptSecondary {
                volume,
                primary_cluster,
                primary_volume,
                generation,
                ..
            } => format!("accept-secondary {volume} of {primary_cluster}/{primary_volume} generation={generation}"),
            Command::MirrorApply(batches) => {
                let each: Vec<String> = batches
                    .iter()
                    .map(|b| {
                        format!(
                            "{} generation={} writes={} seq={} {:?}",
                            b.volume,
                            b.generation,
                            b.writes.len(),
                            b.writes.iter().map(|w| w.seq).max().unwrap_or(0),
                            b.mark
                        )
                    })
                    .collect();
                format!("mirror-apply {}", each.join("; "))
            }
            Command::PprcCopyStep { volume, max_tracks } => format!("pprc-copy-step {volume} max_tracks={max_tracks}"),
            Command::PprcConfirmed { volume, seq, .. } => format!("pprc-confirmed {volume} seq={seq}"),
            Command::PausePprc { volume, reason, .. } => format!("pausepprc {volume} reason={reason}"),
            Command::ResumePprc { volume } => format!("resumepprc {volume}"),
            Command::PprcResync { volume, .. } => format!("pprc-resync {volume}"),
            Command::RmPprc { volume } => format!("rmpprc {volume}"),
            Command::PprcCopyAll { volume } => format!("pprc-copy-all {volume}"),
            Command::FailoverPprc { volume } => format!("failoverpprc {volume}"),
            Command::BecomeSecondary { volume, generation } => {
                format!("become-secondary {volume} generation={generation}")
            }
            Command::FailbackPprc { volume, remote_changes } => {
                format!("failbackpprc {volume} remote_changes={}", remote_changes.len())
            }
        }
    }

    /// Refuses what the state machine would refuse whatever the state holds: a volume or host
    /// name it creates that is not a valid name, or any name longer than a valid one (it names
    /// nothing). Checked before proposing, so such input never reaches the log and the journal
    /// (which keeps every command for good).
    pub fn precheck(&self) -> Result<(), CommandError> {
        match self {
            Command::CreateVolume { name, .. } => crate::volume::validate_name(name)?,
            Command::CreateHost { name, .. } => {
                crate::volume::validate_name(name).map_err(|_| CommandError::InvalidHostName { name: name.clone() })?
            }
            _ => {}
        }
        match self
            .volumes()
            .into_iter()
            .find(|name| name.len() > crate::volume::MAX_NAME)
        {
            Some(name) => Err(CommandError::InvalidVolumeName { name: name.to_string() }),
            None => Ok(()),
        }
    }

    /// Volume names this command is about (for `audit --volume`).
    pub fn volumes(&self) -> Vec<&str> {
        match self {
            Command::CreateVolume { name, .. } | Command::DeleteVolume { name } => vec![name.as_str()],
            Command::Write(w) => vec![w.volume.as_str()],
            Command::WriteBatch(writes) => {
                let mut names: Vec<&str> = writes.iter().map(|w| w.volume.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                names
            }
            Command::MkFlash { pairs, .. }
            | Command::RmFlash { pairs, .. }
            | Command::ResyncFlash { pairs, .. }
            | Command::ReverseFlash { pairs, .. }
            | Command::SetFlashRevertible { pairs, .. }
            | Command::CommitFlash { pairs, .. }
            | Command::RevertFlash { pairs, .. }
            | Command::ChFlash { pairs, .. } => pairs
                .iter()
                .flat_map(|p| [p.source.as_str(), p.target.as_str()])
                .collect(),
            Command::UnfreezeFlash { sources } => sources.iter().map(String::as_str).collect(),
            Command::CopyStep { source, target, .. } => vec![source.as_str(), target.as_str()],
            Command::MapVolume { volume, .. } | Command::UnmapVolume { volume, .. } => vec![volume.as_str()],
            Command::CreateHost { .. } | Command::DeleteHost { .. } | Command::Tick => vec![],
            Command::NameCluster { .. } | Command::MkPprcPath(_) | Command::RmPprcPath { .. } => vec![],
            Command::MirrorApply(batches) => batches.iter().map(|b| b.volume.as_str()).collect(),
            Command::MkPprc { volume, .. }
            | Command::AcceptSecondary { volume, .. }
            | Command::PprcCopyStep { volume, .. }
            | Command::SweepKept { volume, .. }
            | Command::PprcConfirmed { volume, .. }
            | Command::PausePprc { volume, .. }
            | Command::ResumePprc { volume }
            | Command::PprcResync { volume, .. }
            | Command::RmPprc { volume }
            | Command::PprcCopyAll { volume }
            | Command::FailoverPprc { volume }
            | Command::BecomeSecondary { volume, .. }
            | Command::FailbackPprc { volume, .. } => vec![volume.as_str()],
        }
    }
}
