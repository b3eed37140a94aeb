//! A committed entry never changes: every node's journal holds the same record (command,
//! stamp, outcome, events) at each index they both hold. Checked at the end of a run.

use crate::world::World;
use std::collections::BTreeMap;
use storage::{AuditFilter, AuditRecord};

pub fn journals_agree(world: &mut World) -> Result<(), String> {
    let mut first: BTreeMap<u64, (u64, AuditRecord)> = BTreeMap::new();
    for (id, handles) in &world.live {
        let records = handles
            .state
            .audit(&AuditFilter::default(), 0, usize::MAX)
            .map_err(|e| format!("n{id}: the journal cannot be read: {e}"))?;
        for record in records {
            match first.get(&record.index) {
                None => {
                    first.insert(record.index, (*id, record));
                }
                Some((other, seen)) if *seen != record => {
                    return Err(format!(
                        "entry {} differs: n{other} applied {:?} -> {:?}, n{id} applied {:?} -> {:?}",
                        record.index,
                        seen.command.summary(),
                        seen.result,
                        record.command.summary(),
                        record.result
                    ));
                }
                Some(_) => {}
            }
        }
    }
    world.checks += 1;
    Ok(())
}
