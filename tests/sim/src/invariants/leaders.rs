//! Election safety as openraft 0.9 defines it, over the whole run. openraft elects a leader by
//! its leader id, (term, node id): a candidate with a higher node id may win a term another
//! already won (seed 202 saw n4 then n5 lead term 2), so the rule is one leader per leader id,
//! which the votes keep: no node's vote ever goes back, across crashes and power losses too (a
//! vote that went back could grant a second leader the same quorum), and a leader's saved vote
//! is its own, for its term. Each term's first leader
//! is noted (`World::terms`), for scenarios that check leadership stays put.

use crate::world::World;
use openraft::Vote;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub struct Leaders {
    first_by_term: BTreeMap<u64, u64>,
    /// Each node's latest vote seen.
    votes: BTreeMap<u64, Vote<u64>>,
}

impl Leaders {
    pub fn check(&mut self, world: &mut World, now: Duration) -> Result<(), String> {
        let metrics: Vec<_> = world
            .live
            .iter()
            .map(|(id, h)| (*id, h.consensus.raft_metrics()))
            .collect();
        for (id, m) in metrics {
            if let Some(before) = self.votes.insert(id, m.vote) {
                let back = matches!(m.vote.partial_cmp(&before), Some(Ordering::Less) | None);
                if back && m.vote != before {
                    return Err(format!("n{id}'s vote went back from {before} to {}", m.vote));
                }
            }
            if m.current_leader == Some(id) {
                self.first_by_term.entry(m.current_term).or_insert_with(|| {
                    world.terms.push((now, m.current_term, id));
                    id
                });
                // The vote saved is this leader's own, for its term. (Committed or not: openraft
                // leads as soon as a quorum granted the vote, and saves its commit after; the
                // metrics show the vote saved. Seed 41052 saw a leader whose disk lost power
                // before that save.)
                let own = m.vote.leader_id().voted_for() == Some(id) && m.vote.leader_id().get_term() == m.current_term;
                if !own {
                    return Err(format!(
                        "n{id} leads term {} without its own vote saved: {}",
                        m.current_term, m.vote
                    ));
                }
            }
        }
        world.checks += 1;
        Ok(())
    }
}
