//! The reference model the workload checks reads against: for every byte of every volume, the
//! values a read may return, kept as runs of bytes that share their history. Every write has a
//! value of its own and writes, at byte `o`, [`byte_of`]`(value, o)`; 0 is zeros. An
//! acknowledged write leaves exactly its value; a write whose outcome is unknown (the
//! connection failed) stays possible for good, since the node that took it may still land it
//! after any later write. A FlashCopy target takes its
//! source's possibilities at the establish (the point-in-time guarantee); a target whose
//! relationship's fate is unknown, or that was withdrawn before its copy finished (SPEC §2
//! `incomplete`), reads as anything until a write settles a byte.
//!
//! Each run is a register checked for linearizability: a read that sees a write still in
//! flight has seen it land, so later reads may not return what it overwrote.

use std::collections::{BTreeMap, BTreeSet};

/// What one run of bytes may read as. Values grow with the order writes are issued in, and a
/// write is issued only after the one before it on the volume was acknowledged, failed, or is
/// held by a freeze (whose queue keeps the order): so a later value always lands later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Possible {
    Values {
        /// The latest value known to be there: acknowledged, or seen by a read (0: zeros).
        acked: u64,
        /// `acked` was written to this volume (not copied here by a point in time): a write
        /// issued before it cannot land after it.
        local: bool,
        /// Later writes to this volume not acknowledged (failed or still in flight): each may
        /// be there.
        maybe: BTreeSet<u64>,
        /// The source's writes a point in time may have caught in flight.
        copied: BTreeSet<u64>,
    },
    Anything,
}

impl Possible {
    fn only(value: u64) -> Possible {
        Possible::Values {
            acked: value,
            local: true,
            maybe: BTreeSet::new(),
            copied: BTreeSet::new(),
        }
    }

    /// The values a read may return now (`None`: anything).
    fn candidates(&self) -> Option<Vec<u64>> {
        match self {
            Possible::Values {
                acked, maybe, copied, ..
            } => Some(
                std::iter::once(*acked)
                    .chain(maybe.iter().copied())
                    .chain(copied.iter().copied())
                    .collect(),
            ),
            Possible::Anything => None,
        }
    }

    /// A write of `value` to these bytes was issued (`acknowledged: false`) or acknowledged.
    fn written(&mut self, value: u64, acknowledged: bool) {
        match (acknowledged, &mut *self) {
            // An earlier write acknowledged after a later one that is known to be there (both
            // held by a freeze, or the later one seen by a read): it was overwritten.
            (_, Possible::Values { acked, local: true, .. }) if value < *acked => {}
            // Later writes still in flight stay possible; what a point in time left is hidden.
            (
                true,
                Possible::Values {
                    acked,
                    local,
                    maybe,
                    copied,
                },
            ) => {
                *acked = value;
                *local = true;
                maybe.retain(|later| *later > value);
                copied.clear();
            }
            (true, Possible::Anything) => *self = Possible::only(value),
            (false, Possible::Values { maybe, .. }) => {
                maybe.insert(value);
            }
            (false, Possible::Anything) => {}
        }
    }

    /// A read returned `value` here: if it is a write still in flight, that write has landed,
    /// and whatever it overwrote cannot come back.
    fn seen(&mut self, value: u64) {
        if let Possible::Values { maybe, .. } = self {
            if maybe.contains(&value) {
                self.written(value, true);
            }
        }
    }
}

/// A volume: runs of bytes keyed by their first byte; a run ends where the next begins.
#[derive(Clone)]
struct Runs {
    size: u64,
    runs: BTreeMap<u64, Possible>,
}

impl Runs {
    fn new(size: u64) -> Runs {
        Runs {
            size,
            runs: BTreeMap::from([(0, Possible::only(0))]),
        }
    }

    /// Starts a run at `at` (it shares the history of the run it was part of).
    fn split(&mut self, at: u64) {
        if at >= self.size || self.runs.contains_key(&at) {
            return;
        }
        let (_, possible) = self.runs.range(..at).next_back().expect("a run starts at 0");
        self.runs.insert(at, possible.clone());
    }

    /// The runs covering `[start, end)`, split at both ends.
    fn range_mut(&mut self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, &mut Possible)> {
        self.split(start);
        self.split(end);
        let ends: Vec<u64> = self
            .runs
            .range(start + 1..)
            .map(|(at, _)| *at)
            .chain([self.size])
            .collect();
        self.runs
            .range_mut(start..end)
            .zip(ends)
            .map(move |((at, possible), next)| (*at, next.min(end), possible))
    }
}

/// A write whose outcome is unknown (its connection failed): the node that took it may still
/// propose it, so it may land at any later time, after any later write.
#[derive(Clone, Debug)]
struct Failed {
    offset: u64,
    length: u64,
    value: u64,
}

/// A volume's image kept aside (see [`Model::image`]).
#[derive(Clone)]
pub struct Image(Runs);

#[derive(Default)]
pub struct Model {
    volumes: BTreeMap<String, Runs>,
    /// Per volume: failed writes that may still land there (its own, and its source's that a
    /// point in time may hold).
    failed: BTreeMap<String, Vec<Failed>>,
    /// Volumes whose content a command of unknown outcome may still replace at any time: they
    /// read as anything for the rest of the run.
    tainted: BTreeSet<String>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: neighbouring inputs give unrelated outputs.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The byte a write of `value` puts at volume offset `offset` (0: zeros).
pub fn byte_of(value: u64, offset: u64) -> u8 {
    if value == 0 {
        return 0;
    }
    mix(value.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (offset >> 3)).to_le_bytes()[(offset & 7) as usize]
}

/// The bytes a write of `value` puts at `offset..offset + length`.
pub fn bytes_of(value: u64, offset: u64, length: u64) -> Vec<u8> {
    (offset..offset + length).map(|o| byte_of(value, o)).collect()
}

fn holds(bytes: &[u8], value: u64, offset: u64) -> bool {
    bytes.iter().zip(offset..).all(|(b, o)| *b == byte_of(value, o))
}

impl Model {
    pub fn create(&mut self, volume: &str, size: u64) {
        self.volumes.insert(volume.to_string(), Runs::new(size));
    }

    /// A write of `value` at `offset..offset + length` was issued (`acknowledged: false`; from
    /// then on it may land) or acknowledged.
    pub fn written(&mut self, volume: &str, offset: u64, length: u64, value: u64, acknowledged: bool) {
        if self.tainted.contains(volume) {
            return;
        }
        let runs = self.volumes.get_mut(volume).expect("a modelled volume");
        for (_, _, possible) in runs.range_mut(offset, offset + length) {
            possible.written(value, acknowledged);
        }
    }

    /// A write's connection failed: it may land at any later time.
    pub fn failed(&mut self, volume: &str, offset: u64, length: u64, value: u64) {
        let failed = Failed { offset, length, value };
        self.failed.entry(volume.to_string()).or_default().push(failed);
    }

    /// The point in time: the target reads as the source did.
    pub fn established(&mut self, source: &str, target: &str) {
        if self.tainted.contains(target) {
            return;
        }
        let from_source = self.failed.get(source).cloned().unwrap_or_default();
        self.failed.entry(target.to_string()).or_default().extend(from_source);
        let mut image = self.volumes[source].clone();
        for possible in image.runs.values_mut() {
            if let Possible::Values {
                local, maybe, copied, ..
            } = possible
            {
                *local = false;
                copied.append(maybe);
            }
        }
        self.volumes.insert(target.to_string(), image);
    }

    /// The volume's image as the model holds it now, for [`Model::restore`].
    pub fn image(&self, volume: &str) -> Image {
        Image(self.volumes[volume].clone())
    }

    /// The volume reads as it did when `image` was taken (a revertible increment thrown away).
    /// Failed writes that may land there stay possible.
    pub fn restore(&mut self, volume: &str, image: Image) {
        if self.tainted.contains(volume) {
            return;
        }
        self.volumes.insert(volume.to_string(), image.0);
    }

    /// The target's content is no longer known (byte by byte, writes settle it again).
    pub fn unknown(&mut self, volume: &str) {
        let size = self.volumes[volume].size;
        let runs = self.volumes.get_mut(volume).expect("a modelled volume");
        runs.runs = BTreeMap::from([(0, Possible::Anything)]);
        runs.size = size;
    }

    /// A command that replaces the volume's content (an establish onto it) has an unknown
    /// outcome and may still apply later: nothing about its content can be checked any more.
    pub fn taint(&mut self, volume: &str) {
        self.unknown(volume);
        self.tainted.insert(volume.to_string());
    }

    pub fn size(&self, volume: &str) -> u64 {
        self.volumes[volume].size
    }

    /// Checks what a read at `offset` returned, run by run, and notes what it saw (a write in
    /// flight seen has landed); says what is wrong, if anything.
    pub fn read(&mut self, volume: &str, offset: u64, data: &[u8]) -> Result<(), String> {
        let end = offset + data.len() as u64;
        let failed = self.failed.get(volume).cloned().unwrap_or_default();
        let runs = self.volumes.get_mut(volume).expect("a modelled volume");
        for (start, stop, possible) in runs.range_mut(offset, end) {
            let Some(base) = possible.candidates() else {
                continue;
            };
            // A failed write may cover only part of a run (a point in time or a restore gives
            // a volume another's runs, whose edges are not its failed writes' edges): the run
            // is checked piece by piece between their edges (seed 70880).
            let mut edges: Vec<u64> = failed
                .iter()
                .flat_map(|f| [f.offset, f.offset + f.length])
                .filter(|edge| start < *edge && *edge < stop)
                .chain([start, stop])
                .collect();
            edges.sort_unstable();
            edges.dedup();
            let whole = edges.len() == 2;
            for piece in edges.windows(2) {
                let (from, to) = (piece[0], piece[1]);
                let bytes = &data[(from - offset) as usize..(to - offset) as usize];
                let mut candidates = base.clone();
                let covering = failed.iter().filter(|f| f.offset <= from && to <= f.offset + f.length);
                candidates.extend(covering.map(|f| f.value));
                candidates.sort_unstable();
                candidates.dedup();
                let matching: Vec<u64> = candidates.into_iter().filter(|v| holds(bytes, *v, from)).collect();
                match matching.as_slice() {
                    [] => {
                        return Err(format!(
                            "{volume} bytes {from}..{to} read as no acknowledged or in-flight write left them (possible: {possible:?}; first bytes read {:?})",
                            &bytes[..bytes.len().min(8)]
                        ));
                    }
                    // Seen (a short run may match more than one value by chance: then nothing
                    // is learnt; nor from a piece of a run).
                    [value] if whole => possible.seen(*value),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(m: &mut Model, volume: &str, offset: u64, value: u64, length: u64) -> Result<(), String> {
        m.read(volume, offset, &bytes_of(value, offset, length))
    }

    #[test]
    fn the_model_allows_what_may_be_there_and_nothing_else() {
        let mut m = Model::default();
        m.create("a", 4096);
        assert!(reads(&mut m, "a", 0, 0, 4096).is_ok());
        m.written("a", 100, 10, 7, true);
        assert!(reads(&mut m, "a", 100, 0, 10).is_err());
        assert!(reads(&mut m, "a", 95, 0, 5).is_ok() && reads(&mut m, "a", 110, 0, 5).is_ok());
        // A read across the write's edge sees both runs.
        let mut across = bytes_of(0, 95, 5);
        across.extend(bytes_of(7, 100, 10));
        assert!(m.read("a", 95, &across).is_ok());
        m.written("a", 105, 10, 8, false);
        assert!(reads(&mut m, "a", 105, 7, 5).is_ok() && reads(&mut m, "a", 105, 8, 5).is_ok());
        // Seen landed: what it overwrote cannot come back.
        assert!(reads(&mut m, "a", 105, 7, 5).is_err(), "a read went back in time");
        assert!(
            reads(&mut m, "a", 100, 7, 5).is_ok(),
            "bytes the later write did not cover"
        );

        // Two held writes acknowledged in either order: the later one is what stays.
        m.written("a", 200, 8, 21, false);
        m.written("a", 200, 8, 22, false);
        m.written("a", 200, 8, 21, true);
        m.written("a", 200, 8, 22, true);
        m.written("a", 200, 8, 21, true);
        assert!(reads(&mut m, "a", 200, 22, 8).is_ok() && reads(&mut m, "a", 200, 21, 8).is_err());

        // A target's write in flight across an establish may land after it.
        m.create("b", 4096);
        m.written("b", 200, 8, 5, false);
        m.established("a", "b");
        m.written("b", 200, 8, 5, false);
        assert!(reads(&mut m, "b", 200, 5, 8).is_ok());
        m.written("b", 200, 8, 5, true);
        assert!(reads(&mut m, "b", 200, 22, 8).is_err());
        m.established("a", "b");
        m.written("a", 100, 1, 9, true);
        assert!(reads(&mut m, "b", 100, 7, 1).is_ok());
        assert!(
            reads(&mut m, "b", 100, 9, 1).is_err(),
            "the target keeps its point in time"
        );
        // A source's write in flight at the establish may be in the point in time.
        m.written("a", 300, 4, 30, false);
        m.established("a", "b");
        m.written("b", 302, 1, 31, false);
        assert!(reads(&mut m, "b", 300, 30, 2).is_ok());
        assert!(reads(&mut m, "b", 302, 31, 1).is_ok() && reads(&mut m, "b", 302, 30, 1).is_err());

        // A failed write may land after a later acknowledged one, and on a later point in time.
        m.written("a", 400, 4, 40, false);
        m.failed("a", 400, 4, 40);
        m.written("a", 400, 4, 41, true);
        assert!(reads(&mut m, "a", 400, 40, 4).is_ok() && reads(&mut m, "a", 400, 41, 4).is_ok());
        m.established("a", "b");
        assert!(reads(&mut m, "b", 400, 40, 4).is_ok() && reads(&mut m, "b", 400, 41, 4).is_ok());

        let mut t = Model::default();
        t.create("a", 64);
        t.create("b", 64);
        t.taint("b");
        t.established("a", "b");
        assert!(reads(&mut t, "b", 0, 5, 64).is_ok(), "a tainted target stays unknown");
        assert!(t.read("a", 0, &[1; 8]).is_err(), "foreign bytes");
    }
}
