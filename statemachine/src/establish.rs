//! mkflash: establish relationships, all pairs at one point in time (this entry), all or nothing.

use crate::bitmap::OutOfSync;
use crate::command::{EstablishOptions, MirrorTarget, Pair};
use crate::error::CommandError;
use crate::event::Event;
use crate::pairs::resolve_pairs;
use crate::relationship::{Relationship, MAX_TARGETS_PER_SOURCE};
use crate::revertible::{held_image, revertible_source};
use crate::state::State;
use crate::track::{TrackReader, VolumeId};
use crate::tx::{Failure, Tx};
use roaring::RoaringBitmap;
use std::collections::BTreeSet;

/// How long a consistency-group freeze holds writes unless thawed earlier.
pub const FREEZE_TIMEOUT_MILLIS: u64 = 120_000;

pub(crate) fn mkflash<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    options: &EstablishOptions,
) -> Result<(), Failure<R::Error>> {
    if options.record && !options.persist {
        return Err(CommandError::InvalidOption {
            option: "--record".into(),
            reason: "change recording needs a persistent relationship: add --persist".into(),
        }
        .into());
    }
    crate::copy_rate::check(options.copy_rate)?;
    if options.nocp && options.copy_rate.is_some_and(|r| r > 0) {
        return Err(CommandError::InvalidOption {
            option: "--copy-rate".into(),
            reason: "a background copy rate needs a background copy: drop --nocp".into(),
        }
        .into());
    }
    let resolved = resolve_pairs(tx.state(), pairs)?;
    if let Some(error) = crate::cascade::linked(tx.state(), pairs, &resolved) {
        return Err(error.into());
    }
    for (i, pair) in pairs.iter().enumerate() {
        check_pair(tx.state(), pair, &resolved, i, options)?;
    }

    for (pair, &(source, target)) in pairs.iter().zip(&resolved) {
        let tracks = tx
            .state()
            .track_count(tx.state().record(source).expect("resolved").volume.size);
        let rel = Relationship {
            source,
            target,
            seqnum: options.seqnum,
            persistent: options.persist,
            recording: options.record,
            background_copy: !options.nocp && options.copy_rate != Some(0),
            copy_rate: options.copy_rate.filter(|r| *r > 0),
            target_write_inhibit: options.tgtinhibit,
            completing: false,
            remote_pair: matches!(
                options.mirror,
                MirrorTarget::RemotePair | MirrorTarget::RemotePairSecondary
            ),
            out_of_sync: OutOfSync::all(tracks),
            kept: RoaringBitmap::new(),
            kept_by: source,
            source_changes: RoaringBitmap::new(),
            target_changes: RoaringBitmap::new(),
            created_at: tx.now(),
            synced_at: tx.now(),
            revertible: None,
        };
        tx.bitmaps_replaced(target);
        let record = tx.record_mut(target);
        record.incoming = Some(rel);
        record.volume.incomplete = false;
        tx.record_mut(source).volume.targets.insert(target);
        tx.push_event(Event::Established {
            source: pair.source.clone(),
            target: pair.target.clone(),
            seqnum: options.seqnum,
        });
        if options.mirror == MirrorTarget::Copy {
            // The target now reads the source's image: every track stored on either side (or
            // up the source's cascade), or read from kept tracks there, may differ at the
            // target's secondary.
            let mut tracks = RoaringBitmap::new();
            let volumes: Vec<VolumeId> = tx.state().upstream(source).chain([target]).collect();
            for volume in volumes {
                if let Some(rel) = tx.state().incoming(volume) {
                    tracks |= &rel.kept;
                }
                let mut next = tx.next_stored(volume, 0)?;
                while let Some(track) = next {
                    tracks.insert(track);
                    next = tx.next_stored(volume, track + 1)?;
                }
            }
            crate::pprc::target_changed(tx, target, &tracks);
        }
    }

    if options.freeze {
        let until = tx.now().plus_millis(FREEZE_TIMEOUT_MILLIS);
        let sources: BTreeSet<VolumeId> = resolved.iter().map(|(s, _)| *s).collect();
        for source in sources {
            tx.set_frozen(source, Some(until));
            tx.push_event(Event::Frozen {
                volume: tx.name(source),
                until,
            });
        }
    }
    Ok(())
}

/// Every rule of SPEC §4.1 for pair `i`, against the state and the command's other pairs.
fn check_pair(
    state: &State,
    pair: &Pair,
    resolved: &[(VolumeId, VolumeId)],
    i: usize,
    options: &EstablishOptions,
) -> Result<(), CommandError> {
    let (source, target) = resolved[i];
    let src = state.record(source).expect("resolved");
    let tgt = state.record(target).expect("resolved");

    if src.volume.size != tgt.volume.size {
        return Err(CommandError::SizeMismatch {
            pair: pair.to_string(),
            source_name: pair.source.clone(),
            source_size: src.volume.size,
            target: pair.target.clone(),
            target_size: tgt.volume.size,
        });
    }
    if let Some(error) = mirror_target(state, source, target, pair, options.mirror) {
        return Err(error);
    }
    if let Some(rel) = &tgt.incoming {
        return Err(CommandError::TargetInUse {
            target: pair.target.clone(),
            relationship: state.pair_name(rel),
            kind: rel.kind().to_string(),
            created_at: rel.created_at,
        });
    }
    if let Some(error) = target_frozen(state, pair, target) {
        return Err(error);
    }
    // Cascading: the target may be a source, if nothing still reads its image; the source may
    // be a target, unless that is a cycle or an increment that may be reverted under it.
    if let Some(error) = crate::cascade::cycle(state, pair, source, target)
        .or_else(|| crate::cascade::too_deep(state, pair, source, target))
        .or_else(|| crate::cascade::dependents_copying(state, pair, target))
        .or_else(|| crate::cascade::recording_dependents(state, pair, target))
    {
        return Err(error);
    }
    if let Some(error) = held_image(state, target).or_else(|| revertible_source(state, source)) {
        return Err(error);
    }
    if src.volume.frozen_until.is_some() {
        return Err(CommandError::SourceFrozen {
            source_name: pair.source.clone(),
        });
    }
    let new_here = resolved.iter().filter(|(s, _)| *s == source).count();
    let existing = src.volume.targets.len();
    if existing + new_here > MAX_TARGETS_PER_SOURCE {
        return Err(CommandError::TooManyTargets {
            source_name: pair.source.clone(),
            existing,
            max: MAX_TARGETS_PER_SOURCE,
        });
    }
    // Any number of them may record changes (DS8000's multiple incremental FlashCopy): each
    // relationship keeps its own change bitmaps, so each refresh copies what changed since its
    // own last point in time.
    Ok(())
}

/// Refuses a new point in time on a target that is frozen (the source of a `--freeze`
/// relationship, in a cascade) or still has writes a freeze held: they would land on top of it
/// at the thaw.
pub(crate) fn target_frozen(state: &State, pair: &Pair, target: VolumeId) -> Option<CommandError> {
    let record = state.record(target)?;
    (record.volume.frozen_until.is_some() || !record.held_writes.is_empty()).then(|| CommandError::TargetFrozen {
        name: pair.target.clone(),
    })
}

/// Whether a FlashCopy may place tracks on a Metro Mirror volume: a primary only if its
/// secondary gets them (`--tgtpprc`) or runs the same FlashCopy (`--pmir`, source and target
/// full-duplex primaries mirrored to the same cluster); a secondary only as that same
/// FlashCopy at the secondaries' site.
pub(crate) fn mirror_target(
    state: &State,
    source: VolumeId,
    target: VolumeId,
    pair: &Pair,
    how: MirrorTarget,
) -> Option<CommandError> {
    use crate::mirror::{PairRole, PairState};
    let mirror_of = |id: VolumeId| state.record(id).and_then(|r| r.mirror.as_ref());
    let (m, s) = (mirror_of(target), mirror_of(source));
    let remote = |m: &crate::mirror::MirrorPair| format!("{}/{}", m.remote_cluster, m.remote_volume);
    let pmir_not_possible = |reason: String| CommandError::PmirNotPossible {
        pair: pair.to_string(),
        reason,
    };
    match (how, m) {
        (MirrorTarget::RemotePair, _) if [source, target].iter().any(|v| holds_writes(state, *v)) => Some(
            pmir_not_possible("a volume is frozen or still releasing held writes; thaw it first".into()),
        ),
        (MirrorTarget::RemotePair, _) => {
            let duplex = |m| in_role(m, PairRole::Primary).filter(|m| m.state == PairState::FullDuplex);
            match (duplex(s), duplex(m)) {
                (Some(s), Some(m)) if s.remote_cluster == m.remote_cluster => None,
                (Some(_), Some(_)) => Some(pmir_not_possible(
                    "the source and the target are mirrored to different clusters".into(),
                )),
                _ => Some(pmir_not_possible(
                    "the source and the target must both be full-duplex Metro Mirror primaries".into(),
                )),
            }
        }
        (MirrorTarget::RemotePairSecondary, _) => {
            match (in_role(s, PairRole::Secondary), in_role(m, PairRole::Secondary)) {
                (Some(s), Some(m)) if s.remote_cluster == m.remote_cluster => None,
                _ => Some(pmir_not_possible(
                    "at the secondaries' site, the source and the target must both be secondaries of the same cluster"
                        .into(),
                )),
            }
        }
        (_, None) => None,
        (MirrorTarget::Copy, Some(m)) if m.role == PairRole::Primary => None,
        (_, Some(m)) if m.role == PairRole::Primary => Some(CommandError::TargetIsMirrorPrimary {
            volume: pair.target.clone(),
            pair: pair.to_string(),
            remote: remote(m),
        }),
        (_, Some(_)) => Some(CommandError::TargetIsMirrorSecondary {
            volume: pair.target.clone(),
            pair: pair.to_string(),
        }),
    }
}

fn in_role(m: Option<&crate::mirror::MirrorPair>, role: crate::mirror::PairRole) -> Option<&crate::mirror::MirrorPair> {
    m.filter(|m| m.role == role)
}

/// Frozen, or still releasing writes a freeze held.
fn holds_writes(state: &State, volume: VolumeId) -> bool {
    state
        .record(volume)
        .is_some_and(|r| r.volume.frozen_until.is_some() || !r.held_writes.is_empty())
}
