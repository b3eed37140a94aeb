//! chflash: a relationship's background copy rate (SVC's per-mapping copy rate), in MiB/s. It
//! is Raft state, so every node and every future leader pace the copy the same way; the node's
//! own `--copy-rate` stays a ceiling over all relationships. A rate of 0 turns the background
//! copy off (the relationship is `nocopy`); `None` lets it run as fast as the node allows.

use crate::command::Pair;
use crate::error::CommandError;
use crate::event::Event;
use crate::pairs::find_existing;
use crate::relationship::MAX_COPY_RATE;
use crate::track::TrackReader;
use crate::tx::{Failure, Tx};

/// Refuses a rate no disk reaches (a typo, or bytes where MiB/s were meant).
pub(crate) fn check(copy_rate: Option<u32>) -> Result<(), CommandError> {
    match copy_rate {
        Some(rate) if rate > MAX_COPY_RATE => Err(CommandError::InvalidOption {
            option: "--copy-rate".into(),
            reason: format!("{rate} MiB/s is more than {MAX_COPY_RATE}: the rate is in MiB/s (0: no background copy)"),
        }),
        _ => Ok(()),
    }
}

/// Sets the copy rate of every named relationship, all or nothing.
pub(crate) fn chflash<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    pairs: &[Pair],
    copy_rate: Option<u32>,
) -> Result<(), Failure<R::Error>> {
    check(copy_rate)?;
    let targets = find_existing(tx.state(), pairs)?;
    for (pair, target) in pairs.iter().zip(&targets) {
        let rel = tx.state().incoming(*target).expect("found");
        if rel.completing && copy_rate == Some(0) {
            return Err(CommandError::InvalidOption {
                option: "--copy-rate 0".into(),
                reason: format!(
                    "relationship {pair} is completing a withdrawal (rmflash --cp), which needs its background copy"
                ),
            }
            .into());
        }
    }
    for (pair, target) in pairs.iter().zip(targets) {
        let rel = tx.relationship_mut(target);
        rel.background_copy = copy_rate != Some(0);
        rel.copy_rate = copy_rate.filter(|r| *r > 0);
        tx.push_event(Event::CopyRateChanged {
            source: pair.source.clone(),
            target: pair.target.clone(),
            copy_rate,
        });
    }
    Ok(())
}
