//! Why the state machine refused a command. Each variant has a stable kebab-case code (shown to
//! users as `error: <code>: <message>` and carried in API errors) and a message saying what to do.

use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("\"{name}\" is not a valid volume name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with -, and not . or ..")]
    InvalidVolumeName { name: String },
    #[error("invalid size {size} for volume \"{name}\": {reason}")]
    InvalidSize { name: String, size: u64, reason: String },
    #[error("volume \"{name}\" already exists; pick another name or remove it with 'flashcopy rmvol {name}'")]
    VolumeExists { name: String },
    #[error("volume \"{name}\" does not exist; 'flashcopy lsvol' lists the volumes")]
    VolumeNotFound { name: String },
    #[error("volume \"{name}\" is held by relationship {relationship}; withdraw it first with 'flashcopy rmflash {relationship}'")]
    VolumeInUse { name: String, relationship: String },
    #[error("volume \"{name}\" is frozen; thaw it first with 'flashcopy unfreezeflash {name}'")]
    VolumeFrozen { name: String },
    #[error("volume \"{name}\" is still releasing {count} writes held by its freeze; try again in a moment")]
    WritesDraining { name: String, count: usize },
    #[error("{length} bytes at offset {offset} do not fit volume \"{volume}\" of {size} bytes")]
    OutOfRange {
        volume: String,
        offset: u64,
        length: u64,
        size: u64,
    },
    #[error("volume \"{volume}\" is the target of relationship {relationship}, established with --tgtinhibit: hosts may not write it")]
    TargetWriteInhibited { volume: String, relationship: String },
    #[error("invalid pair {pair}: {reason}")]
    InvalidPair { pair: String, reason: String },
    #[error("no pairs given: name at least one SRC:TGT")]
    NoPairs,
    #[error("{option}: {reason}")]
    InvalidOption { option: String, reason: String },
    #[error("{pair}: source \"{source_name}\" has {source_size} bytes but target \"{target}\" has {target_size}; a FlashCopy pair needs volumes of the same size")]
    SizeMismatch {
        pair: String,
        source_name: String,
        source_size: u64,
        target: String,
        target_size: u64,
    },
    #[error("volume \"{target}\" is the target of {kind} relationship {relationship} (created {created_at}); withdraw it with 'flashcopy rmflash {relationship}' or refresh it with 'flashcopy resyncflash {relationship}'")]
    TargetInUse {
        target: String,
        relationship: String,
        kind: String,
        created_at: Timestamp,
    },
    #[error("volume \"{source_name}\" already has {existing} FlashCopy targets; a source may have at most {max}: withdraw one with 'flashcopy rmflash'")]
    TooManyTargets {
        source_name: String,
        existing: usize,
        max: usize,
    },
    #[error("volume \"{source_name}\" already has the incremental (--record) relationship {relationship}; a source may have only one: refresh that one with 'flashcopy resyncflash {relationship}' or establish this one without --record")]
    IncrementalExists { source_name: String, relationship: String },
    #[error("{pair}: {reason}; FlashCopy does not cascade")]
    CascadeNotAllowed { pair: String, reason: String },
    #[error("source \"{source_name}\" is frozen by a consistency group; thaw it first with 'flashcopy unfreezeflash {source_name}'")]
    SourceFrozen { source_name: String },
    #[error("there is no relationship {pair}; 'flashcopy lsflash' lists the relationships")]
    RelationshipNotFound { pair: String },
    #[error("relationship {pair} has sequence number {actual}, not {expected}; nothing was changed")]
    SeqnumMismatch { pair: String, expected: u32, actual: u32 },
    #[error("relationship {pair} is not persistent and recording changes; establish it with --persist --record to use resyncflash and reverseflash (or use reverseflash --fast)")]
    NotRecording { pair: String },
    #[error("relationship {pair} still has {remaining} tracks to copy; wait for the copy ('flashcopy lsflash --watch') or use reverseflash --fast")]
    CopyNotFinished { pair: String, remaining: u64 },
    #[error("relationship {pair} is being withdrawn (rmflash --cp); wait for it to finish, or withdraw it now with 'flashcopy rmflash {pair}'")]
    WithdrawInProgress { pair: String },
    #[error("volume \"{name}\" is frozen or has writes held by a freeze; thaw it first with 'flashcopy unfreezeflash {name}'")]
    TargetFrozen { name: String },
    #[error("a write of {length} bytes is larger than the {max} bytes one command may carry; split it")]
    WriteTooLarge { length: u64, max: u64 },
    #[error("volume \"{name}\" is not frozen")]
    NotFrozen { name: String },
    #[error("relationship {pair} has background copy off (--nocp); its tracks move only by copy-on-write")]
    BackgroundCopyOff { pair: String },
    #[error("volume \"{name}\" was deleted and created again since this connection opened it; reconnect to use the new volume")]
    VolumeReplaced { name: String },
    #[error("zeroing {length} bytes of \"{volume}\" at once is refused while it is the source of a relationship (its tracks may need copying first); zero at most {max} bytes per command")]
    ZeroingTooLarge { volume: String, length: u64, max: u64 },
    #[error("\"{name}\" is not a valid host name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with -, and not . or ..")]
    InvalidHostName { name: String },
    #[error("host \"{name}\" already exists; 'flashcopy lshost' lists the hosts")]
    HostExists { name: String },
    #[error("host \"{host}\" already has {identity}; one identity names one host")]
    IdentityInUse { identity: String, host: String },
    #[error("host \"{name}\" does not exist; 'flashcopy lshost' lists the hosts")]
    HostNotFound { name: String },
    #[error("host \"{name}\" has {count} volumes mapped (\"{volume}\" among them); unmap them first with 'flashcopy unmapvol VOLUME {name}'")]
    HostHasVolumes { name: String, count: usize, volume: String },
    #[error("volume \"{volume}\" is not mapped to host \"{host}\"")]
    NotMapped { volume: String, host: String },
    #[error("volume \"{name}\" is mapped to host \"{host}\"; unmap it first with 'flashcopy unmapvol {name} {host}'")]
    VolumeMapped { name: String, host: String },
    #[error("a write to \"{volume}\" carries only a checksum of its data (a journal entry); only a replay of the journal applies it")]
    WriteWithoutData { volume: String },
}

impl CommandError {
    /// The stable code: part of the CLI and API contract, never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::InvalidVolumeName { .. } => "invalid-volume-name",
            CommandError::InvalidSize { .. } => "invalid-size",
            CommandError::VolumeExists { .. } => "volume-exists",
            CommandError::VolumeNotFound { .. } => "volume-not-found",
            CommandError::VolumeInUse { .. } => "volume-in-use",
            CommandError::VolumeFrozen { .. } => "volume-frozen",
            CommandError::WritesDraining { .. } => "writes-draining",
            CommandError::OutOfRange { .. } => "out-of-range",
            CommandError::TargetWriteInhibited { .. } => "target-write-inhibited",
            CommandError::InvalidPair { .. } => "invalid-pair",
            CommandError::NoPairs => "no-pairs",
            CommandError::InvalidOption { .. } => "invalid-option",
            CommandError::SizeMismatch { .. } => "size-mismatch",
            CommandError::TargetInUse { .. } => "target-in-use",
            CommandError::TooManyTargets { .. } => "too-many-targets",
            CommandError::IncrementalExists { .. } => "incremental-exists",
            CommandError::CascadeNotAllowed { .. } => "cascade-not-allowed",
            CommandError::SourceFrozen { .. } => "source-frozen",
            CommandError::RelationshipNotFound { .. } => "relationship-not-found",
            CommandError::SeqnumMismatch { .. } => "seqnum-mismatch",
            CommandError::NotRecording { .. } => "not-recording",
            CommandError::CopyNotFinished { .. } => "copy-not-finished",
            CommandError::WithdrawInProgress { .. } => "withdraw-in-progress",
            CommandError::NotFrozen { .. } => "not-frozen",
            CommandError::TargetFrozen { .. } => "target-frozen",
            CommandError::WriteTooLarge { .. } => "write-too-large",
            CommandError::BackgroundCopyOff { .. } => "background-copy-off",
            CommandError::WriteWithoutData { .. } => "write-without-data",
            CommandError::VolumeReplaced { .. } => "volume-replaced",
            CommandError::ZeroingTooLarge { .. } => "zeroing-too-large",
            CommandError::InvalidHostName { .. } => "invalid-host-name",
            CommandError::HostExists { .. } => "host-exists",
            CommandError::IdentityInUse { .. } => "identity-in-use",
            CommandError::HostNotFound { .. } => "host-not-found",
            CommandError::HostHasVolumes { .. } => "host-has-volumes",
            CommandError::NotMapped { .. } => "not-mapped",
            CommandError::VolumeMapped { .. } => "volume-mapped",
        }
    }
}
