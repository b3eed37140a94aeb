//! Why the state machine refused a command. Each variant has a stable kebab-case code (shown to
//! users as `error: <code>: <message>` and carried in API errors) and a message saying what to do.

use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("{name} is not a valid volume name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with -, and not . or ..", name = shown(.name))]
    InvalidVolumeName { name: String },
    #[error("invalid size {size} for volume {name}: {reason}", name = shown(.name))]
    InvalidSize { name: String, size: u64, reason: String },
    #[error("volume {quoted} already exists; pick another name or remove it with 'flashcopy rmvol {name}'", quoted = shown(.name))]
    VolumeExists { name: String },
    #[error("volume {name} does not exist; 'flashcopy lsvol' lists the volumes", name = shown(.name))]
    VolumeNotFound { name: String },
    #[error("volume {name} is held by relationship {relationship}; withdraw it first with 'flashcopy rmflash {relationship}'", name = shown(.name))]
    VolumeInUse { name: String, relationship: String },
    #[error("volume {quoted} is frozen; thaw it first with 'flashcopy unfreezeflash {name}'", quoted = shown(.name))]
    VolumeFrozen { name: String },
    #[error("volume {name} is still releasing {count} writes held by its freeze; try again in a moment", name = shown(.name))]
    WritesDraining { name: String, count: usize },
    #[error("{length} bytes at offset {offset} do not fit volume {volume} of {size} bytes", volume = shown(.volume))]
    OutOfRange {
        volume: String,
        offset: u64,
        length: u64,
        size: u64,
    },
    #[error("volume {volume} is the target of relationship {relationship}, established with --tgtinhibit: hosts may not write it", volume = shown(.volume))]
    TargetWriteInhibited { volume: String, relationship: String },
    #[error("invalid pair {pair}: {reason}", pair = shown(.pair))]
    InvalidPair { pair: String, reason: String },
    #[error("no pairs given: name at least one SRC:TGT")]
    NoPairs,
    #[error("{option}: {reason}")]
    InvalidOption { option: String, reason: String },
    #[error("{pair}: source {source_name} has {source_size} bytes but target {target} has {target_size}; a FlashCopy pair needs volumes of the same size", source_name = shown(.source_name), target = shown(.target))]
    SizeMismatch {
        pair: String,
        source_name: String,
        source_size: u64,
        target: String,
        target_size: u64,
    },
    #[error("volume {target} is the target of {kind} relationship {relationship} (created {created_at}); withdraw it with 'flashcopy rmflash {relationship}' or refresh it with 'flashcopy resyncflash {relationship}'", target = shown(.target))]
    TargetInUse {
        target: String,
        relationship: String,
        kind: String,
        created_at: Timestamp,
    },
    #[error("volume {source_name} already has {existing} FlashCopy targets; a source may have at most {max}: withdraw one with 'flashcopy rmflash'", source_name = shown(.source_name))]
    TooManyTargets {
        source_name: String,
        existing: usize,
        max: usize,
    },
    #[error("{pair}: {reason}")]
    CascadeNotAllowed { pair: String, reason: String },
    #[error("{pair}: volume {name} is the source of {relationship}, whose {remaining} tracks still to copy read what {name} reads; wait for its copy ('flashcopy lsflash --watch') or withdraw it first", name = shown(.volume))]
    CascadeCopyRunning {
        pair: String,
        volume: String,
        relationship: String,
        remaining: u64,
    },
    #[error("source {quoted} is frozen by a consistency group; thaw it first with 'flashcopy unfreezeflash {source_name}'", quoted = shown(.source_name))]
    SourceFrozen { source_name: String },
    #[error("there is no relationship {pair}; 'flashcopy lsflash' lists the relationships")]
    RelationshipNotFound { pair: String },
    #[error("relationship {pair} has sequence number {actual}, not {expected}; nothing was changed")]
    SeqnumMismatch { pair: String, expected: u32, actual: u32 },
    #[error("relationship {pair} is not persistent and recording changes, which {verb} needs; establish it with --persist --record{}", fast_reverse_hint(.verb))]
    NotRecording { pair: String, verb: String },
    #[error("relationship {pair} still has {remaining} tracks to copy; wait for the copy ('flashcopy lsflash --watch') or use reverseflash --fast")]
    CopyNotFinished { pair: String, remaining: u64 },
    #[error("relationship {pair} is being withdrawn (rmflash --cp); wait for it to finish, or withdraw it now with 'flashcopy rmflash {pair}'")]
    WithdrawInProgress { pair: String },
    #[error("volume {quoted} is frozen or has writes held by a freeze; thaw it first with 'flashcopy unfreezeflash {name}'", quoted = shown(.name))]
    TargetFrozen { name: String },
    #[error("a write of {length} bytes is larger than the {max} bytes one command may carry; split it")]
    WriteTooLarge { length: u64, max: u64 },
    #[error("volume {name} is not frozen", name = shown(.name))]
    NotFrozen { name: String },
    #[error("relationship {pair} has background copy off (--nocp); its tracks move only by copy-on-write")]
    BackgroundCopyOff { pair: String },
    #[error("volume {name} was deleted and created again since this connection opened it; reconnect to use the new volume", name = shown(.name))]
    VolumeReplaced { name: String },
    #[error("zeroing {length} bytes of {volume} at once is refused while it is the source of a relationship (its tracks may need copying first); zero at most {max} bytes per command", volume = shown(.volume))]
    ZeroingTooLarge { volume: String, length: u64, max: u64 },
    #[error("{name} is not a valid host name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with -, and not . or ..", name = shown(.name))]
    InvalidHostName { name: String },
    #[error("host {name} already exists; 'flashcopy lshost' lists the hosts", name = shown(.name))]
    HostExists { name: String },
    #[error("host {host} already has {identity}; one identity names one host", host = shown(.host))]
    IdentityInUse { identity: String, host: String },
    #[error("host {name} does not exist; 'flashcopy lshost' lists the hosts", name = shown(.name))]
    HostNotFound { name: String },
    #[error("host {quoted} has {count} volumes mapped ({volume} among them); unmap them first with 'flashcopy unmapvol VOLUME {name}'", quoted = shown(.name), volume = shown(.volume))]
    HostHasVolumes { name: String, count: usize, volume: String },
    #[error("volume {volume} is not mapped to host {host}", volume = shown(.volume), host = shown(.host))]
    NotMapped { volume: String, host: String },
    #[error("volume {quoted_name} is mapped to host {quoted_host}; unmap it first with 'flashcopy unmapvol {name} {host}'", quoted_name = shown(.name), quoted_host = shown(.host))]
    VolumeMapped { name: String, host: String },
    #[error("a write to {volume} carries only a checksum of its data (a journal entry); only a replay of the journal applies it", volume = shown(.volume))]
    WriteWithoutData { volume: String },
    #[error("there is already a path to remote cluster {remote}; 'flashcopy lspprcpath' lists the paths", remote = shown(.remote))]
    PathExists { remote: String },
    #[error("there is no path to remote cluster {remote}; make one with 'flashcopy mkpprcpath --remote URL'", remote = shown(.remote))]
    PathNotFound { remote: String },
    #[error("the path to {remote} is used by the mirror pairs of {volumes}; remove them first with 'flashcopy rmpprc'", remote = shown(.remote))]
    PathInUse { remote: String, volumes: String },
    #[error("volume {name} is already in the mirror pair with {remote}; remove it first with 'flashcopy rmpprc {volume}'", name = shown(.volume))]
    PairExists { volume: String, remote: String },
    #[error("volume {name} is in no mirror pair; 'flashcopy lspprc' lists the pairs", name = shown(.volume))]
    PairNotFound { volume: String },
    #[error("volume {name} is {size} bytes and its primary {primary_size}: a mirror pair's volumes are the same size", name = shown(.volume))]
    PairSizeMismatch {
        volume: String,
        size: u64,
        primary_size: u64,
    },
    #[error("the mirror pair of volume {name} is {state}; this needs {wanted}", name = shown(.volume))]
    PairState {
        volume: String,
        state: String,
        wanted: String,
    },
    #[error("volume {name} is the {role} of mirror pair generation {current}, not {generation}: the pair was failed over or made again at this site", name = shown(.volume))]
    PairGeneration {
        volume: String,
        generation: u64,
        current: u64,
        role: String,
    },
    #[error("volume {name} is a mirror primary; failoverpprc runs at the secondary's site", name = shown(.volume))]
    FailoverOfPrimary { volume: String },
    #[error("volume {name} is a Metro Mirror secondary: hosts may only read it until 'flashcopy failoverpprc {volume}' or 'flashcopy rmpprc {volume}'", name = shown(.volume))]
    MirrorSecondary { volume: String },
    #[error("volume {name} is in the mirror pair with {remote}; remove the pair first with 'flashcopy rmpprc {volume}'", name = shown(.volume))]
    VolumeInMirrorPair { volume: String, remote: String },
    #[error("target {name} of {pair} is a Metro Mirror primary (pair with {remote}): add --tgtpprc to copy what the FlashCopy places on it to its secondary, or --pmir to run the same FlashCopy at the secondaries' site", name = shown(.volume))]
    TargetIsMirrorPrimary {
        volume: String,
        pair: String,
        remote: String,
    },
    #[error("target {name} of {pair} is a Metro Mirror secondary: only the mirror writes it; fail it over or remove the pair first", name = shown(.volume))]
    TargetIsMirrorSecondary { volume: String, pair: String },
    #[error("mirror writes to {name} must come in order: sequence number {expected} is next, not {got}; the primary resyncs", name = shown(.volume))]
    PairSequenceGap { volume: String, expected: u64, got: u64 },
    #[error("the secondary of {name} has not confirmed mirror copy step {seq}; it is confirmed or copied again before the next", name = shown(.volume))]
    PairCopyUnconfirmed { volume: String, seq: u64 },
    #[error("Remote Pair FlashCopy of {pair} is not possible: {reason}; --pmir preferred falls back to --tgtpprc")]
    PmirNotPossible { pair: String, reason: String },
    #[error("relationship {pair} has no revertible increment; 'flashcopy setflashrevertible {pair}' takes one")]
    NotRevertible { pair: String },
    #[error("relationship {pair} has a revertible increment; keep it with 'flashcopy commitflash {pair}' or throw it away with 'flashcopy revertflash {pair}' first")]
    RelationshipRevertible { pair: String },
    #[error("volume {name} is in relationship {relationship}, whose increment is revertible: hosts may not write it until 'flashcopy commitflash {relationship}' or 'flashcopy revertflash {relationship}'", name = shown(.volume))]
    RevertibleWriteInhibited { volume: String, relationship: String },
    #[error("relationship {pair} cannot take a revertible increment: {reason}")]
    RevertibleNotPossible { pair: String, reason: String },
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
            CommandError::CascadeNotAllowed { .. } => "cascade-not-allowed",
            CommandError::CascadeCopyRunning { .. } => "cascade-copy-running",
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
            CommandError::PathExists { .. } => "path-exists",
            CommandError::PathNotFound { .. } => "path-not-found",
            CommandError::PathInUse { .. } => "path-in-use",
            CommandError::PairExists { .. } => "pair-exists",
            CommandError::PairNotFound { .. } => "pair-not-found",
            CommandError::PairSizeMismatch { .. } => "size-mismatch",
            CommandError::PairState { .. } => "pair-state",
            CommandError::PairGeneration { .. } => "pair-generation",
            CommandError::FailoverOfPrimary { .. } => "failover-of-primary",
            CommandError::MirrorSecondary { .. } => "secondary-read-only",
            CommandError::VolumeInMirrorPair { .. } => "volume-in-mirror-pair",
            CommandError::TargetIsMirrorPrimary { .. } => "target-is-mirror-primary",
            CommandError::TargetIsMirrorSecondary { .. } => "target-is-mirror-secondary",
            CommandError::PmirNotPossible { .. } => "pmir-not-possible",
            CommandError::PairSequenceGap { .. } => "pair-sequence-gap",
            CommandError::PairCopyUnconfirmed { .. } => "pair-copy-unconfirmed",
            CommandError::NotRevertible { .. } => "not-revertible",
            CommandError::RelationshipRevertible { .. } => "relationship-revertible",
            CommandError::RevertibleWriteInhibited { .. } => "revertible-write-inhibited",
            CommandError::RevertibleNotPossible { .. } => "revertible-not-possible",
        }
    }
}

/// How much of a user's input an error message repeats, in characters as shown.
const SHOWN_WIDTH: usize = 64;

/// A reverse without change recording still has the fast reverse (FRR), which needs none.
fn fast_reverse_hint(verb: &str) -> &'static str {
    match verb {
        "reverseflash" => " (or use reverseflash --fast, which needs neither)",
        _ => "",
    }
}

/// User input (a name, a pair, an identity) as an error message shows it: quoted and escaped
/// as `{:?}` escapes — control, format (bidirectional overrides, zero-width) and other
/// invisible characters become `\u{…}`, so a message cannot hide or reorder text — and cut
/// after about 64 characters, saying how long the input was. An ordinary name shows as
/// `"name"`.
pub(crate) fn shown(input: &str) -> String {
    let mut width = 0;
    for (at, c) in input.char_indices() {
        width += c.escape_debug().len();
        if width > SHOWN_WIDTH {
            return format!("{:?}… ({} characters)", &input[..at], input.chars().count());
        }
    }
    format!("{input:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_show_quoted_as_they_are() {
        assert_eq!(shown("a"), "\"a\"");
        assert_eq!(shown(&"v".repeat(64)), format!("\"{}\"", "v".repeat(64)));
        assert_eq!(
            CommandError::VolumeNotFound { name: "a".into() }.to_string(),
            "volume \"a\" does not exist; 'flashcopy lsvol' lists the volumes"
        );
        // The fast reverse is named only where it is an alternative.
        let not_recording = |verb: &str| {
            CommandError::NotRecording {
                pair: "a:b".into(),
                verb: verb.into(),
            }
            .to_string()
        };
        assert!(not_recording("reverseflash").ends_with("(or use reverseflash --fast, which needs neither)"));
        assert!(!not_recording("resyncflash").contains("--fast"));
        assert!(not_recording("resyncflash").contains("which resyncflash needs"));
        assert_eq!(
            CommandError::VolumeExists { name: "a".into() }.to_string(),
            "volume \"a\" already exists; pick another name or remove it with 'flashcopy rmvol a'"
        );
    }

    #[test]
    fn long_or_invisible_input_is_cut_and_escaped() {
        let long = format!("{}\n{}", "x".repeat(2500), "y".repeat(2499));
        let message = CommandError::InvalidVolumeName { name: long }.to_string();
        assert!(message.len() < 300, "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("(5000 characters)"), "{message}");
        let sneaky = shown("\u{202e}\u{200b}evil\u{feff} \u{a0}\u{1b}[31m");
        assert_eq!(sneaky, "\"\\u{202e}\\u{200b}evil\\u{feff} \\u{a0}\\u{1b}[31m\"");
        // The cut counts escapes: a run of invisible characters is cut as soon.
        let hidden = shown(&"\u{200b}".repeat(100));
        assert!(hidden.len() < 100, "{hidden}");
        assert!(hidden.ends_with("… (100 characters)"), "{hidden}");
    }
}
