//! Why a host I/O request failed, for both front ends.

use crate::server::consensus::ProposeError;
use crate::server::disk::Short;
use statemachine::CommandError;
use storage::ReadError;

/// Why a host I/O request failed: one error for both front ends, each of which maps it to its
/// own answer (an NBD errno, an HTTP status with a stable code).
#[derive(Clone, Debug, thiserror::Error)]
pub enum HostIoError {
    /// The state machine refused it (no such volume, out of range, write-inhibited, ...).
    #[error("{0}")]
    Refused(#[from] CommandError),
    /// The client's host may not do this with the volume (not mapped, or mapped read-only).
    #[error("{0}")]
    Denied(String),
    /// A request of zero bytes: NBD forbids it, and a write of nothing would still cost an entry.
    #[error("a request must cover at least one byte")]
    Empty,
    /// Not committed, or not linearizable here: this node does not lead, cannot reach a
    /// majority, or the commit timed out.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// Host data writes are refused while this node's data disk is under its reserve.
    #[error("the data disk has {} bytes free; less the {} bytes about to be written (writes under way and memory buffers still to flush) that is under the {}-byte reserve (--disk-reserve): writes are refused until space is freed: delete volumes you no longer need ('flashcopy rmvol'), TRIM unused space from the hosts, or grow the disk ('flashcopy lspool' shows what uses it)", .0.free, .0.pending, .0.reserve)]
    DiskFull(Short),
    #[error("{0}")]
    Unavailable(String),
}

impl From<ReadError> for HostIoError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Refused(e) => HostIoError::Refused(e),
            ReadError::Storage(e) => HostIoError::Unavailable(e.to_string()),
        }
    }
}
