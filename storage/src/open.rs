//! Opening a node's data directory: for serving (log and state-machine stores over one
//! database), or read-only for an offline audit.

use crate::db::{db_options, open_db, OpenError, ALL_CFS};
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::view::StateView;
use rocksdb::DB;
use std::path::Path;
use std::sync::Arc;

/// Opens (or creates) a node's storage in `dir`: the database in `dir/db`, snapshots in
/// `dir/snapshots`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let io = |source| OpenError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir.join("snapshots")).map_err(io)?;
    let db = Arc::new(open_db(&dir.join("db"))?);
    let state = StateMachineStore::open(db.clone(), dir.join("snapshots"))?;
    Ok((LogStore::new(db), state))
}

/// Opens a node's data directory read-only, for offline audits (a stopped node's, or a copy; a
/// running node's is read as of what is on disk). Nothing in `dir` is changed.
pub fn open_read_only(dir: &Path) -> Result<StateView, OpenError> {
    let path = dir.join("db");
    if !path.is_dir() {
        return Err(OpenError::Corrupt {
            path: dir.display().to_string(),
            reason: "this is not a flashcopy data directory (it has no db/ inside)".into(),
        });
    }
    let db = DB::open_cf_for_read_only(&db_options(), &path, ALL_CFS, false).map_err(|source| OpenError::Db {
        path: path.display().to_string(),
        source,
    })?;
    StateView::open_read_only(Arc::new(db))
}
