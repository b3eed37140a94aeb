//! The writes mirror primaries must send, as apply handed them over (the tap), per volume in
//! sequence order, until the secondary confirmed them. Every node keeps them, so a new leader
//! can re-send what the old one had not confirmed; a follower keeps at most `FOLLOWER_BYTES`
//! (beyond it the oldest go, and a new leader copies those tracks instead).

use statemachine::{Mirrored, VolumeId, WriteData};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Tapped bytes a node that does not lead keeps at most.
const FOLLOWER_BYTES: u64 = 256 << 20;

/// One tapped write.
#[derive(Clone, Debug)]
pub struct Tapped {
    /// The entry that applied it (a host write waits for its entry's writes).
    pub index: u64,
    pub generation: u64,
    pub seq: u64,
    pub offset: u64,
    pub data: WriteData,
}

#[derive(Default)]
pub struct Tap {
    volumes: Mutex<BTreeMap<VolumeId, VecDeque<Tapped>>>,
}

impl Tap {
    /// Called by apply, in log order.
    pub fn push(&self, index: u64, mirrored: Vec<Mirrored>) {
        let mut volumes = self.volumes.lock().expect("not poisoned");
        for m in mirrored {
            let queue = volumes.entry(m.volume).or_default();
            // A pair made again starts its sequence numbers over.
            if queue.back().is_some_and(|t| t.generation != m.generation) {
                queue.clear();
            }
            queue.push_back(Tapped {
                index,
                generation: m.generation,
                seq: m.seq,
                offset: m.offset,
                data: m.data,
            });
        }
    }

    /// Whether writes of `volume` are kept.
    pub fn holds(&self, volume: VolumeId) -> bool {
        self.volumes
            .lock()
            .expect("not poisoned")
            .get(&volume)
            .is_some_and(|q| !q.is_empty())
    }

    /// The sequence number a host write applied at `index` must see confirmed.
    pub fn seq_at(&self, volume: VolumeId, index: u64) -> Option<(u64, u64)> {
        let volumes = self.volumes.lock().expect("not poisoned");
        volumes
            .get(&volume)?
            .iter()
            .rev()
            .find(|t| t.index == index)
            .map(|t| (t.generation, t.seq))
    }

    /// Writes `from..=upto` of a pair's stream (shared buffers: no bytes are copied), if this
    /// node holds every one of them; `None` if one is missing. The stream bounds a request
    /// across all of a path's pairs, in log order (a bound per pair here would let a later
    /// write of another pair overtake this pair's next one).
    pub fn take(&self, volume: VolumeId, generation: u64, from: u64, upto: u64) -> Option<Vec<Tapped>> {
        let volumes = self.volumes.lock().expect("not poisoned");
        let mut out = Vec::new();
        if from > upto {
            return Some(out);
        }
        let queue = volumes.get(&volume)?;
        let first = queue.front()?;
        if first.generation != generation || first.seq > from {
            return None;
        }
        let mut expect = from;
        for t in queue.iter().skip_while(|t| t.seq < from) {
            if t.seq != expect || t.seq > upto {
                break;
            }
            out.push(t.clone());
            expect += 1;
        }
        (expect > from).then_some(out)
    }

    /// Forgets what the secondary confirmed, and writes of older generations (a late answer
    /// about an older generation forgets nothing newer).
    pub fn confirmed(&self, volume: VolumeId, generation: u64, seq: u64) {
        let mut volumes = self.volumes.lock().expect("not poisoned");
        if let Some(queue) = volumes.get_mut(&volume) {
            while queue
                .front()
                .is_some_and(|t| t.generation < generation || (t.generation == generation && t.seq <= seq))
            {
                queue.pop_front();
            }
        }
    }

    /// Forgets volumes that are no longer primaries, and on a node that does not lead, the
    /// oldest writes beyond its bound.
    pub fn retain(&self, keep: impl Fn(VolumeId) -> bool, leading: bool) {
        let mut volumes = self.volumes.lock().expect("not poisoned");
        volumes.retain(|v, q| keep(*v) && !q.is_empty());
        if leading {
            return;
        }
        let mut total: u64 = volumes.values().flatten().map(|t| t.data.len()).sum();
        while total > FOLLOWER_BYTES {
            let Some(queue) = volumes.values_mut().max_by_key(|q| q.len()) else {
                break;
            };
            match queue.pop_front() {
                Some(t) => total -= t.data.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64) -> Mirrored {
        Mirrored {
            volume: VolumeId(1),
            generation: 7,
            seq,
            offset: seq * 10,
            data: WriteData::Bytes(vec![seq as u8; 4].into()),
        }
    }

    #[test]
    fn a_stream_is_taken_in_order_and_only_whole() {
        let tap = Tap::default();
        tap.push(10, vec![m(1), m(2)]);
        tap.push(11, vec![m(3)]);
        assert_eq!(tap.seq_at(VolumeId(1), 10), Some((7, 2)));
        let all = tap.take(VolumeId(1), 7, 1, 3).unwrap();
        assert_eq!(all.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let rest = tap.take(VolumeId(1), 7, 2, 3).unwrap();
        assert_eq!(rest.len(), 2, "from a later sequence number");
        tap.confirmed(VolumeId(1), 7, 1);
        assert!(tap.take(VolumeId(1), 7, 1, 3).is_none(), "seq 1 is gone");
        assert!(tap.take(VolumeId(1), 6, 2, 3).is_none(), "another generation");
        assert_eq!(tap.take(VolumeId(1), 7, 4, 3).unwrap().len(), 0, "nothing to send");
        assert_eq!(tap.seq_at(VolumeId(1), 10), Some((7, 2)));
        tap.confirmed(VolumeId(1), 7, 3);
        assert_eq!(tap.seq_at(VolumeId(1), 11), None, "confirmed: nothing to wait for");
    }
}
