//! Volumes: thin, fixed-size, named.

use crate::error::CommandError;
use crate::timestamp::Timestamp;
use crate::track::VolumeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// 16 TiB.
pub const MAX_VOLUME_SIZE: u64 = 16 << 40;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: VolumeId,
    pub name: String,
    pub size: u64,
    /// It was the target of a relationship withdrawn before its copy finished (or the old
    /// target of a fast reverse): not a valid point-in-time image.
    pub incomplete: bool,
    /// Set by `mkflash --freeze`: host writes are held until this time or `unfreezeflash`.
    pub frozen_until: Option<Timestamp>,
    /// Targets of the relationships this volume is the source of.
    pub targets: BTreeSet<VolumeId>,
}

/// The state `lsvol` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    Normal,
    Frozen,
    Incomplete,
}

impl Volume {
    pub fn state(&self) -> VolumeState {
        if self.frozen_until.is_some() {
            VolumeState::Frozen
        } else if self.incomplete {
            VolumeState::Incomplete
        } else {
            VolumeState::Normal
        }
    }
}

/// The longest volume (or host) name, in bytes.
pub(crate) const MAX_NAME: usize = 64;

pub(crate) fn validate_name(name: &str) -> Result<(), CommandError> {
    // `.` and `..` read as paths, and a leading `-` as an option on every command line.
    let valid = (1..=MAX_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('-')
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(CommandError::InvalidVolumeName { name: name.to_string() })
    }
}

pub(crate) fn validate_size(name: &str, size: u64, track_size: u32) -> Result<(), CommandError> {
    let reason = if size == 0 {
        "a volume needs at least one track".to_string()
    } else if !size.is_multiple_of(u64::from(track_size)) {
        format!("the size must be a multiple of the track size, {track_size} bytes")
    } else if size > MAX_VOLUME_SIZE {
        format!("the largest volume is 16 TiB ({MAX_VOLUME_SIZE} bytes)")
    } else {
        return Ok(());
    };
    Err(CommandError::InvalidSize {
        name: name.to_string(),
        size,
        reason,
    })
}
