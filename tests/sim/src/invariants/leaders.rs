//! Election safety: at most one leader per term, over the whole run. Each term's leader is
//! noted as first seen (`World::terms`), for scenarios that check leadership stays put.

use crate::world::World;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub struct Leaders {
    by_term: BTreeMap<u64, u64>,
}

impl Leaders {
    pub fn check(&mut self, world: &mut World, now: Duration) -> Result<(), String> {
        let leading: Vec<(u64, u64)> = world
            .live
            .iter()
            .map(|(id, h)| (*id, h.consensus.raft_metrics()))
            .filter(|(id, m)| m.current_leader == Some(*id))
            .map(|(id, m)| (id, m.current_term))
            .collect();
        for (id, term) in leading {
            let leader = *self.by_term.entry(term).or_insert_with(|| {
                world.terms.push((now, term, id));
                id
            });
            if leader != id {
                return Err(format!("two leaders in term {term}: n{leader} and n{id}"));
            }
        }
        world.checks += 1;
        Ok(())
    }
}
