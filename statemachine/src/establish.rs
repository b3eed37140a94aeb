//! mkflash: establish relationships, all pairs at one point in time (this entry), all or nothing.

use crate::bitmap::OutOfSync;
use crate::command::{EstablishOptions, Pair};
use crate::error::CommandError;
use crate::event::Event;
use crate::pairs::resolve_pairs;
use crate::relationship::{Relationship, MAX_TARGETS_PER_SOURCE};
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
    let resolved = resolve_pairs(tx.state(), pairs)?;
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
            background_copy: !options.nocp,
            target_write_inhibit: options.tgtinhibit,
            completing: false,
            out_of_sync: OutOfSync::all(tracks),
            source_changes: RoaringBitmap::new(),
            target_changes: RoaringBitmap::new(),
            created_at: tx.now(),
            synced_at: tx.now(),
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
    let cascade = |reason: String| CommandError::CascadeNotAllowed {
        pair: pair.to_string(),
        reason,
    };

    if src.volume.size != tgt.volume.size {
        return Err(CommandError::SizeMismatch {
            pair: pair.to_string(),
            source_name: pair.source.clone(),
            source_size: src.volume.size,
            target: pair.target.clone(),
            target_size: tgt.volume.size,
        });
    }
    if let Some(error) = mirror_target(state, target, pair) {
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
    if tgt.volume.frozen_until.is_some() || !tgt.held_writes.is_empty() {
        // Its held writes would land on top of the new point-in-time image at the thaw.
        return Err(CommandError::TargetFrozen {
            name: pair.target.clone(),
        });
    }
    if let Some(t) = tgt.volume.targets.first() {
        return Err(cascade(format!(
            "target \"{}\" is the source of relationship {}:{}",
            pair.target,
            pair.target,
            state.name(*t)
        )));
    }
    if let Some(rel) = &src.incoming {
        return Err(cascade(format!(
            "source \"{}\" is the target of relationship {}",
            pair.source,
            state.pair_name(rel)
        )));
    }
    if resolved.iter().any(|(s, t)| *s == target || *t == source) {
        return Err(cascade(
            "a volume is both a source and a target in this command".to_string(),
        ));
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
    if options.record {
        let recording = src
            .volume
            .targets
            .iter()
            .find_map(|t| state.incoming(*t).filter(|r| r.recording));
        if let Some(rel) = recording {
            return Err(CommandError::IncrementalExists {
                source_name: pair.source.clone(),
                relationship: state.pair_name(rel),
            });
        }
        if new_here > 1 {
            return Err(CommandError::IncrementalExists {
                source_name: pair.source.clone(),
                relationship: "another pair of this command".into(),
            });
        }
    }
    Ok(())
}

/// A FlashCopy may not place tracks on a Metro Mirror volume: a secondary is written only by
/// its mirror, and a primary's secondary would not get them.
pub(crate) fn mirror_target(state: &State, target: VolumeId, pair: &Pair) -> Option<CommandError> {
    let m = state.record(target)?.mirror.as_ref()?;
    Some(match m.role {
        crate::mirror::PairRole::Primary => CommandError::TargetIsMirrorPrimary {
            volume: pair.target.clone(),
            pair: pair.to_string(),
            remote: format!("{}/{}", m.remote_cluster, m.remote_volume),
        },
        crate::mirror::PairRole::Secondary => CommandError::TargetIsMirrorSecondary {
            volume: pair.target.clone(),
            pair: pair.to_string(),
        },
    })
}
