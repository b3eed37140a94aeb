//! The deterministic FlashCopy state machine.
//!
//! Pure: no I/O, no clock, no randomness, no async. [`apply`] takes the state, a command and the
//! leader's timestamp, reads stored tracks through a [`TrackReader`], and returns the track
//! operations storage must execute atomically plus the events it produced. Replaying the same
//! commands from an empty state gives the same state and the same [`State::digest`].

// The data: tracks, volumes, relationships, hosts, the state that holds them.
mod bitmap;
mod cascade;
mod changes;
mod command;
mod error;
mod event;
mod globals;
mod held_writes;
mod hosts;
mod mirror;
mod record;
mod relationship;
mod state;
mod timestamp;
mod track;
mod volume;

// The state's queries, one concern each.
mod allocation;
mod listing;
mod metadata_digest;
mod reads;
mod scheduling;

// Digests and stored tracks as one apply sees them.
mod digest;
mod mem_tracks;
mod stored_tracks;
mod track_view;

// One apply: the transaction, the command handlers, the dispatch; and the journal's replay.
mod apply;
mod background_copy;
mod copy_rate;
mod establish;
mod freeze;
mod host_mapping;
mod host_write;
mod kept_sweep;
mod pairs;
mod pprc;
mod provision;
mod replay;
mod resync;
mod reverse;
mod revertible;
#[cfg(feature = "sabotage")]
pub mod sabotage;
mod tx;
mod withdraw;

pub use allocation::{AllocationQuery, Extent};
pub use apply::{apply, Applied};
pub use bitmap::OutOfSync;
pub use cascade::MAX_CASCADE_DEPTH;
pub use changes::{BitmapKind, DetailChanges, BITMAP_BLOCK_TRACKS};
pub use command::{
    Command, EstablishOptions, HostWrite, MirrorBatch, MirrorTarget, MirroredWrite, Pair, SecondaryMark, WriteData,
};
pub use error::CommandError;
pub use establish::FREEZE_TIMEOUT_MILLIS;
pub use event::Event;
pub use freeze::THAW_BATCH;
pub use globals::Globals;
pub use held_writes::{HeldWrite, HeldWrites};
pub use host_write::MAX_WRITE_BYTES;
pub use hosts::{Access, Host, HostIdentity, HostInfo};
pub use kept_sweep::SWEEP_TRACKS;
pub use listing::{PairInfo, PathInfo, RelationshipInfo, VolumeInfo};
pub use mem_tracks::MemTracks;
pub use metadata_digest::MetadataDigest;
pub use mirror::{MirrorPair, PairRole, PairState, PprcPath, SuspendReason, REDACTED};
pub use pprc::MIRROR_COPY_TRACKS;
pub use reads::ReadPlan;
pub use record::VolumeRecord;
pub use relationship::{Relationship, RelationshipState, Revertible, MAX_COPY_RATE, MAX_TARGETS_PER_SOURCE};
pub use replay::{Replay, Replayed};
pub use scheduling::CopyWork;
pub use state::State;
pub use timestamp::{BadTime, Stamp, Timestamp};
pub use track::{
    block_size, execute as execute_track_ops, BlockSums, TrackOp, TrackReader, TrackSink, VolumeId, BLOCKS_PER_TRACK,
    TRACK_SIZE,
};
pub use tx::Mirrored;
pub use volume::{Volume, VolumeState, MAX_VOLUME_SIZE};
