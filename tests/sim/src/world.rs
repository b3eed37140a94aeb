//! What the harness, the workload and the checkers share inside one run (all on the
//! simulation's one thread).

use crate::disk::SimDisk;
use crate::model::Model;
use crate::trace::Trace;
use node::server::consensus::Consensus;
use std::collections::BTreeMap;
use std::sync::Arc;
use storage::SharedState;

/// A running node's handles, dropped when it crashes (so its RocksDB closes with it).
pub struct Handles {
    pub consensus: Arc<Consensus>,
    pub state: SharedState,
    pub raft: openraft::Raft<storage::TypeConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Faults on.
    Safety,
    /// Faults healed: everything must converge and serve.
    Liveness,
}

pub struct World {
    pub live: BTreeMap<u64, Handles>,
    /// Each node's disk (its log's files, how full it is), kept across its crashes.
    pub disks: BTreeMap<u64, SimDisk>,
    pub trace: Trace,
    pub model: Model,
    pub phase: Phase,
    /// Invariant checks that passed.
    pub checks: u64,
    /// Host operations and commands the workload ran.
    pub operations: u64,
    /// Each term's leader, as first seen: (when, term, leader).
    pub terms: Vec<(std::time::Duration, u64, u64)>,
    /// Work a new leader must carry on (a background copy, a refresh, a reverse, a freeze's
    /// held writes) that a command just started: the fault schedule may crash the leader now.
    pub under_way: Option<UnderWay>,
}

/// What a command just started, for a leader crash in the middle of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderWay {
    Copy,
    Refresh,
    Reverse,
    Freeze,
}

impl UnderWay {
    /// The fault's kind, as counted.
    pub fn kind(self) -> &'static str {
        match self {
            UnderWay::Copy => "leader-crash-mid-copy",
            UnderWay::Refresh => "leader-crash-mid-refresh",
            UnderWay::Reverse => "leader-crash-mid-reverse",
            UnderWay::Freeze => "leader-crash-mid-freeze",
        }
    }
}

impl World {
    pub fn new() -> World {
        World {
            live: BTreeMap::new(),
            disks: BTreeMap::new(),
            trace: Trace::default(),
            model: Model::default(),
            phase: Phase::Safety,
            checks: 0,
            operations: 0,
            terms: Vec::new(),
            under_way: None,
        }
    }

    /// Notes an event inside a simulated host (the time is the simulation's).
    pub fn note(&mut self, what: impl std::fmt::Display) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.trace.note(at, what);
    }

    /// The node that leads, as far as the live nodes know.
    pub fn leader(&self) -> Option<Arc<Consensus>> {
        self.live
            .values()
            .find(|h| h.consensus.is_leader())
            .map(|h| h.consensus.clone())
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
