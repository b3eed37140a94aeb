//! The read side of the state machine, shared with the node: metadata queries, volume data as a
//! host sees it, the journal, and a notice after every applied command.

use crate::applied_state::{corrupt, install_interrupted, load, AppliedState};
use crate::audit::{AuditFilter, AuditRecord, Journal, JournalError, Rebuilt, Until, Verification};
use crate::db::OpenError;
use crate::state_read::{FlushError, StateRead};
use crate::tracks::{DbTracks, TrackError};
use crate::types::NodeInfo;
use openraft::StoredMembership;
use rocksdb::DB;
use statemachine::{CommandError, Event, Extent, State, VolumeId};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// Sent after every applied command, so a proposer can learn how a held write ended.
#[derive(Clone, Debug)]
pub struct AppliedNotice {
    pub index: u64,
    pub events: Arc<Vec<Event>>,
}

/// The read side of the state machine, shared with the node.
#[derive(Clone)]
pub struct StateView {
    pub(crate) db: Arc<DB>,
    pub(crate) inner: Arc<RwLock<AppliedState>>,
    pub(crate) notices: broadcast::Sender<AppliedNotice>,
}

/// Why a read of volume data failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Refused(#[from] CommandError),
    #[error("storage read failed: {0}")]
    Storage(#[from] TrackError),
}

impl StateView {
    /// A read-only view of a node's database (stopped, or a copy): for offline audits.
    pub(crate) fn open_read_only(db: Arc<DB>) -> std::result::Result<StateView, OpenError> {
        if install_interrupted(&db)? {
            return Err(corrupt(
                "meta",
                "a snapshot install was cut off here; start the node once so it finishes it",
            ));
        }
        let inner = load(&db)?;
        Ok(StateView {
            db,
            inner: Arc::new(RwLock::new(inner)),
            notices: broadcast::channel(1).0,
        })
    }

    /// The journal as of the last applied entry. Its snapshot is taken under the state lock, so
    /// it never sees a snapshot install half done.
    fn journal(&self) -> Journal<'_> {
        let _applied = self.inner.read().expect("state lock is not poisoned");
        Journal::new(&self.db)
    }
}

impl StateRead for StateView {
    fn inspect(&self, f: &mut dyn FnMut(&State)) {
        f(&self.inner.read().expect("state lock is not poisoned").state)
    }

    /// The last applied log index and the state digest at that index, read together.
    fn applied(&self) -> (u64, u64) {
        let inner = self.inner.read().expect("state lock is not poisoned");
        (inner.last_applied.map_or(0, |l| l.index), inner.state.digest())
    }

    fn membership(&self) -> StoredMembership<u64, NodeInfo> {
        self.inner
            .read()
            .expect("state lock is not poisoned")
            .membership
            .clone()
    }

    /// Reads volume data as a host sees it, consistent with one applied index. `opened`: the
    /// volume the reader opened, if it did (then a new volume of the same name is refused).
    fn read(
        &self,
        volume: &str,
        opened: Option<VolumeId>,
        offset: u64,
        length: u64,
    ) -> std::result::Result<Vec<u8>, ReadError> {
        // Resolved and snapshotted under the lock, read without it: a long read does not hold
        // up the apply.
        let (plan, snapshot, track_size) = {
            let inner = self.inner.read().expect("state lock is not poisoned");
            let id = inner.state.check_range(volume, opened, offset, length)?;
            (
                inner.state.read_plan(id, offset, length),
                self.db.snapshot(),
                inner.state.track_size(),
            )
        };
        Ok(plan.read(&DbTracks::at(&self.db, &snapshot, track_size))?)
    }

    /// Which parts of a range are allocated (see [`State::allocation`]), from the sums column
    /// family alone: no track data is read.
    fn allocation(
        &self,
        volume: &str,
        opened: Option<VolumeId>,
        offset: u64,
        length: u64,
        budget: u32,
    ) -> std::result::Result<Vec<Extent>, ReadError> {
        // As a read: what the state says is taken under the lock, storage is read without it.
        let (query, snapshot, track_size) = {
            let inner = self.inner.read().expect("state lock is not poisoned");
            let id = inner.state.check_range(volume, opened, offset, length)?;
            (
                inner.state.allocation_query(id),
                self.db.snapshot(),
                inner.state.track_size(),
            )
        };
        Ok(query.run(&DbTracks::at(&self.db, &snapshot, track_size), offset, length, budget)?)
    }

    /// Audit records after index `after` that pass `filter`, at most `limit`.
    fn audit(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> std::result::Result<Vec<AuditRecord>, JournalError> {
        self.journal().list(filter, after, limit)
    }

    /// The metadata (volumes, relationships, bitmaps) as it was at a point of the history,
    /// rebuilt by replaying the journal.
    fn state_at(&self, until: Until) -> std::result::Result<Rebuilt, JournalError> {
        self.journal().state_at(until)
    }

    /// Replays the whole journal and compares it with the live state at this node's applied
    /// index (see [`Verification`]).
    fn verify(&self) -> std::result::Result<Verification, JournalError> {
        let (journal, index, live, names) = {
            // The journal snapshot (which also holds the stored tracks) and the live metadata
            // come from one applied index.
            let inner = self.inner.read().expect("state lock is not poisoned");
            let journal = Journal::new(&self.db);
            let index = inner.last_applied.map_or(0, |l| l.index);
            let names = inner
                .state
                .records()
                .map(|r| (r.volume.id, r.volume.name.clone()))
                .collect();
            (journal, index, inner.state.metadata_digest(), names)
        };
        journal.verify(&live, &names, index)
    }

    /// Puts the applied state on disk (it is written without a WAL and otherwise reaches the
    /// disk when memtables fill): for a clean stop.
    fn flush(&self) -> std::result::Result<(), FlushError> {
        let _applied = self.inner.read().expect("state lock is not poisoned");
        let cfs: Vec<_> = crate::db::SNAPSHOT_CFS
            .iter()
            .map(|name| self.db.cf_handle(name).expect("column families are created at open"))
            .collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(|e| FlushError(e.to_string()))
    }

    fn subscribe(&self) -> broadcast::Receiver<AppliedNotice> {
        self.notices.subscribe()
    }
}
