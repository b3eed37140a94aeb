//! What the NBD server needs from the cluster, as a trait: the protocol code is then testable
//! (and simulable) without openraft. [`HostIo`] is the one real implementation, shared with the
//! admin API's data route.

use crate::server::host_io::{HostIo, HostIoError, OpenVolume, Opener};
use statemachine::{Extent, HostIdentity, WriteData};
use std::future::Future;

pub trait Backend: Send + Sync + 'static {
    /// The volumes a client that proved `client` (or nothing) may use, as of a linearizable
    /// read.
    fn exports(
        &self,
        client: Option<&HostIdentity>,
    ) -> impl Future<Output = Result<Vec<OpenVolume>, HostIoError>> + Send;
    /// Linearizable: sees every write acknowledged before the call.
    fn read(
        &self,
        export: &OpenVolume,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = Result<Vec<u8>, HostIoError>> + Send;
    /// Returns once the write is committed and applied.
    fn write(
        &self,
        export: &OpenVolume,
        offset: u64,
        data: WriteData,
    ) -> impl Future<Output = Result<(), HostIoError>> + Send;
    /// Which parts of a range are allocated, linearizable like a read; may cover less than
    /// asked (never nothing).
    fn allocation(
        &self,
        export: &OpenVolume,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = Result<Vec<Extent>, HostIoError>> + Send;
    /// Whether zeroing the volume costs no data movement now (NBD's FAST_ZERO): not while it
    /// is a source, whose targets may need tracks copied first.
    fn zeroing_is_fast(&self, export: &OpenVolume) -> bool;
}

impl Backend for HostIo {
    async fn exports(&self, client: Option<&HostIdentity>) -> Result<Vec<OpenVolume>, HostIoError> {
        self.volumes(&Opener::Host(client.cloned())).await
    }

    async fn read(&self, export: &OpenVolume, offset: u64, length: u64) -> Result<Vec<u8>, HostIoError> {
        HostIo::read(self, export, offset, length).await
    }

    async fn write(&self, export: &OpenVolume, offset: u64, data: WriteData) -> Result<(), HostIoError> {
        HostIo::write(self, export, offset, data).await.map(|_index| ())
    }

    async fn allocation(&self, export: &OpenVolume, offset: u64, length: u64) -> Result<Vec<Extent>, HostIoError> {
        HostIo::allocation(self, export, offset, length).await
    }

    fn zeroing_is_fast(&self, export: &OpenVolume) -> bool {
        HostIo::zeroing_is_fast(self, export)
    }
}
