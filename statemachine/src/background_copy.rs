//! The background-copy step: copy up to N out-of-sync tracks of one relationship, lowest first.
//! The leader proposes these; bounding N keeps each apply short.

use crate::apply::{Failure, Tx};
use crate::command::Pair;
use crate::error::CommandError;
use crate::event::Event;
use crate::relationship::find_existing;
use crate::track::TrackReader;

pub(crate) fn copy_step<R: TrackReader>(
    tx: &mut Tx<'_, R>,
    source: &str,
    target: &str,
    max_tracks: u32,
) -> Result<(), Failure<R::Error>> {
    let pair = Pair::new(source, target);
    let target_id = find_existing(tx.state, std::slice::from_ref(&pair))?[0];
    let rel = tx.state.incoming(target_id).expect("found");
    if !rel.background_copy {
        return Err(CommandError::BackgroundCopyOff { pair: pair.to_string() }.into());
    }
    let source_id = rel.source;
    let mut copied = 0;
    let mut from = 0;
    while copied < max_tracks {
        let rel = tx.state.incoming(target_id).expect("found");
        let Some(track) = rel.out_of_sync.first_from(from) else {
            break;
        };
        tx.copy_to_target(source_id, target_id, track)?;
        copied += 1;
        from = track + 1;
    }
    let remaining = tx.state.incoming(target_id).map_or(0, |r| r.out_of_sync.len());
    tx.events.push(Event::TracksCopied {
        source: source.to_string(),
        target: target.to_string(),
        tracks: copied,
        remaining,
    });
    Ok(())
}
