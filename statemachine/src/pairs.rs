//! Resolving the `SRC:TGT` pairs a relationship command names against the state: both volumes
//! exist and differ, no target is named twice, and (for commands on existing relationships)
//! each pair is one.

use crate::command::Pair;
use crate::error::CommandError;
use crate::state::State;
use crate::track::VolumeId;

/// Resolves the volumes of each pair: both exist, differ, and no target is named twice.
pub(crate) fn resolve_pairs(state: &State, pairs: &[Pair]) -> Result<Vec<(VolumeId, VolumeId)>, CommandError> {
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
pub(crate) fn find_existing(state: &State, pairs: &[Pair]) -> Result<Vec<VolumeId>, CommandError> {
    let resolved = resolve_pairs(state, pairs)?;
    resolved
        .iter()
        .zip(pairs)
        .map(|((source, target), pair)| match state.incoming(*target) {
            Some(rel) if rel.source == *source => Ok(*target),
            _ => Err(CommandError::RelationshipNotFound { pair: pair.to_string() }),
        })
        .collect()
}

/// Refuses unless every relationship (by target) carries `seqnum`, when one is given.
pub(crate) fn check_seqnum(
    state: &State,
    pairs: &[Pair],
    targets: &[VolumeId],
    seqnum: Option<u32>,
) -> Result<(), CommandError> {
    let Some(expected) = seqnum else {
        return Ok(());
    };
    for (pair, target) in pairs.iter().zip(targets) {
        let actual = state.incoming(*target).expect("found").seqnum;
        if actual != expected {
            return Err(CommandError::SeqnumMismatch {
                pair: pair.to_string(),
                expected,
                actual,
            });
        }
    }
    Ok(())
}
