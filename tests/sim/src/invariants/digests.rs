//! Replicas agree: every node that has applied index i has the same state digest (metadata and
//! every track) as every other node had at i. Checked between steps against all digests seen.

use crate::world::World;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Digests {
    at: BTreeMap<u64, (u64, u64)>,
}

impl Digests {
    pub fn check(&mut self, world: &mut World) -> Result<(), String> {
        for (id, handles) in &world.live {
            let (index, digest) = handles.state.applied();
            let (first, seen) = *self.at.entry(index).or_insert((*id, digest));
            if seen != digest {
                return Err(format!(
                    "at applied index {index}, n{id}'s state digest {digest:016x} differs from n{first}'s {seen:016x}"
                ));
            }
        }
        world.checks += 1;
        Ok(())
    }
}

/// Every live node has applied the same index (so, by the check above, holds the same state).
pub fn converged(world: &World) -> bool {
    let mut indexes = world.live.values().map(|h| h.state.applied().0);
    let first = indexes.next();
    first.is_some() && indexes.all(|i| Some(i) == first)
}
