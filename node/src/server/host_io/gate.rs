//! Write gates: a host write holds its volume's gate (shared) from before it is proposed until
//! it is acknowledged; a Remote Pair FlashCopy holds the gates of its volumes (exclusive), so
//! while it runs no host write to them is in flight and none starts.

use statemachine::VolumeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

#[derive(Default)]
pub struct WriteGates {
    gates: Mutex<BTreeMap<VolumeId, Arc<RwLock<()>>>>,
}

impl WriteGates {
    fn gate(&self, volume: VolumeId) -> Arc<RwLock<()>> {
        self.gates
            .lock()
            .expect("not poisoned")
            .entry(volume)
            .or_default()
            .clone()
    }

    /// A host write's pass.
    pub async fn pass(&self, volume: VolumeId) -> OwnedRwLockReadGuard<()> {
        self.gate(volume).read_owned().await
    }

    /// Closes the gates of `volumes` once the writes already through are acknowledged; they
    /// open again when the guards are dropped. Taken in id order, so two holders never wait
    /// on each other.
    pub async fn hold(&self, volumes: &[VolumeId]) -> Vec<OwnedRwLockWriteGuard<()>> {
        let mut ids = volumes.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut held = Vec::with_capacity(ids.len());
        for id in ids {
            held.push(self.gate(id).write_owned().await);
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_hold_waits_for_writes_through_the_gate_and_keeps_new_ones_out() {
        let gates = Arc::new(WriteGates::default());
        let pass = gates.pass(VolumeId(1)).await;
        let holder = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.hold(&[VolumeId(2), VolumeId(1)]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!holder.is_finished(), "a write in flight holds the hold back");
        drop(pass);
        let held = holder.await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), gates.pass(VolumeId(1))).await;
        assert!(blocked.is_err(), "no new write while held");
        drop(held);
        let _open = tokio::time::timeout(Duration::from_millis(500), gates.pass(VolumeId(1)))
            .await
            .expect("open again");
    }
}
