//! The deterministic FlashCopy state machine.
//!
//! Pure: no I/O, no clock, no randomness, no async. [`apply`] takes the state, a command and the
//! leader's timestamp, reads stored tracks through a [`TrackReader`], and returns the track
//! operations storage must execute atomically plus the events it produced. Replaying the same
//! commands from an empty state gives the same state and the same [`State::digest`].

mod apply;
mod background_copy;
mod bitmap;
mod changes;
mod command;
mod digest;
mod error;
mod establish;
mod event;
mod freeze;
mod held_writes;
mod host_write;
mod hosts;
mod mem_tracks;
mod relationship;
mod replay;
mod resync;
mod reverse;
mod state;
mod stored_tracks;
mod timestamp;
mod track;
mod track_view;
mod volume;
mod withdraw;

pub use apply::{apply, Applied};
pub use bitmap::OutOfSync;
pub use changes::{BitmapKind, DetailChanges, BITMAP_BLOCK_TRACKS};
pub use command::{Command, EstablishOptions, HostWrite, Pair, WriteData};
pub use digest::MetadataDigest;
pub use error::CommandError;
pub use establish::FREEZE_TIMEOUT_MILLIS;
pub use event::Event;
pub use freeze::THAW_BATCH;
pub use held_writes::{HeldWrite, HeldWrites};
pub use host_write::MAX_WRITE_BYTES;
pub use hosts::{Access, Host, HostIdentity, HostInfo};
pub use mem_tracks::MemTracks;
pub use relationship::{Relationship, RelationshipState, MAX_TARGETS_PER_SOURCE};
pub use replay::{Replay, Replayed};
pub use state::{CopyWork, Extent, Globals, RelationshipInfo, State, VolumeInfo, VolumeRecord};
pub use timestamp::{BadTime, Stamp, Timestamp};
pub use track::{block_size, BlockSums, TrackOp, TrackReader, VolumeId, BLOCKS_PER_TRACK, TRACK_SIZE};
pub use volume::{Volume, VolumeState, MAX_VOLUME_SIZE};
