//! The applied state: what the state-machine store and its read view share, and how it is
//! loaded from RocksDB.

use crate::codec;
use crate::db::*;
use crate::records::Loader;
use crate::types::NodeInfo;
use openraft::{LogId, StoredMembership};
use rocksdb::{IteratorMode, DB};
use statemachine::{Globals, Host, State};

/// The state as of the last applied entry: volume metadata in memory, the applied log id and
/// the membership. Loaded from the meta column family at open and after a snapshot install.
pub(crate) struct AppliedState {
    pub(crate) state: State,
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) membership: StoredMembership<u64, NodeInfo>,
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column families are created at open")
}

pub(crate) fn corrupt(path: &str, reason: impl ToString) -> OpenError {
    OpenError::Corrupt {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads the state-machine metadata from the meta column family.
pub(crate) fn load(db: &DB) -> std::result::Result<AppliedState, OpenError> {
    let mut globals = State::new().globals();
    let mut hosts: Vec<Host> = Vec::new();
    let mut site: (Option<String>, Vec<statemachine::PprcPath>) = (None, Vec::new());
    let mut records = Loader::default();
    let mut last_applied = None;
    let mut membership = StoredMembership::default();
    for item in db.iterator_cf(cf(db, CF_META), IteratorMode::Start) {
        let (key, value) = item.map_err(|e| corrupt("meta", e))?;
        let key = key.as_ref();
        if records.take(key, &value).map_err(|e| corrupt("volume record", e))? {
            continue;
        } else if key == KEY_GLOBALS {
            globals = codec::decode::<Globals>(&value).map_err(|e| corrupt("globals", e))?;
        } else if key == KEY_HOSTS {
            hosts = codec::decode(&value).map_err(|e| corrupt("hosts", e))?;
        } else if key == KEY_PATHS {
            site = codec::decode(&value).map_err(|e| corrupt("mirror paths", e))?;
        } else if key == KEY_APPLIED {
            last_applied = codec::decode(&value).map_err(|e| corrupt("applied", e))?;
        } else if key == KEY_MEMBERSHIP {
            membership = codec::decode(&value).map_err(|e| corrupt("membership", e))?;
        }
    }
    Ok(AppliedState {
        state: State::from_records(globals, records.finish())
            .with_hosts(hosts)
            .with_site(site.0, site.1),
        last_applied,
        membership,
    })
}

/// Whether a snapshot install was cut off (its marker is still there).
pub(crate) fn install_interrupted(db: &DB) -> std::result::Result<bool, OpenError> {
    Ok(db
        .get_cf(cf(db, CF_META), KEY_INSTALLING)
        .map_err(|e| corrupt("meta", e))?
        .is_some())
}
