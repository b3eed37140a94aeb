//! Consensus: this node's handle on the Raft group. It proposes commands (stamping the leader's
//! wall-clock time), answers linearizable reads, knows who leads and changes the membership.
//! The [`Propose`] trait is the narrow part the write batcher and the copy scheduler use.

use crate::server::clock::Clock;
use crate::server::metrics::Metrics;
use crate::server::read_index::{ReadIndex, Round};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft, RaftMetrics};
use statemachine::{Command, CommandError, Event, Timestamp};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use storage::{NodeInfo, Request, TypeConfig};

/// Why a command could not be run through Raft.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeInfo> },
    /// This node leads but no majority answers it (it is cut off, or most nodes are down):
    /// a client should go to another node.
    #[error("this node cannot reach a majority of the cluster: {0}")]
    NoQuorum(String),
    #[error("the cluster cannot commit right now: {0}")]
    Unavailable(String),
    /// The entry was not committed in time: it may still be, later. Whoever asked must check
    /// before repeating a command that is not idempotent.
    #[error("the command was not committed within {} s; it may still take effect (check before repeating it)", COMMIT_WAIT.as_secs())]
    CommitTimeout,
}

/// How long a proposal may wait to be committed and applied. A leader cut off from the
/// majority would otherwise hold its clients' writes forever.
const COMMIT_WAIT: Duration = Duration::from_secs(20);

/// A command's entry, committed and applied here.
#[derive(Debug)]
pub struct Committed {
    /// The entry's log index.
    pub index: u64,
    /// The state machine's verdict: a refused command is still an entry (and journaled).
    pub result: Result<(), CommandError>,
    pub events: Vec<Event>,
}

/// What a background proposer may do: propose, and know whether this node leads.
pub trait Propose: Send + Sync + 'static {
    fn propose(&self, command: Command) -> impl Future<Output = Result<Committed, ProposeError>> + Send;
    fn is_leader(&self) -> bool;
    /// The wall clock commands are stamped with here.
    fn now_millis(&self) -> u64;
}

pub struct Consensus {
    id: u64,
    info: NodeInfo,
    raft: Raft<TypeConfig>,
    metrics: Arc<Metrics>,
    reads: ReadIndex<ProposeError>,
    clock: Arc<dyn Clock>,
}

impl Consensus {
    pub fn new(id: u64, info: NodeInfo, raft: Raft<TypeConfig>, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        let round_raft = raft.clone();
        let round: Round<ProposeError> = Arc::new(move || {
            let raft = round_raft.clone();
            Box::pin(async move { ensure_linearizable(&raft).await })
        });
        Consensus {
            id,
            info,
            raft,
            metrics,
            reads: ReadIndex::new(round),
            clock,
        }
    }

    /// The wall clock, as this node stamps it into the commands it proposes.
    pub fn now_millis(&self) -> u64 {
        self.clock.now_millis()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// How clients and peers reach this node.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The current leader's id and address, as this node knows it.
    pub fn leader(&self) -> Option<(u64, NodeInfo)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics
            .membership_config
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, n)| n.clone())?;
        Some((leader, node))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Raft's own view: term, leader, log and snapshot indexes, membership.
    pub fn raft_metrics(&self) -> RaftMetrics<u64, NodeInfo> {
        self.raft.metrics().borrow().clone()
    }

    /// Proposes a command and waits until it is committed and applied here.
    pub async fn propose(&self, command: Command) -> Result<Committed, ProposeError> {
        let time = Timestamp(self.now_millis());
        let started = tokio::time::Instant::now();
        let written = tokio::time::timeout(COMMIT_WAIT, self.raft.client_write(Request { command, time })).await;
        let Ok(written) = written else {
            return Err(ProposeError::CommitTimeout);
        };
        match written {
            Ok(response) => {
                self.metrics.commit_latency.observe(started.elapsed());
                Ok(Committed {
                    index: response.log_id.index,
                    result: response.data.result.expect("a command entry has a result"),
                    events: response.data.events,
                })
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: f.leader_node })
            }
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// Waits until this node, as leader, has applied everything committed before the call.
    /// Reads waiting together share one leadership round (see `read_index.rs`).
    pub async fn linearizable(&self) -> Result<(), ProposeError> {
        if self.sole_voter_up_to_date() {
            // Nothing can be committed without this node, and it has applied everything up to
            // an entry of its own term: the local state is already linearizable.
            return Ok(());
        }
        self.reads
            .wait()
            .await
            .unwrap_or_else(|| Err(ProposeError::Unavailable("the node is shutting down".into())))
    }

    /// This node leads, is the only voter (learners do not count toward a commit), and has
    /// applied an entry of its current term (so everything committed before it is applied).
    fn sole_voter_up_to_date(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let mut voters = metrics.membership_config.membership().voter_ids();
        metrics.current_leader == Some(self.id)
            && voters.next() == Some(self.id)
            && voters.next().is_none()
            && metrics
                .last_applied
                .is_some_and(|applied| applied.leader_id.term == metrics.current_term)
    }

    /// Leadership rounds run for linearizable reads so far.
    pub fn read_rounds(&self) -> u64 {
        self.reads.rounds()
    }

    /// Adds a node as a learner, waits for it to catch up, then makes it a voter.
    pub async fn add_voter(&self, id: u64, info: NodeInfo) -> Result<(), String> {
        self.raft.add_learner(id, info, true).await.map_err(|e| e.to_string())?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    pub async fn remove_voter(&self, id: u64) -> Result<(), String> {
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Waits until the Raft core stops by itself (a storage failure it cannot go on from) and
    /// says why.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft core stopped".into();
            }
        }
    }

    /// Stops the Raft core (the node is shutting down).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

impl Propose for Consensus {
    fn propose(&self, command: Command) -> impl Future<Output = Result<Committed, ProposeError>> + Send {
        Consensus::propose(self, command)
    }

    fn is_leader(&self) -> bool {
        Consensus::is_leader(self)
    }

    fn now_millis(&self) -> u64 {
        Consensus::now_millis(self)
    }
}

/// One leadership round: confirms this node leads with a majority and waits until it has
/// applied everything committed before.
async fn ensure_linearizable(raft: &Raft<TypeConfig>) -> Result<(), ProposeError> {
    match raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(ProposeError::NotLeader { leader: f.leader_node })
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(ProposeError::NoQuorum(e.to_string())),
        Err(e) => Err(ProposeError::Unavailable(e.to_string())),
    }
}
