//! What the NBD server needs from the cluster, as a trait: the protocol code is then testable
//! (and simulable) without openraft, and [`ClusterBackend`] is the one real implementation.

use crate::server::consensus::{Consensus, ProposeError};
use crate::server::host_writes::HostWrites;
use statemachine::{Access, CommandError, Extent, HostIdentity, VolumeId, WriteData};
use std::future::Future;
use std::sync::Arc;
use storage::{ReadError, StateView};

/// One volume as NBD offers it to one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The volume itself: a connection stays bound to it, not to its name.
    pub id: VolumeId,
    pub name: String,
    pub size: u64,
    /// The target of a `--tgtinhibit` relationship, or mapped read-only: hosts may read, not
    /// write.
    pub read_only: bool,
    /// The TLS identity the client proved, if any: its access is checked on every request, so
    /// an unmapped volume stops serving at once.
    pub client: Option<HostIdentity>,
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
    /// The client's host may not do this with the volume (not mapped, or mapped read-only).
    #[error("{0}")]
    Denied(String),
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
    /// The volumes a client that proved `client` (or nothing) may use, as of a linearizable
    /// read.
    fn exports(&self, client: Option<&HostIdentity>) -> impl Future<Output = Result<Vec<Export>, Failure>> + Send;
    /// Linearizable: sees every write acknowledged before the call.
    fn read(&self, export: &Export, offset: u64, length: u64) -> impl Future<Output = Result<Vec<u8>, Failure>> + Send;
    /// Returns once the write is committed and applied.
    fn write(&self, export: &Export, offset: u64, data: WriteData) -> impl Future<Output = Result<(), Failure>> + Send;
    /// Which parts of a range are allocated, linearizable like a read; may cover less than
    /// asked (never nothing).
    fn allocation(
        &self,
        export: &Export,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = Result<Vec<Extent>, Failure>> + Send;
    /// Whether zeroing the volume costs no data movement now (NBD's FAST_ZERO): not while it
    /// is a source, whose targets may need tracks copied first.
    fn zeroing_is_fast(&self, export: &Export) -> bool;
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
/// Stored tracks one block-status answer looks at, at most (clients ask again for the rest).
pub const ALLOCATION_BUDGET: u32 = 16 * 1024;

impl ClusterBackend {
    /// Whether the client's host may still read (or write) the volume.
    fn check_access(&self, export: &Export, writes: bool) -> Result<(), Failure> {
        match self.state.query(|s| s.access(export.client.as_ref(), export.id)) {
            Some(Access::ReadWrite) => Ok(()),
            Some(Access::ReadOnly) if !writes => Ok(()),
            Some(Access::ReadOnly) => Err(Failure::Denied(format!(
                "volume \"{}\" is mapped read-only to this client's host",
                export.name
            ))),
            None => Err(Failure::Denied(format!(
                "volume \"{}\" is not mapped to this client's host any more",
                export.name
            ))),
        }
    }
}

fn read_failure(e: ReadError) -> Failure {
    match e {
        ReadError::Refused(e) => Failure::Refused(e),
        ReadError::Storage(e) => Failure::Unavailable(e.to_string()),
    }
}

impl Backend for ClusterBackend {
    async fn exports(&self, client: Option<&HostIdentity>) -> Result<Vec<Export>, Failure> {
        self.consensus.linearizable().await?;
        Ok(self.state.query(|s| {
            s.volumes()
                .into_iter()
                .filter_map(|v| {
                    let id = s.volume_id(&v.name).expect("listed volumes exist");
                    let access = s.access(client, id)?;
                    Some(Export {
                        id,
                        read_only: s.is_write_inhibited(&v.name) || access == Access::ReadOnly,
                        name: v.name,
                        size: v.size,
                        client: client.cloned(),
                    })
                })
                .collect()
        }))
    }

    async fn read(&self, export: &Export, offset: u64, length: u64) -> Result<Vec<u8>, Failure> {
        self.consensus.linearizable().await?;
        self.check_access(export, false)?;
        let (volume, opened) = (export.name.clone(), Some(export.id));
        let read = if length <= INLINE_READ {
            // A few blocks, mostly from memory: a hand-off to the blocking pool (two context
            // switches) would cost more than the read.
            self.state.read(&volume, opened, offset, length)
        } else {
            // Larger RocksDB reads block for longer: keep them off the async workers.
            let view = self.state.clone();
            tokio::task::spawn_blocking(move || view.read(&volume, opened, offset, length))
                .await
                .map_err(|e| Failure::Unavailable(e.to_string()))?
        };
        read.map_err(read_failure)
    }

    async fn write(&self, export: &Export, offset: u64, data: WriteData) -> Result<(), Failure> {
        self.check_access(export, true)?;
        self.writes.write(&export.name, Some(export.id), offset, data).await??;
        Ok(())
    }

    async fn allocation(&self, export: &Export, offset: u64, length: u64) -> Result<Vec<Extent>, Failure> {
        self.consensus.linearizable().await?;
        self.check_access(export, false)?;
        let view = self.state.clone();
        let (volume, opened) = (export.name.clone(), Some(export.id));
        tokio::task::spawn_blocking(move || view.allocation(&volume, opened, offset, length, ALLOCATION_BUDGET))
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?
            .map_err(read_failure)
    }

    fn zeroing_is_fast(&self, export: &Export) -> bool {
        self.state.query(|s| s.zeroing_copies(export.id)) == Some(false)
    }
}
