//! The reference model the workload checks reads against: for every 4 KiB block of every
//! volume, the values a read may return. A block's content is a value repeated (see
//! [`block_bytes`]); 0 is zeros. An acknowledged write leaves exactly its value; a write whose
//! outcome is unknown (the connection failed) adds its value, since it may still land.
//! A FlashCopy target takes its source's possibilities at the establish (the point-in-time
//! guarantee); a target whose relationship's fate is unknown, or that was withdrawn before its
//! copy finished (SPEC §2 `incomplete`), reads as anything until a write settles a block.

use std::collections::{BTreeMap, BTreeSet};

pub const BLOCK: u64 = 4096;

/// What one block may read as. Values grow with the order writes are issued in, and a write
/// is issued only after the one before it on the volume was acknowledged, failed, or is held
/// by a freeze (whose queue keeps the order): so a later value always lands later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Possible {
    Values {
        /// The latest acknowledged value (0: zeros, as created).
        acked: u64,
        /// `acked` was written to this block (not copied here by a point in time): a write
        /// issued before it cannot land after it.
        local: bool,
        /// Later writes not acknowledged (failed or still in flight): each may be there.
        maybe: BTreeSet<u64>,
    },
    Anything,
}

impl Possible {
    fn only(value: u64) -> Possible {
        Possible::Values {
            acked: value,
            local: true,
            maybe: BTreeSet::new(),
        }
    }

    pub fn allows(&self, value: u64) -> bool {
        match self {
            Possible::Values { acked, maybe, .. } => value == *acked || maybe.contains(&value),
            Possible::Anything => true,
        }
    }
}

#[derive(Default)]
pub struct Model {
    volumes: BTreeMap<String, Vec<Possible>>,
    /// Volumes whose content a command of unknown outcome may still replace at any time: they
    /// read as anything for the rest of the run.
    tainted: BTreeSet<String>,
}

/// The bytes of a block holding `value`.
pub fn block_bytes(value: u64) -> Vec<u8> {
    if value == 0 {
        return vec![0; BLOCK as usize];
    }
    value.to_le_bytes().repeat((BLOCK / 8) as usize)
}

/// The value a block's bytes hold, or `None` if they are no value's (torn or foreign bytes).
pub fn block_value(bytes: &[u8]) -> Option<u64> {
    let value = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    (bytes == block_bytes(value).as_slice()).then_some(value)
}

impl Model {
    pub fn create(&mut self, volume: &str, size: u64) {
        self.volumes
            .insert(volume.to_string(), vec![Possible::only(0); (size / BLOCK) as usize]);
    }

    pub fn written(&mut self, volume: &str, first_block: u64, values: &[u64], acknowledged: bool) {
        if self.tainted.contains(volume) {
            return;
        }
        let blocks = self.volumes.get_mut(volume).expect("a modelled volume");
        for (i, value) in values.iter().enumerate() {
            let block = &mut blocks[first_block as usize + i];
            match (acknowledged, &mut *block) {
                // An earlier write acknowledged after a later one (both held by a freeze) was
                // overwritten by it: nothing changes.
                (_, Possible::Values { acked, local: true, .. }) if *value < *acked => {}
                // Later writes still in flight stay possible.
                (true, Possible::Values { acked, local, maybe }) => {
                    *acked = *value;
                    *local = true;
                    maybe.retain(|later| later > value);
                }
                (true, Possible::Anything) => *block = Possible::only(*value),
                (false, Possible::Values { maybe, .. }) => {
                    maybe.insert(*value);
                }
                (false, Possible::Anything) => {}
            }
        }
    }

    /// The point in time: the target reads as the source did.
    pub fn established(&mut self, source: &str, target: &str) {
        if self.tainted.contains(target) {
            return;
        }
        let mut image = self.volumes[source].clone();
        for block in &mut image {
            if let Possible::Values { local, .. } = block {
                *local = false;
            }
        }
        self.volumes.insert(target.to_string(), image);
    }

    /// The target's content is no longer known (block by block, writes settle it again).
    pub fn unknown(&mut self, volume: &str) {
        for block in self.volumes.get_mut(volume).expect("a modelled volume") {
            *block = Possible::Anything;
        }
    }

    /// A command that replaces the volume's content (an establish onto it) has an unknown
    /// outcome and may still apply later: nothing about its content can be checked any more.
    pub fn taint(&mut self, volume: &str) {
        self.unknown(volume);
        self.tainted.insert(volume.to_string());
    }

    /// Blocks of `volume`.
    pub fn blocks(&self, volume: &str) -> u64 {
        self.volumes[volume].len() as u64
    }

    /// Checks what a read of `values.len()` blocks from `first_block` returned (`None`: bytes
    /// that are no value's); says what is wrong, if anything.
    pub fn check_read(&self, volume: &str, first_block: u64, values: &[Option<u64>]) -> Result<(), String> {
        let blocks = &self.volumes[volume];
        for (i, value) in values.iter().enumerate() {
            let block = first_block + i as u64;
            let possible = &blocks[block as usize];
            match value {
                Some(v) if possible.allows(*v) => {}
                Some(v) => {
                    return Err(format!(
                        "{volume} block {block} reads value {v}, which no acknowledged or in-flight write left there (possible: {possible:?})"
                    ))
                }
                None if *possible == Possible::Anything => {}
                None => return Err(format!("{volume} block {block} reads bytes no write wrote (torn or foreign)")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_allows_what_may_be_there_and_nothing_else() {
        let mut m = Model::default();
        m.create("a", 4 * BLOCK);
        assert!(m.check_read("a", 0, &[Some(0), Some(0)]).is_ok());
        m.written("a", 1, &[7], true);
        assert!(m.check_read("a", 1, &[Some(0)]).is_err());
        m.written("a", 1, &[8], false);
        assert!(m.check_read("a", 1, &[Some(7)]).is_ok() && m.check_read("a", 1, &[Some(8)]).is_ok());
        // Two held writes acknowledged in either order: the later one is what stays.
        m.written("a", 2, &[21], false);
        m.written("a", 2, &[22], false);
        m.written("a", 2, &[21], true);
        assert!(
            m.check_read("a", 2, &[Some(22)]).is_ok(),
            "a later write in flight stays possible"
        );
        m.written("a", 2, &[22], true);
        m.written("a", 2, &[21], true);
        assert!(m.check_read("a", 2, &[Some(22)]).is_ok() && m.check_read("a", 2, &[Some(21)]).is_err());
        // A target's write in flight across an establish may land after it, whatever its value.
        m.create("b", 4 * BLOCK);
        m.written("b", 2, &[5], false);
        m.established("a", "b");
        m.written("b", 2, &[5], false);
        assert!(m.check_read("b", 2, &[Some(5)]).is_ok());
        m.written("b", 2, &[5], true);
        assert!(m.check_read("b", 2, &[Some(5)]).is_ok() && m.check_read("b", 2, &[Some(22)]).is_err());
        m.established("a", "b");
        m.written("a", 1, &[9], true);
        let mut t = Model::default();
        t.create("a", BLOCK);
        t.create("b", BLOCK);
        t.taint("b");
        t.established("a", "b");
        assert!(
            t.check_read("b", 0, &[Some(5)]).is_ok(),
            "a tainted target stays unknown"
        );
        assert!(m.check_read("b", 1, &[Some(8)]).is_ok());
        assert!(
            m.check_read("b", 1, &[Some(9)]).is_err(),
            "the target keeps its point in time"
        );
        assert_eq!(block_value(&block_bytes(9)), Some(9));
        let mut torn = block_bytes(9);
        torn[BLOCK as usize - 1] = 1;
        assert_eq!(block_value(&torn), None);
    }
}
