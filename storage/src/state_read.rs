//! What the node reads of the applied state, as a trait: host I/O, the copy scheduler, the
//! mirror, the admin API and the simulation's invariants depend on this, not on the
//! RocksDB-backed store. [`StateView`](crate::StateView) is the production implementation.

use crate::audit::{AuditFilter, AuditRecord, JournalError, Rebuilt, Until, Verification};
use crate::types::NodeInfo;
use crate::view::{AppliedNotice, ReadError};
use openraft::StoredMembership;
use statemachine::{Extent, State, VolumeId};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The applied state as the node's parts share it.
pub type SharedState = Arc<dyn StateRead>;

/// The read side of one node's applied state. Every read is consistent with one applied index.
pub trait StateRead: Send + Sync + 'static {
    /// Runs `f` against the state as of the last applied entry (typed: [`StateQuery::query`]).
    fn inspect(&self, f: &mut dyn FnMut(&State));
    /// The last applied log index and the state digest at that index, read together.
    fn applied(&self) -> (u64, u64);
    /// The membership as of the last applied entry.
    fn membership(&self) -> StoredMembership<u64, NodeInfo>;
    /// Volume data as a host sees it. `opened`: the volume the reader opened, if it did (then a
    /// new volume of the same name is refused).
    fn read(&self, volume: &str, opened: Option<VolumeId>, offset: u64, length: u64) -> Result<Vec<u8>, ReadError>;
    /// Which parts of a range are allocated (see [`State::allocation`]).
    fn allocation(
        &self,
        volume: &str,
        opened: Option<VolumeId>,
        offset: u64,
        length: u64,
        budget: u32,
    ) -> Result<Vec<Extent>, ReadError>;
    /// Audit records after index `after` that pass `filter`, at most `limit`.
    fn audit(&self, filter: &AuditFilter, after: u64, limit: usize) -> Result<Vec<AuditRecord>, JournalError>;
    /// The metadata as it was at a point of the history, rebuilt by replaying the journal.
    fn state_at(&self, until: Until) -> Result<Rebuilt, JournalError>;
    /// Replays the whole journal and compares it with the live state at the applied index.
    fn verify(&self) -> Result<Verification, JournalError>;
    /// Puts the applied state on disk: for a clean stop.
    fn flush(&self) -> Result<(), FlushError>;
    /// A notice after every applied command.
    fn subscribe(&self) -> broadcast::Receiver<AppliedNotice>;
}

/// Typed queries over any [`StateRead`], the trait object included.
pub trait StateQuery {
    /// Runs a query against the state as of the last applied entry.
    fn query<T>(&self, f: impl FnOnce(&State) -> T) -> T;
}

impl<S: StateRead + ?Sized> StateQuery for S {
    fn query<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let (mut f, mut out) = (Some(f), None);
        self.inspect(&mut |state| out = f.take().map(|f| f(state)));
        out.expect("inspect runs its function once")
    }
}

/// Why the applied state could not be put on disk.
#[derive(Debug, thiserror::Error)]
#[error("the state store could not flush: {0}")]
pub struct FlushError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateView;

    /// `query` through the trait object returns what the function computed, from the view's state.
    #[test]
    fn query_through_the_trait_reads_the_applied_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, store) = crate::open(dir.path()).unwrap();
        let shared: SharedState = Arc::new(store.view());
        assert_eq!(shared.query(|s| s.track_size()), statemachine::TRACK_SIZE);
        let view: StateView = store.view();
        assert_eq!(view.query(|s| s.track_size()), statemachine::TRACK_SIZE);
        assert_eq!(shared.applied(), view.applied());
    }
}
