//! Host I/O: the one path by which volume data is read and written, for both front ends (NBD
//! and the admin API's data route). A client opens a volume (bound to its id, not its name);
//! every request then checks the client's access again, reads are linearizable and run off
//! the async workers when large, writes go through the host-write queue and report the entry
//! that applied them. One rule each, whichever front end asks.

mod error;
mod gate;
mod writes;

pub use error::HostIoError;
use gate::WriteGates;
pub use writes::HostWrites;

use crate::server::consensus::Consensus;
use crate::server::mirror::Mirror;
use statemachine::{Access, CommandError, Extent, HostIdentity, VolumeId, WriteData};
use std::sync::Arc;
use storage::{SharedState, StateQuery};

/// Who opened a volume: a host over NBD (with the TLS identity it proved, if any), or the
/// administrator through the admin API's data route (authenticated by the cluster token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opener {
    Host(Option<HostIdentity>),
    Admin,
}

/// A volume as one client opened it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenVolume {
    /// The volume itself: a client stays bound to it, not to its name.
    pub id: VolumeId,
    pub name: String,
    pub size: u64,
    /// The target of a `--tgtinhibit` relationship, or mapped read-only: the client may read,
    /// not write.
    pub read_only: bool,
    /// Its access is checked on every request, so an unmapped volume stops serving at once.
    pub opener: Opener,
}

/// Reads up to this many bytes run on the async worker itself: a few blocks, mostly from
/// memory, where a hand-off to the blocking pool (two context switches) would cost more.
const INLINE_READ: u64 = 64 << 10;
/// Stored tracks one block-status answer looks at, at most (clients ask again for the rest).
pub const ALLOCATION_BUDGET: u32 = 16 * 1024;

/// Volumes as this node's replica of the cluster holds them.
pub struct HostIo {
    consensus: Arc<Consensus>,
    state: SharedState,
    writes: HostWrites,
    /// A write to a full-duplex mirror primary is acknowledged once its secondary has it.
    mirror: Arc<Mirror>,
    gates: WriteGates,
}

impl HostIo {
    pub fn new(consensus: Arc<Consensus>, state: SharedState, writes: HostWrites, mirror: Arc<Mirror>) -> Self {
        HostIo {
            consensus,
            state,
            writes,
            mirror,
            gates: WriteGates::default(),
        }
    }

    /// The volumes `opener` may use, as of a linearizable read.
    pub async fn volumes(&self, opener: &Opener) -> Result<Vec<OpenVolume>, HostIoError> {
        self.consensus.linearizable().await?;
        Ok(self.state.query(|s| {
            s.volumes()
                .into_iter()
                .filter_map(|v| {
                    let id = s.volume_id(&v.name).expect("listed volumes exist");
                    let access = access(s, opener, id)?;
                    Some(OpenVolume {
                        id,
                        read_only: s.is_write_inhibited(&v.name) || access == Access::ReadOnly,
                        name: v.name,
                        size: v.size,
                        opener: opener.clone(),
                    })
                })
                .collect()
        }))
    }

    /// Opens a volume by name; one `opener` may not use is as unknown as one that does not
    /// exist (its name is not disclosed either way).
    pub async fn open(&self, name: &str, opener: &Opener) -> Result<OpenVolume, HostIoError> {
        self.volumes(opener)
            .await?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| CommandError::VolumeNotFound { name: name.to_string() }.into())
    }

    /// Linearizable: sees every write acknowledged before the call.
    pub async fn read(&self, volume: &OpenVolume, offset: u64, length: u64) -> Result<Vec<u8>, HostIoError> {
        if length == 0 {
            return Err(HostIoError::Empty);
        }
        self.consensus.linearizable().await?;
        self.check_access(volume, false)?;
        let (name, opened) = (volume.name.clone(), Some(volume.id));
        if length <= INLINE_READ {
            return Ok(self.state.read(&name, opened, offset, length)?);
        }
        // Larger RocksDB reads block for longer: keep them off the async workers.
        let view = self.state.clone();
        let read = storage::runtime::offload(move || view.read(&name, opened, offset, length))
            .await
            .map_err(|e| HostIoError::Unavailable(e.to_string()))?;
        Ok(read?)
    }

    /// Returns once the write is committed and applied, with the index of the entry that
    /// applied it (of its last piece, for a write split in several; of the entry that released
    /// it, for a write a freeze held).
    pub async fn write(&self, volume: &OpenVolume, offset: u64, data: WriteData) -> Result<u64, HostIoError> {
        if data.is_empty() {
            return Err(HostIoError::Empty);
        }
        // A --tgtinhibit target is the state machine's to refuse (journaled, like any refusal);
        // a read-only mapping is this client's access.
        self.check_access(volume, true)?;
        let _pass = self.gates.pass(volume.id).await;
        #[cfg(feature = "sabotage")]
        if statemachine::sabotage::active(statemachine::sabotage::Sabotage::AckBeforeCommit) {
            // Queued, not committed: the caller is told it is done.
            let queued = self.writes.write(&volume.name, volume.id, offset, data);
            tokio::pin!(queued);
            tokio::select! {
                biased;
                result = &mut queued => return result,
                () = tokio::task::yield_now() => return Ok(0),
            }
        }
        let index = self.writes.write(&volume.name, volume.id, offset, data).await?;
        self.mirror.wait(volume.id, index).await;
        Ok(index)
    }

    /// Holds every host write to `volumes` back (once those in flight are acknowledged) until
    /// the guards are dropped: a Remote Pair FlashCopy runs at both sites in between.
    pub async fn hold_writes(&self, volumes: &[VolumeId]) -> Vec<tokio::sync::OwnedRwLockWriteGuard<()>> {
        self.gates.hold(volumes).await
    }

    /// Which parts of a range are allocated, linearizable like a read; may cover less than
    /// asked (never nothing).
    pub async fn allocation(&self, volume: &OpenVolume, offset: u64, length: u64) -> Result<Vec<Extent>, HostIoError> {
        if length == 0 {
            return Err(HostIoError::Empty);
        }
        self.consensus.linearizable().await?;
        self.check_access(volume, false)?;
        let view = self.state.clone();
        let (name, opened) = (volume.name.clone(), Some(volume.id));
        let extents =
            storage::runtime::offload(move || view.allocation(&name, opened, offset, length, ALLOCATION_BUDGET))
                .await
                .map_err(|e| HostIoError::Unavailable(e.to_string()))?;
        Ok(extents?)
    }

    /// Whether zeroing the volume costs no data movement now (NBD's FAST_ZERO): not while it
    /// is a source, whose targets may need tracks copied first.
    pub fn zeroing_is_fast(&self, volume: &OpenVolume) -> bool {
        self.state.query(|s| s.zeroing_copies(volume.id)) == Some(false)
    }

    /// Whether the client may still read (or write) the volume.
    fn check_access(&self, volume: &OpenVolume, writes: bool) -> Result<(), HostIoError> {
        match self.state.query(|s| access(s, &volume.opener, volume.id)) {
            Some(Access::ReadWrite) => Ok(()),
            Some(Access::ReadOnly) if !writes => Ok(()),
            Some(Access::ReadOnly) => Err(HostIoError::Denied(format!(
                "volume \"{}\" is mapped read-only to this client's host",
                volume.name
            ))),
            None => Err(HostIoError::Denied(format!(
                "volume \"{}\" is not mapped to this client's host any more",
                volume.name
            ))),
        }
    }
}

/// What `opener` may do with a volume: the administrator anything; a host what its mapping
/// allows (see [`statemachine::State::access`]).
fn access(state: &statemachine::State, opener: &Opener, volume: VolumeId) -> Option<Access> {
    match opener {
        Opener::Admin => state.record(volume).map(|_| Access::ReadWrite),
        Opener::Host(identity) => state.access(identity.as_ref(), volume),
    }
}
