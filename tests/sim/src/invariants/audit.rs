//! The audit: on every node, the journal replays to the live state (`audit verify`).

use crate::world::World;

pub fn journals_replay(world: &mut World) -> Result<(), String> {
    for (id, handles) in &world.live {
        let verification = handles
            .state
            .verify()
            .map_err(|e| format!("n{id}: the journal cannot be replayed: {e}"))?;
        if !verification.consistent() {
            return Err(format!(
                "n{id}: the journal replays to another state at index {}: {:?}",
                verification.index,
                verification.differences.iter().take(5).collect::<Vec<_>>()
            ));
        }
        world.checks += 1;
    }
    Ok(())
}
