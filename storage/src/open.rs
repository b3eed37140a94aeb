//! Opening a node's data directory: for serving (log and state-machine stores over one
//! database), or read-only for an offline audit.

use crate::db::{open_db, open_db_read_only, OpenError};
use crate::log_disk::{DirLogDisk, LogDisk};
use crate::log_files::LogFiles;
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::view::StateView;
use std::path::Path;
use std::sync::Arc;

/// Opens (or creates) a node's storage in `dir`: the database in `dir/db`, the Raft log in
/// `dir/raft-log`, snapshots in `dir/snapshots`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let log = DirLogDisk::new(dir.join("raft-log")).map_err(|source| OpenError::Io {
        path: dir.join("raft-log").display().to_string(),
        source,
    })?;
    open_with_log(dir, Arc::new(log))
}

/// Opens a node's storage in `dir` with its Raft log on `log` instead of `dir/raft-log` (a
/// simulated disk that can lose power).
pub fn open_with_log(dir: &Path, log: Arc<dyn LogDisk>) -> Result<(LogStore, StateMachineStore), OpenError> {
    let io = |source| OpenError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir.join("snapshots")).map_err(io)?;
    let db = Arc::new(open_db(&dir.join("db"))?);
    let log_io = |source| OpenError::Io {
        path: log.show(""),
        source,
    };
    // The state first: a directory of another format is refused before the log is touched
    // (opening the log may cut off what it takes for a torn last record).
    let state = StateMachineStore::open(db.clone(), dir.join("snapshots"))?;
    let files = LogFiles::open(log.clone()).map_err(log_io)?;
    Ok((LogStore::new(db, files).map_err(log_io)?, state))
}

/// Opens a node's data directory read-only, for offline audits (a stopped node's, or a copy).
/// The state is as of its last flush: complete after a clean stop; after a crash (or while
/// the node runs) the latest entries are only in the log, applied at the node's next start.
/// Nothing in `dir` is changed.
pub fn open_read_only(dir: &Path) -> Result<StateView, OpenError> {
    let path = dir.join("db");
    if !path.is_dir() {
        return Err(OpenError::Corrupt {
            path: dir.display().to_string(),
            reason: "this is not a flashcopy data directory (it has no db/ inside)".into(),
        });
    }
    StateView::open_read_only(Arc::new(open_db_read_only(&path)?))
}
