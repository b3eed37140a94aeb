//! What the NBD server needs from the cluster, as a trait: the protocol code is then testable
//! (and simulable) without openraft, and [`ClusterBackend`] is the one real implementation.

use crate::server::consensus::{Consensus, ProposeError};
use crate::server::host_writes::HostWrites;
use statemachine::{CommandError, WriteData};
use std::future::Future;
use std::sync::Arc;
use storage::{ReadError, StateView};

/// One volume as NBD offers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub size: u64,
    /// The target of a `--tgtinhibit` relationship: hosts may read, not write.
    pub read_only: bool,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Refused(#[from] CommandError),
    /// This node no longer leads: the client should reconnect (to any node).
    #[error("this node is not the leader; reconnect")]
    NotLeader,
    #[error("{0}")]
    Unavailable(String),
    /// The node's disk is under its reserve: ENOSPC.
    #[error("{0}")]
    NoSpace(String),
}

impl From<ProposeError> for Failure {
    fn from(e: ProposeError) -> Self {
        match e {
            // Either way the client must reconnect: to the leader, or to the majority's side.
            // The client must reconnect: to the leader, or to the majority's side (a commit
            // that takes this long means this leader is cut off, or the cluster is stuck).
            ProposeError::NotLeader { .. } | ProposeError::NoQuorum(_) | ProposeError::CommitTimeout => {
                Failure::NotLeader
            }
            ProposeError::Unavailable(reason) => Failure::Unavailable(reason),
            e @ ProposeError::DiskFull { .. } => Failure::NoSpace(e.to_string()),
        }
    }
}

pub trait Backend: Send + Sync + 'static {
    /// Every volume, as of a linearizable read.
    fn exports(&self) -> impl Future<Output = Result<Vec<Export>, Failure>> + Send;
    /// Linearizable: sees every write acknowledged before the call.
    fn read(&self, volume: &str, offset: u64, length: u64) -> impl Future<Output = Result<Vec<u8>, Failure>> + Send;
    /// Returns once the write is committed and applied.
    fn write(&self, volume: &str, offset: u64, data: WriteData) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Volumes as this node's replica of the cluster holds them: reads are linearizable through
/// consensus, writes go through the host-write queue.
pub struct ClusterBackend {
    pub consensus: Arc<Consensus>,
    pub state: StateView,
    pub writes: Arc<HostWrites>,
}

/// Reads up to this many bytes run on the async worker itself.
const INLINE_READ: u64 = 64 << 10;

impl Backend for ClusterBackend {
    async fn exports(&self) -> Result<Vec<Export>, Failure> {
        self.consensus.linearizable().await?;
        Ok(self.state.query(|s| {
            s.volumes()
                .into_iter()
                .map(|v| Export {
                    read_only: s.is_write_inhibited(&v.name),
                    name: v.name,
                    size: v.size,
                })
                .collect()
        }))
    }

    async fn read(&self, volume: &str, offset: u64, length: u64) -> Result<Vec<u8>, Failure> {
        self.consensus.linearizable().await?;
        let read = if length <= INLINE_READ {
            // A few blocks, mostly from memory: a hand-off to the blocking pool (two context
            // switches) would cost more than the read.
            self.state.read(volume, offset, length)
        } else {
            // Larger RocksDB reads block for longer: keep them off the async workers.
            let view = self.state.clone();
            let volume = volume.to_string();
            tokio::task::spawn_blocking(move || view.read(&volume, offset, length))
                .await
                .map_err(|e| Failure::Unavailable(e.to_string()))?
        };
        read.map_err(|e| match e {
            ReadError::Refused(e) => Failure::Refused(e),
            ReadError::Storage(e) => Failure::Unavailable(e.to_string()),
        })
    }

    async fn write(&self, volume: &str, offset: u64, data: WriteData) -> Result<(), Failure> {
        self.writes.write(volume, offset, data).await??;
        Ok(())
    }
}
