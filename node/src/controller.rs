//! The controller: one node's handle on the replicated state. It proposes commands (stamping
//! the leader's wall-clock time), answers linearizable reads, and knows who leads.

use crate::metrics::Metrics;
use crate::write_batcher::{Outcome, WriteQueue};
use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use statemachine::{Command, CommandError, Event, HostWrite, Timestamp, WriteData, MAX_WRITE_BYTES};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use storage::{AuditFilter, NodeInfo, Request, StateView, TypeConfig};

pub struct Controller {
    pub id: u64,
    pub info: NodeInfo,
    pub raft: Raft<TypeConfig>,
    pub view: StateView,
    /// The cluster secret; empty when the cluster runs without one.
    pub token: Arc<String>,
    /// Background-copy rate limit in bytes per second (`None`: unlimited).
    pub copy_rate: Option<u64>,
    /// Host writes being proposed right now: the copy scheduler yields to them.
    pub host_writes_in_flight: AtomicUsize,
    /// For forwarding to the leader and asking peers for their status.
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    writes: WriteQueue,
    next_tag: AtomicU64,
}

/// Why a command could not be run through Raft.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeInfo> },
    #[error("the cluster cannot commit right now: {0}")]
    Unavailable(String),
}

/// What a node's operator sets for its controller.
pub struct Settings {
    /// The cluster secret; empty when the cluster runs without one.
    pub token: String,
    /// Background-copy rate limit in bytes per second (`None`: unlimited).
    pub copy_rate: Option<u64>,
}

impl Controller {
    pub fn new(
        id: u64,
        info: NodeInfo,
        raft: Raft<TypeConfig>,
        view: StateView,
        settings: Settings,
        writes: WriteQueue,
        metrics: Arc<Metrics>,
    ) -> Self {
        Controller {
            id,
            info,
            raft,
            view,
            token: Arc::new(settings.token),
            copy_rate: settings.copy_rate,
            host_writes_in_flight: AtomicUsize::new(0),
            http: reqwest::Client::new(),
            metrics,
            writes,
            // Unique across nodes (the id) and across restarts (the start time).
            next_tag: AtomicU64::new((id << 56) ^ (now_millis() << 16)),
        }
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

    /// Proposes a command and waits until it is committed and applied here.
    pub async fn propose(&self, command: Command) -> Result<(Result<(), CommandError>, Vec<Event>), ProposeError> {
        self.propose_at(command)
            .await
            .map(|(result, events, _)| (result, events))
    }

    /// Like `propose`, also returning the entry's log index.
    pub async fn propose_at(
        &self,
        command: Command,
    ) -> Result<(Result<(), CommandError>, Vec<Event>, u64), ProposeError> {
        let time = Timestamp(now_millis());
        let started = std::time::Instant::now();
        match self.raft.client_write(Request { command, time }).await {
            Ok(response) => {
                self.metrics.commit_latency.observe(started.elapsed());
                let index = response.log_id.index;
                let data = response.data;
                Ok((data.result.expect("a command entry has a result"), data.events, index))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: f.leader_node })
            }
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// Waits until this node, as leader, has applied everything committed before the call.
    pub async fn linearizable(&self) -> Result<(), ProposeError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: f.leader_node })
            }
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// A host write: returns once it is applied, also when a freeze held it first. Concurrent
    /// writes share entries (group commit). Zeroing more than one command may carry is split
    /// into several writes, in order.
    pub async fn write(
        &self,
        volume: &str,
        offset: u64,
        data: WriteData,
    ) -> Result<Result<(), CommandError>, ProposeError> {
        // All-zero data goes as zeroing: which tracks are stored follows from the commands alone
        // (so the journal replays), and zeros written this way stay thin.
        let data = match data {
            WriteData::Bytes(b) if !b.is_empty() && b.iter().all(|&x| x == 0) => WriteData::Zeroes(b.len() as u64),
            data => data,
        };
        let WriteData::Zeroes(length) = data else {
            return self.write_one(volume, offset, data).await;
        };
        let mut done = 0;
        while done < length {
            let chunk = (length - done).min(MAX_WRITE_BYTES);
            if let Err(e) = self.write_one(volume, offset + done, WriteData::Zeroes(chunk)).await? {
                return Ok(Err(e));
            }
            done += chunk;
        }
        Ok(Ok(()))
    }

    async fn write_one(
        &self,
        volume: &str,
        offset: u64,
        data: WriteData,
    ) -> Result<Result<(), CommandError>, ProposeError> {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        // Subscribe before proposing, so the release of a held write cannot be missed.
        let mut notices = self.view.subscribe();
        self.host_writes_in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = self
            .writes
            .submit(HostWrite {
                volume: volume.to_string(),
                offset,
                data,
                tag,
            })
            .await;
        self.host_writes_in_flight.fetch_sub(1, Ordering::SeqCst);
        let held_at = match outcome? {
            Outcome::Done(result) => return Ok(result),
            Outcome::Held { index } => index,
        };
        // Wait for the entry that releases it. Notices can be missed (a lagging receiver, a
        // snapshot install), so also look at the state every second: once the write is no longer
        // held, the audit history after `held_at` says how it ended.
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Ok(notice) => {
                        if let Some(outcome) = release_outcome(&notice.events, volume, tag) {
                            return Ok(outcome);
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(ProposeError::Unavailable("the node is shutting down".into()));
                    }
                },
                _ = every_second.tick() => {}
            }
            if !self.view.query(|s| s.is_held(volume, tag)) {
                let only_this_volume = AuditFilter {
                    volume: Some(volume.to_string()),
                    ..AuditFilter::default()
                };
                let history = self
                    .view
                    .audit(&only_this_volume, held_at, usize::MAX)
                    .map_err(|e| ProposeError::Unavailable(e.to_string()))?;
                if let Some(outcome) = history.iter().find_map(|r| release_outcome(&r.events, volume, tag)) {
                    return Ok(outcome);
                }
            }
        }
    }
}

/// The wall clock, as the leader stamps it into commands.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How a held write ended, if these events say so.
fn release_outcome(events: &[Event], volume: &str, tag: u64) -> Option<Result<(), CommandError>> {
    events.iter().find_map(|event| match event {
        Event::Written { volume: v, tag: t, .. } if *t == tag && v == volume => Some(Ok(())),
        Event::HeldWriteRefused {
            volume: v,
            tag: t,
            error,
        } if *t == tag && v == volume => Some(Err(error.clone())),
        _ => None,
    })
}
