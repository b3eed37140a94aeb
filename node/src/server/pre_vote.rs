//! PreVote (Raft thesis §9.6), which openraft 0.9 lacks. Without it, a node that stops hearing
//! the leader — cut off by a partition, or its Raft core busy installing a large snapshot —
//! starts elections with terms the rest of the cluster has not seen; when it hears the leader
//! again its higher term makes the healthy leader step down, and the cluster has no leader
//! until someone else wins (a probe saw five such rounds, ~5 s without a leader, every NBD
//! client disconnected).
//!
//! So openraft's elections start switched off (`raft_config`) and this guard switches them on
//! only while a majority of voters, itself included, would vote for this node: a peer grants a
//! pre-vote only if it has not heard from a leader within openraft's leader lease itself,
//! is not the leader, and the asking node's log is at least as up to date as its own. A
//! pre-vote changes no term and no vote, so asking is harmless; a node that cannot win never
//! raises its term. When the leader really is gone, every follower stops hearing it, pre-votes
//! are granted, and openraft's own randomized timeouts decide who runs first, as before.

use crate::server::net::Dialer;
use crate::server::token::ClusterToken;
use crate::server::transport::{self, PreVoteRequest};
use openraft::Raft;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::{LogStore, TypeConfig};
use tokio::time::Instant;

/// When this node last heard from a leader it follows (an AppendEntries or a snapshot chunk
/// whose committed vote is at least this node's), as its peer port saw the request arrive: a
/// Raft core busy syncing a large append or applying a snapshot still hears the leader that
/// sends them. It starts at the node's start, as openraft's own leader lease does.
pub struct LeaderContact(Mutex<Instant>);

impl LeaderContact {
    pub fn new() -> LeaderContact {
        LeaderContact(Mutex::new(Instant::now()))
    }

    /// Notes a request from `vote`'s leader if it is one this node would follow.
    pub fn heard_from(&self, vote: &openraft::Vote<u64>, raft: &Raft<TypeConfig>) {
        if vote.is_committed() && *vote >= raft.metrics().borrow().vote {
            *self.0.lock().expect("not poisoned") = Instant::now();
        }
    }

    fn within(&self, window: Duration) -> bool {
        self.0.lock().expect("not poisoned").elapsed() < window
    }
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact::new()
    }
}

/// What deciding and answering pre-votes needs.
pub struct Elections {
    pub id: u64,
    pub raft: Raft<TypeConfig>,
    pub log: LogStore,
    pub contact: Arc<LeaderContact>,
    /// A leader heard within this long is alive: openraft's leader lease
    /// (`election_timeout_max`), within which its real votes are refused anyway.
    pub quiet: Duration,
    pub token: ClusterToken,
    pub dialer: Arc<dyn Dialer>,
}

impl Elections {
    /// Whether this node would vote for a candidate with this log now (answering a pre-vote).
    pub fn grant(&self, request: &PreVoteRequest) -> bool {
        let leading = self.raft.metrics().borrow().current_leader == Some(self.id);
        !leading && !self.contact.within(self.quiet) && request.last_log_id >= self.log.last_log_id()
    }

    /// Whether a majority of voters would vote for this node now.
    async fn majority_would_elect(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        if !voters.contains(&self.id) || self.contact.within(self.quiet) {
            return false;
        }
        let request = PreVoteRequest {
            last_log_id: self.log.last_log_id(),
        };
        // Asked all at once, each within the quiet time: a peer that does not answer says no.
        let mut asks = tokio::task::JoinSet::new();
        for id in voters.iter().filter(|id| **id != self.id) {
            let Some(node) = membership.get_node(id) else { continue };
            let (addr, dialer, token) = (node.raft.clone(), self.dialer.clone(), self.token.clone());
            let (from, quiet) = (self.id, self.quiet);
            asks.spawn(async move {
                transport::ask_pre_vote(&*dialer, &addr, &token, from, request, quiet)
                    .await
                    .unwrap_or(false)
            });
        }
        let mut granted = 1;
        while let Some(answer) = asks.join_next().await {
            granted += usize::from(answer.unwrap_or(false));
        }
        granted * 2 > voters.len()
    }
}

/// Switches openraft's elections on while a majority would elect this node, off otherwise;
/// looks every `every` (a heartbeat interval).
pub async fn run(elections: Arc<Elections>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut enabled = false;
    loop {
        tick.tick().await;
        let leading = elections.raft.metrics().borrow().current_leader == Some(elections.id);
        let enable = !leading && elections.majority_would_elect().await;
        if enable != enabled {
            tracing::debug!(node = elections.id, enable, "elections switched");
            enabled = enable;
        }
        elections.raft.runtime_config().elect(enable);
    }
}
