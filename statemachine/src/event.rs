//! Events: what an apply did, in order. They feed the audit history and tell a proposer how its
//! command (or a write a freeze held) turned out.

use crate::error::CommandError;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    VolumeCreated {
        volume: String,
        size: u64,
    },
    VolumeDeleted {
        volume: String,
    },
    Written {
        volume: String,
        offset: u64,
        length: u64,
        tag: u64,
    },
    /// The volume is frozen: the write waits in the log-replicated queue until the thaw.
    WriteHeld {
        volume: String,
        offset: u64,
        length: u64,
        tag: u64,
    },
    /// A write of a `WriteBatch` that was refused (the others in the batch are not affected).
    WriteRefused {
        volume: String,
        offset: u64,
        length: u64,
        tag: u64,
        error: CommandError,
    },
    /// A held write that could not be applied at the thaw.
    HeldWriteRefused {
        volume: String,
        tag: u64,
        error: CommandError,
    },
    Established {
        source: String,
        target: String,
        seqnum: u32,
    },
    /// `rmflash --cp`: background copy runs, then the relationship is withdrawn.
    WithdrawScheduled {
        source: String,
        target: String,
    },
    /// `chflash --copy-rate`: MiB/s at most (`None`: as fast as the node allows; 0: off).
    CopyRateChanged {
        source: String,
        target: String,
        copy_rate: Option<u32>,
    },
    /// `incomplete`: the target had tracks still out of sync and is not a valid copy.
    /// `automatic`: the copy completed and the relationship was not persistent (or was completing).
    Withdrawn {
        source: String,
        target: String,
        incomplete: bool,
        automatic: bool,
    },
    Resynced {
        source: String,
        target: String,
        tracks_to_copy: u64,
    },
    /// `setflashrevertible`: the target took a point in time as of this entry that
    /// `commitflash` keeps or `revertflash` throws away; `tracks` went out of sync for it.
    IncrementTaken {
        source: String,
        target: String,
        seqnum: u32,
        tracks: u64,
    },
    /// `commitflash`: the revertible increment is the relationship's point in time for good.
    IncrementCommitted {
        source: String,
        target: String,
        seqnum: u32,
    },
    /// `revertflash`: the increment is gone; the target holds the previous point in time
    /// (sequence number `seqnum`) again, and `tracks` are back in sync.
    IncrementReverted {
        source: String,
        target: String,
        seqnum: u32,
        tracks: u64,
    },
    /// The relationship now runs `source` → `target` (the old target is the new source).
    Reversed {
        source: String,
        target: String,
        fast: bool,
        tracks_to_copy: u64,
    },
    /// A copy step: `tracks` came in sync, `data_tracks` of them by copying stored data (the
    /// rest were never written on either side and cost nothing).
    TracksCopied {
        source: String,
        target: String,
        tracks: u64,
        data_tracks: u32,
        remaining: u64,
    },
    CopyCompleted {
        source: String,
        target: String,
    },
    Frozen {
        volume: String,
        until: Timestamp,
    },
    Thawed {
        volume: String,
        automatic: bool,
        released_writes: usize,
    },
    HostCreated {
        host: String,
        identity: String,
    },
    HostDeleted {
        host: String,
    },
    VolumeMapped {
        volume: String,
        host: String,
        read_only: bool,
    },
    VolumeUnmapped {
        volume: String,
        host: String,
    },
    Refused {
        error: CommandError,
    },
    ClusterNamed {
        id: String,
    },
    PathCreated {
        remote: String,
        url: String,
    },
    PathRemoved {
        remote: String,
    },
    /// A Metro Mirror pair, at either site (`remote` is `cluster/volume`).
    PairEstablished {
        volume: String,
        remote: String,
        generation: u64,
        tracks_to_copy: u64,
    },
    PairState {
        volume: String,
        state: String,
    },
    /// A copy step: these tracks go to the secondary under sequence number `seq`.
    PairTracksSent {
        volume: String,
        seq: u64,
        tracks: Vec<u32>,
        remaining: u64,
    },
    PairSuspended {
        volume: String,
        reason: String,
        out_of_sync_tracks: u64,
    },
    PairResumed {
        volume: String,
        tracks_to_copy: u64,
    },
    PairRemoved {
        volume: String,
    },
    PairFailedOver {
        volume: String,
        generation: u64,
        consistent: bool,
    },
    /// Failback: the old primary is now the secondary and hands over the tracks it changed.
    PairBecameSecondary {
        volume: String,
        generation: u64,
        tracks: Vec<u32>,
    },
}

impl Event {
    /// The volumes the event is about (for `audit --volume`).
    pub fn volumes(&self) -> Vec<&str> {
        match self {
            Event::VolumeCreated { volume, .. }
            | Event::VolumeDeleted { volume }
            | Event::Written { volume, .. }
            | Event::WriteHeld { volume, .. }
            | Event::WriteRefused { volume, .. }
            | Event::HeldWriteRefused { volume, .. }
            | Event::Frozen { volume, .. }
            | Event::Thawed { volume, .. }
            | Event::VolumeMapped { volume, .. }
            | Event::VolumeUnmapped { volume, .. }
            | Event::PairEstablished { volume, .. }
            | Event::PairState { volume, .. }
            | Event::PairTracksSent { volume, .. }
            | Event::PairSuspended { volume, .. }
            | Event::PairResumed { volume, .. }
            | Event::PairRemoved { volume }
            | Event::PairFailedOver { volume, .. }
            | Event::PairBecameSecondary { volume, .. } => vec![volume],
            Event::Established { source, target, .. }
            | Event::WithdrawScheduled { source, target }
            | Event::CopyRateChanged { source, target, .. }
            | Event::Withdrawn { source, target, .. }
            | Event::Resynced { source, target, .. }
            | Event::IncrementTaken { source, target, .. }
            | Event::IncrementCommitted { source, target, .. }
            | Event::IncrementReverted { source, target, .. }
            | Event::Reversed { source, target, .. }
            | Event::TracksCopied { source, target, .. }
            | Event::CopyCompleted { source, target } => vec![source, target],
            Event::HostCreated { .. }
            | Event::HostDeleted { .. }
            | Event::Refused { .. }
            | Event::ClusterNamed { .. }
            | Event::PathCreated { .. }
            | Event::PathRemoved { .. } => vec![],
        }
    }
}
