//! What the NBD server needs from the cluster, as a trait: the protocol code is then testable
//! (and simulable) without openraft. [`HostIo`] is the one real implementation, shared with the
//! admin API's data route.

use crate::server::host_io::{HostIo, HostIoError, OpenVolume, Opener};
use statemachine::{Extent, HostIdentity, WriteData};
use std::future::Future;

pub use crate::server::host_io::ALLOCATION_BUDGET;
/// One volume as NBD offers it to one client.
pub type Export = OpenVolume;
/// Why an operation failed.
pub type Failure = HostIoError;

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

impl Backend for HostIo {
    async fn exports(&self, client: Option<&HostIdentity>) -> Result<Vec<Export>, Failure> {
        self.volumes(&Opener::Host(client.cloned())).await
    }

    async fn read(&self, export: &Export, offset: u64, length: u64) -> Result<Vec<u8>, Failure> {
        HostIo::read(self, export, offset, length).await
    }

    async fn write(&self, export: &Export, offset: u64, data: WriteData) -> Result<(), Failure> {
        HostIo::write(self, export, offset, data).await.map(|_index| ())
    }

    async fn allocation(&self, export: &Export, offset: u64, length: u64) -> Result<Vec<Extent>, Failure> {
        HostIo::allocation(self, export, offset, length).await
    }

    fn zeroing_is_fast(&self, export: &Export) -> bool {
        HostIo::zeroing_is_fast(self, export)
    }
}
