//! Relationships: one source, one target, a point in time, and the bitmaps that say where each
//! target track lives.

use crate::bitmap::OutOfSync;
use crate::timestamp::Timestamp;
use crate::track::VolumeId;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

/// Multiple-relationship FlashCopy: at most this many targets per source.
pub const MAX_TARGETS_PER_SOURCE: usize = 12;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub source: VolumeId,
    pub target: VolumeId,
    pub seqnum: u32,
    pub persistent: bool,
    /// Change recording: `source_changes` and `target_changes` are kept.
    pub recording: bool,
    pub background_copy: bool,
    pub target_write_inhibit: bool,
    /// `rmflash --cp` in progress: withdraw when the copy completes.
    pub completing: bool,
    pub out_of_sync: OutOfSync,
    /// Tracks written on the source since the last point in time (only while recording).
    pub source_changes: RoaringBitmap,
    /// Tracks written on the target since the last point in time (only while recording).
    pub target_changes: RoaringBitmap,
    pub created_at: Timestamp,
    pub synced_at: Timestamp,
}

/// The state `lsflash` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationshipState {
    Copying,
    Nocopy,
    Copied,
    Completing,
}

impl RelationshipState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipState::Copying => "copying",
            RelationshipState::Nocopy => "nocopy",
            RelationshipState::Copied => "copied",
            RelationshipState::Completing => "completing",
        }
    }
}

impl Relationship {
    pub fn state(&self) -> RelationshipState {
        if self.completing {
            RelationshipState::Completing
        } else if self.out_of_sync.is_empty() {
            RelationshipState::Copied
        } else if self.background_copy {
            RelationshipState::Copying
        } else {
            RelationshipState::Nocopy
        }
    }

    /// The five switches, in one fixed order: persistent, recording, background copy, target
    /// write inhibit, completing. Storage and the digest both use this order.
    pub fn flags(&self) -> [bool; 5] {
        [
            self.persistent,
            self.recording,
            self.background_copy,
            self.target_write_inhibit,
            self.completing,
        ]
    }

    /// Whether a copy that just emptied the out-of-sync bitmap ends the relationship.
    pub(crate) fn ends_when_copied(&self) -> bool {
        !self.persistent || self.completing
    }

    pub(crate) fn kind(&self) -> &'static str {
        if self.persistent {
            "persistent"
        } else {
            "non-persistent"
        }
    }
}

/// Resolves the volumes of each pair: both exist, differ, and no target is named twice.
pub(crate) fn resolve_pairs(
    state: &crate::State,
    pairs: &[crate::Pair],
) -> Result<Vec<(VolumeId, VolumeId)>, crate::CommandError> {
    use crate::CommandError;
    if pairs.is_empty() {
        return Err(CommandError::NoPairs);
    }
    let lookup = |name: &str| {
        state
            .volume_id(name)
            .ok_or_else(|| CommandError::VolumeNotFound { name: name.to_string() })
    };
    let mut resolved: Vec<(VolumeId, VolumeId)> = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (source, target) = (lookup(&pair.source)?, lookup(&pair.target)?);
        if source == target {
            return Err(CommandError::InvalidPair {
                pair: pair.to_string(),
                reason: "source and target are the same volume".into(),
            });
        }
        if resolved.iter().any(|(_, t)| *t == target) {
            return Err(CommandError::InvalidPair {
                pair: pair.to_string(),
                reason: format!("volume \"{}\" is named as a target twice in this command", pair.target),
            });
        }
        resolved.push((source, target));
    }
    Ok(resolved)
}

/// Resolves pairs that must name existing relationships; returns their targets.
pub(crate) fn find_existing(state: &crate::State, pairs: &[crate::Pair]) -> Result<Vec<VolumeId>, crate::CommandError> {
    let resolved = resolve_pairs(state, pairs)?;
    resolved
        .iter()
        .zip(pairs)
        .map(|((source, target), pair)| match state.incoming(*target) {
            Some(rel) if rel.source == *source => Ok(*target),
            _ => Err(crate::CommandError::RelationshipNotFound { pair: pair.to_string() }),
        })
        .collect()
}
