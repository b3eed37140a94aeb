//! A volume's queue of host writes held by a freeze, in arrival order. Every operation a write
//! or a thaw needs is O(1) per write: membership by tag is indexed, and the queue's share of the
//! digest is kept as a running sum instead of re-hashing the queue on every arrival.

use crate::command::HostWrite;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use xxhash_rust::xxh3::xxh3_64;

/// A write waiting for a thaw; `seq` orders a volume's queue (and keys it in storage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWrite {
    pub seq: u64,
    pub write: HostWrite,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "VecDeque<HeldWrite>", into = "VecDeque<HeldWrite>")]
pub struct HeldWrites {
    queue: VecDeque<HeldWrite>,
    // Derived from the queue: how many queued writes carry each tag.
    tags: HashMap<u64, usize>,
    digest: u64,
}

fn write_hash(held: &HeldWrite) -> u64 {
    let w = &held.write;
    let mut bytes = Vec::with_capacity(32);
    for value in [held.seq, w.tag, w.offset, w.data.len()] {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    xxh3_64(&bytes)
}

impl HeldWrites {
    /// Queues a write behind the others; returns its sequence number.
    pub(crate) fn push(&mut self, write: HostWrite) -> u64 {
        let seq = self.queue.back().map_or(0, |h| h.seq + 1);
        self.push_held(HeldWrite { seq, write });
        seq
    }

    /// Puts back a write read from storage (in sequence order).
    pub fn push_held(&mut self, held: HeldWrite) {
        *self.tags.entry(held.write.tag).or_default() += 1;
        self.digest = self.digest.wrapping_add(write_hash(&held));
        self.queue.push_back(held);
    }

    /// Takes writes from the front of the queue, oldest first: at most `count`, and no more
    /// than `bytes` of data unless the first write alone is larger (it is taken alone).
    pub(crate) fn take_front(&mut self, count: usize, bytes: u64) -> Vec<HeldWrite> {
        let mut taken = Vec::new();
        let mut total = 0u64;
        while let Some(front) = self.queue.front() {
            let len = front.write.data.len();
            if taken.len() >= count || (!taken.is_empty() && total + len > bytes) {
                break;
            }
            total += len;
            let held = self.queue.pop_front().expect("looked at the front");
            if let Some(n) = self.tags.get_mut(&held.write.tag) {
                *n -= 1;
                if *n == 0 {
                    self.tags.remove(&held.write.tag);
                }
            }
            self.digest = self.digest.wrapping_sub(write_hash(&held));
            taken.push(held);
        }
        taken
    }

    pub fn contains_tag(&self, tag: u64) -> bool {
        self.tags.contains_key(&tag)
    }

    /// The write with this sequence number (searched from the newest, where pushes land).
    pub fn get(&self, seq: u64) -> Option<&HeldWrite> {
        self.queue.iter().rev().find(|h| h.seq == seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeldWrite> {
        self.queue.iter()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The queue's contribution to its record's digest: (length, sum of write hashes).
    pub(crate) fn digest(&self) -> (usize, u64) {
        (self.queue.len(), self.digest)
    }
}

impl From<VecDeque<HeldWrite>> for HeldWrites {
    fn from(queue: VecDeque<HeldWrite>) -> Self {
        let mut held = HeldWrites::default();
        for h in queue {
            held.push_held(h);
        }
        held
    }
}

impl From<HeldWrites> for VecDeque<HeldWrite> {
    fn from(held: HeldWrites) -> Self {
        held.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::WriteData;

    fn write(tag: u64, len: usize) -> HostWrite {
        HostWrite {
            volume: "v".into(),
            opened: None,
            offset: 0,
            data: WriteData::Bytes(vec![1; len].into()),
            tag,
        }
    }

    #[test]
    fn the_front_is_taken_within_count_and_bytes_and_the_index_follows() {
        let mut held = HeldWrites::default();
        for (tag, len) in [(1, 40), (2, 40), (3, 100), (4, 10), (4, 10)] {
            held.push(write(tag, len));
        }
        let seqs = |taken: Vec<HeldWrite>| taken.iter().map(|h| h.seq).collect::<Vec<_>>();
        // Bytes bound: 40 + 40 fit in 90, the next 100 does not.
        assert_eq!(seqs(held.take_front(10, 90)), vec![0, 1]);
        assert!(!held.contains_tag(1) && held.contains_tag(3));
        // A write larger than the bound goes alone.
        assert_eq!(seqs(held.take_front(10, 50)), vec![2]);
        // Count bound; a tag queued twice stays indexed until both are gone.
        assert_eq!(seqs(held.take_front(1, 1000)), vec![3]);
        assert!(held.contains_tag(4));
        assert_eq!(seqs(held.take_front(10, 1000)), vec![4]);
        assert!(!held.contains_tag(4) && held.is_empty());
        assert_eq!(held.digest(), (0, 0));
        assert_eq!(held, HeldWrites::default());
    }
}
