//! Cascading FlashCopy (A→B, B→C): a target may be the source of other relationships and a
//! source a target. Reads of C's uncopied tracks resolve through B to A (`State::resolve_read`),
//! and a copy to a target copies what its source reads there (`Tx::copy_to_target`), so a host
//! write anywhere first gives each target that still shares the track the writer's current
//! image: a write to B copies to C what B reads (perhaps A's), a write to A copies to B, where
//! C then finds it.
//!
//! What cannot be kept so is refused: a cycle, a cascade deeper than `MAX_CASCADE_DEPTH`, pairs
//! that chain within one command, and any command that would change what a volume reads as
//! (establish onto it, refresh, reverse, a revertible increment) or leave it incomplete
//! (withdrawing it early) while a relationship it is the source of still has tracks to copy,
//! since those tracks read its image. When such a command changes a volume's image, the
//! recording relationships it is the source of note the tracks as changed (`image_changed`).

use crate::command::Pair;
use crate::error::CommandError;
use crate::state::State;
use crate::track::{TrackReader, VolumeId};
use crate::tx::Tx;
use roaring::RoaringBitmap;

/// Refuses a command on `pair` that would change what `volume` reads as, or leave it
/// incomplete, while a relationship it is the source of still has tracks that read it.
pub(crate) fn dependents_copying(state: &State, pair: &Pair, volume: VolumeId) -> Option<CommandError> {
    let record = state.record(volume)?;
    record.volume.targets.iter().find_map(|t| {
        let rel = state.incoming(*t)?;
        (!rel.out_of_sync.is_empty()).then(|| CommandError::CascadeCopyRunning {
            pair: pair.to_string(),
            volume: state.name(volume).to_string(),
            relationship: state.pair_name(rel),
            remaining: rel.out_of_sync.len(),
        })
    })
}

/// Refuses `source`→`target` when the target is already up the source's cascade: a cycle,
/// whose reads would never resolve.
pub(crate) fn cycle(state: &State, pair: &Pair, source: VolumeId, target: VolumeId) -> Option<CommandError> {
    state
        .upstream(source)
        .any(|v| v == target)
        .then(|| CommandError::CascadeNotAllowed {
            pair: pair.to_string(),
            reason: format!(
                "\"{}\" is up the cascade of \"{}\" already: the relationship would make a cycle",
                pair.target, pair.source
            ),
        })
}

/// At most this many relationships in a row (A→B→…): reads, copies and block status walk the
/// cascade, so its depth bounds their cost.
pub const MAX_CASCADE_DEPTH: usize = 16;

/// Refuses `source`→`target` when the cascade through it would be deeper than
/// [`MAX_CASCADE_DEPTH`].
pub(crate) fn too_deep(state: &State, pair: &Pair, source: VolumeId, target: VolumeId) -> Option<CommandError> {
    let above = state.upstream(source).count() - 1;
    let depth = above + 1 + height(state, target);
    (depth > MAX_CASCADE_DEPTH).then(|| CommandError::CascadeNotAllowed {
        pair: pair.to_string(),
        reason: format!("the cascade would be {depth} relationships deep; at most {MAX_CASCADE_DEPTH}"),
    })
}

/// The longest run of relationships below `volume`.
fn height(state: &State, volume: VolumeId) -> usize {
    state.record(volume).map_or(0, |r| {
        r.volume
            .targets
            .iter()
            .map(|t| 1 + height(state, *t))
            .max()
            .unwrap_or(0)
    })
}

/// Refuses establishing onto `target` while it is the source of a recording relationship: a
/// whole new image changes every track, which that relationship's change recording could only
/// take at a cost that grows with the volume. (Establish the cascade from its start, or
/// withdraw that relationship first.)
pub(crate) fn recording_dependents(state: &State, pair: &Pair, target: VolumeId) -> Option<CommandError> {
    let record = state.record(target)?;
    let rel = record
        .volume
        .targets
        .iter()
        .filter_map(|t| state.incoming(*t))
        .find(|r| r.recording)?;
    Some(CommandError::CascadeNotAllowed {
        pair: pair.to_string(),
        reason: format!(
            "target \"{}\" is the source of {}, which records changes: a whole new image cannot be recorded as changes; withdraw it first",
            pair.target,
            state.pair_name(rel)
        ),
    })
}

/// Refuses a command whose pairs chain (a volume both a source and a target in it): each pair's
/// rules were checked against the state before the command, not after the pairs before it.
pub(crate) fn chained(pairs: &[Pair], ends: &[(VolumeId, VolumeId)]) -> Option<CommandError> {
    pairs
        .iter()
        .zip(ends)
        .find(|(_, (source, target))| ends.iter().any(|(s, t)| s == target || t == source))
        .map(|(pair, _)| CommandError::CascadeNotAllowed {
            pair: pair.to_string(),
            reason: "a volume is both a source and a target in this command; run it one relationship at a time"
                .to_string(),
        })
}

/// Refuses new relationships of one command that link through the cascade: a pair whose source
/// is its other pair's target or below it. Each pair's cycle and depth were checked against the
/// state before the command, which cannot see a chain through two new relationships.
pub(crate) fn linked(state: &State, pairs: &[Pair], ends: &[(VolumeId, VolumeId)]) -> Option<CommandError> {
    if ends.len() < 2 {
        return None;
    }
    for (i, &(_, target)) in ends.iter().enumerate() {
        let below = below(state, target);
        if let Some((pair, _)) = pairs
            .iter()
            .zip(ends)
            .enumerate()
            .find(|(j, (_, (source, _)))| *j != i && below.contains(source))
            .map(|(_, p)| p)
        {
            return Some(CommandError::CascadeNotAllowed {
                pair: pair.to_string(),
                reason: format!(
                    "its source is \"{}\" or below it, the target of another pair of this command; establish them one at a time",
                    pairs[i].target
                ),
            });
        }
    }
    None
}

/// The volume and every volume below it in the cascade.
fn below(state: &State, volume: VolumeId) -> std::collections::BTreeSet<VolumeId> {
    let mut found = std::collections::BTreeSet::from([volume]);
    let mut todo = vec![volume];
    while let Some(v) = todo.pop() {
        for t in state
            .record(v)
            .map(|r| r.volume.targets.iter().copied())
            .into_iter()
            .flatten()
        {
            if found.insert(t) {
                todo.push(t);
            }
        }
    }
    found
}

/// The (source, target) of each existing relationship, by target.
pub(crate) fn ends(state: &State, targets: &[VolumeId]) -> Vec<(VolumeId, VolumeId)> {
    targets
        .iter()
        .map(|t| (state.incoming(*t).expect("found").source, *t))
        .collect()
}

/// What `volume` reads as changed on `tracks` by a command, not a host write (a refresh, an
/// increment or its revert, a withdrawal or fast reverse that leaves it incomplete): a mirror
/// secondary gets them (unless `remote_pair`: the secondaries' site runs the same command), and
/// each recording relationship it is the source of notes them as changed on its source, so its
/// next refresh or restore copies them. None of its targets shares them (`dependents_copying`).
pub(crate) fn image_changed<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    volume: VolumeId,
    tracks: &RoaringBitmap,
    remote_pair: bool,
) {
    if tracks.is_empty() {
        return;
    }
    if !remote_pair {
        crate::pprc::target_changed(tx, volume, tracks);
    }
    let targets: Vec<VolumeId> = tx
        .state()
        .record(volume)
        .map(|r| r.volume.targets.iter().copied().collect())
        .unwrap_or_default();
    for target in targets {
        if tx.state().incoming(target).is_some_and(|r| r.recording) {
            tx.bitmaps_replaced(target);
            tx.relationship_mut(target).source_changes |= tracks;
        }
    }
}
