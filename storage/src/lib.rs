//! Persistence for flashcopy: per node, the Raft log in append-only segment files and one
//! RocksDB holding the Raft metadata, the volume records, the track blocks and their hashes, and
//! the audit history. Knows nothing of the network, NBD or HTTP.
//!
//! - [`LogStore`] implements openraft's `RaftLogStorage`: entries and vote are synced before
//!   they are acknowledged. The log is the state's write-ahead log. Its files are on a
//!   [`LogDisk`]: the data directory, or a simulated disk that loses what was not synced.
//! - [`StateMachineStore`] implements `RaftStateMachine`: each entry is applied by the pure
//!   `statemachine` and its track ops, touched records and applied log id are written in one
//!   `WriteBatch`. A snapshot is a RocksDB checkpoint; its stream is written only when a follower
//!   needs it.
//! - [`Space`]: what the state uses of the disk, and giving back what dropped tracks held.
//! - [`StateRead`] is the read side the node's parts query (lsvol, lsflash, volume data, audit);
//!   [`StateView`] implements it over RocksDB, and is also opened read-only on a stopped node's
//!   directory ([`open_read_only`]) for offline audits.
//! - The audit history is a journal that replays: `StateView::state_at` and `StateView::verify`.

// openraft's traits return its `StorageError` (over 200 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

/// Builds a `StorageError` from openraft's `StorageIOError` constructors.
macro_rules! io_error {
    ($kind:ident, $($arg:expr),+) => {
        StorageError::from(StorageIOError::$kind($($arg),+))
    };
}

mod applied_state;
mod audit;
mod codec;
mod db;
mod log_disk;
mod log_files;
mod log_store;
mod open;
mod records;
pub mod runtime;
mod snapshot;
mod snapshot_data;
mod snapshots;
mod space;
mod state_machine;
mod state_read;
mod tracks;
mod types;
mod view;

pub use audit::{AuditFilter, AuditRecord, JournalError, Rebuilt, Until, Verification};
pub use db::{OpenError, UNFLUSHED_MAX};
pub use log_disk::{DirLogDisk, LogDisk, LogFile};
pub use log_store::{LogStore, REPLICATION_BYTES};
pub use open::{open, open_read_only, open_with_log};
pub use snapshot_data::SnapshotData;
pub use space::{free_bytes, total_bytes, Reclaimed, Space, Usage};
pub use state_machine::{ApplyObserver, MirrorTap, StateMachineStore};
pub use state_read::{FlushError, SharedState, StateQuery, StateRead};
pub use types::{NodeInfo, Request, Response, TypeConfig};
pub use view::{AppliedNotice, ReadError, StateView};
