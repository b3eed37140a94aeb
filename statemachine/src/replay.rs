//! Replay of the journal. The journal keeps every applied command in its journal form (host
//! writes without their bytes, see [`Command::journal_form`]) with the leader's timestamp. Which
//! tracks are stored depends only on the commands, never on the bytes, so applying the journal
//! forms in order to an empty state rebuilds every volume, relationship, bitmap and held write
//! exactly — and every outcome and event. Track contents are not rebuilt.

use crate::apply::apply_as;
use crate::command::Command;
use crate::error::CommandError;
use crate::event::Event;
use crate::state::State;
use crate::stored_tracks::StoredTracks;
use crate::timestamp::Stamp;
use crate::track::{VolumeId, TRACK_SIZE};

/// A scratch state machine fed from the journal.
pub struct Replay {
    state: State,
    tracks: StoredTracks,
}

/// What replaying one command gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    pub result: Result<(), CommandError>,
    pub events: Vec<Event>,
}

impl Default for Replay {
    fn default() -> Self {
        Replay::new()
    }
}

impl Replay {
    /// An empty state, as every cluster starts.
    pub fn new() -> Replay {
        Replay::with_track_size(TRACK_SIZE)
    }

    /// For tests that use tiny tracks (see [`State::with_track_size`]).
    pub fn with_track_size(track_size: u32) -> Replay {
        Replay {
            state: State::with_track_size(track_size),
            tracks: StoredTracks::default(),
        }
    }

    pub fn apply(&mut self, command: &Command, time: impl Into<Stamp>) -> Replayed {
        let applied = match apply_as(&mut self.state, &self.tracks, command, time.into(), true) {
            Ok(applied) => applied,
            Err(never) => match never {},
        };
        crate::track::execute(&applied.ops, self.state.track_size(), &mut self.tracks);
        Replayed {
            result: applied.result,
            events: applied.events,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every stored track, in (volume, track) order: which tracks hold data is rebuilt exactly.
    pub fn stored_tracks(&self) -> impl Iterator<Item = (VolumeId, u32)> + '_ {
        self.tracks.iter()
    }
}
