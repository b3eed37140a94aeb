//! Per-relationship track bitmaps.
//!
//! `OutOfSync` is the FlashCopy out-of-sync bitmap: bit set = "the target's track still lives on
//! the source". Establishing a relationship sets every bit of a volume that may hold 2^28 tracks,
//! and that must cost the same as for a tiny volume. roaring 0.10 has no run containers, so a
//! full bitmap would be eagerly large; instead the bitmap may be stored *inverted* (the set of
//! tracks already in sync), which makes "all out of sync" an empty set. Each operation picks
//! whichever side is cheap; callers never see the representation.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

/// Which tracks of a relationship's target are still out of sync with its point in time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutOfSync {
    /// Number of tracks of the volumes.
    tracks: u32,
    /// `false`: `bits` is the set of out-of-sync tracks. `true`: `bits` is the set of in-sync tracks.
    inverted: bool,
    bits: RoaringBitmap,
}

impl OutOfSync {
    /// Every track out of sync (a fresh establish). Constant size.
    pub fn all(tracks: u32) -> Self {
        OutOfSync {
            tracks,
            inverted: true,
            bits: RoaringBitmap::new(),
        }
    }

    /// Exactly the tracks of `set` out of sync.
    pub fn from_set(tracks: u32, set: RoaringBitmap) -> Self {
        let mut oos = OutOfSync {
            tracks,
            inverted: false,
            bits: set,
        };
        oos.bits.remove_range(tracks..);
        oos
    }

    /// The complement: tracks out of sync here are in sync in the result and vice versa.
    /// Cheap whatever the sizes (it flips the representation).
    pub fn complement(&self) -> Self {
        OutOfSync {
            tracks: self.tracks,
            inverted: !self.inverted,
            bits: self.bits.clone(),
        }
    }

    /// The stored representation: the bits, and whether they are the in-sync set (inverted).
    /// For storage, which persists the bits block by block.
    pub fn raw(&self) -> (&RoaringBitmap, bool) {
        (&self.bits, self.inverted)
    }

    /// Rebuilds a bitmap from [`OutOfSync::raw`] parts.
    pub fn from_raw(tracks: u32, inverted: bool, bits: RoaringBitmap) -> Self {
        OutOfSync { tracks, inverted, bits }
    }

    pub fn tracks(&self) -> u32 {
        self.tracks
    }

    pub fn contains(&self, track: u32) -> bool {
        track < self.tracks && (self.bits.contains(track) != self.inverted)
    }

    /// Number of tracks out of sync.
    pub fn len(&self) -> u64 {
        if self.inverted {
            u64::from(self.tracks) - self.bits.len()
        } else {
            self.bits.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks a track as in sync (copied). Returns whether it was out of sync.
    pub fn mark_copied(&mut self, track: u32) -> bool {
        if !self.contains(track) {
            return false;
        }
        if self.inverted {
            self.bits.insert(track);
        } else {
            self.bits.remove(track);
        }
        self.normalize();
        true
    }

    /// Keeps the smaller side: once more than half is copied, the out-of-sync set is smaller than
    /// the in-sync set and is stored instead (an empty bitmap is always stored plainly).
    fn normalize(&mut self) {
        if self.inverted && self.len() < self.bits.len() {
            *self = OutOfSync::from_set(self.tracks, self.to_set());
        }
    }

    /// Marks every track of `range` in sync. Returns how many were out of sync.
    pub fn mark_range_copied(&mut self, range: std::ops::Range<u32>) -> u64 {
        let range = range.start.min(self.tracks)..range.end.min(self.tracks);
        let len = u64::from(range.end - range.start);
        let cleared = if self.inverted {
            let cleared = len - self.bits.range_cardinality(range.clone());
            self.bits.insert_range(range);
            cleared
        } else {
            let cleared = self.bits.range_cardinality(range.clone());
            self.bits.remove_range(range);
            cleared
        };
        self.normalize();
        cleared
    }

    /// Marks every track of `set` out of sync again (resync merges change bitmaps this way).
    pub fn mark_out_of_sync(&mut self, set: &RoaringBitmap) {
        if self.inverted {
            self.bits -= set;
        } else {
            self.bits |= set;
            self.bits.remove_range(self.tracks..);
        }
    }

    /// Marks every track of `set` in sync again (a revert undoes `mark_out_of_sync` this way).
    pub fn mark_in_sync(&mut self, set: &RoaringBitmap) {
        if self.inverted {
            self.bits |= set;
            self.bits.remove_range(self.tracks..);
        } else {
            self.bits -= set;
        }
        self.normalize();
    }

    /// The lowest out-of-sync track at or after `from`.
    pub fn first_from(&self, from: u32) -> Option<u32> {
        if from >= self.tracks {
            return None;
        }
        if !self.inverted {
            return self.bits.range(from..).next();
        }
        // Inverted: find the first track not in the in-sync set. Binary search on the number of
        // in-sync tracks in [from, mid], which is `mid - from + 1` exactly while no gap is seen.
        let (mut lo, mut hi) = (from, self.tracks - 1);
        if self.bits.range_cardinality(from..=hi) == u64::from(hi - from + 1) {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bits.range_cardinality(from..=mid) == u64::from(mid - from + 1) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// The out-of-sync tracks as an explicit set. Costs O(tracks) when stored inverted, so only
    /// for small volumes: tests and diagnostics.
    pub fn to_set(&self) -> RoaringBitmap {
        if self.inverted {
            let mut all = RoaringBitmap::new();
            all.insert_range(0..self.tracks);
            all - &self.bits
        } else {
            self.bits.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn establish_of_the_largest_volume_is_constant_size() {
        let oos = OutOfSync::all(1 << 28);
        assert_eq!(oos.len(), 1 << 28);
        assert!(oos.bits.is_empty());
        assert_eq!(oos.first_from(0), Some(0));
    }

    #[test]
    fn copying_in_any_order_empties_it() {
        let mut oos = OutOfSync::all(10);
        for t in [3, 0, 9, 1, 2, 4, 5, 6, 8] {
            assert!(oos.mark_copied(t));
            assert!(!oos.mark_copied(t), "second copy of {t} is a no-op");
        }
        assert_eq!(oos.first_from(0), Some(7));
        assert_eq!(oos.first_from(8), None);
        assert!(oos.mark_copied(7));
        assert!(oos.is_empty());
        assert!(!oos.inverted, "an empty bitmap is stored plainly");
    }

    #[test]
    fn first_from_skips_copied_tracks_in_both_representations() {
        let mut inverted = OutOfSync::all(1000);
        for t in 0..700 {
            inverted.mark_copied(t);
        }
        inverted.mark_copied(701);
        assert_eq!(inverted.first_from(0), Some(700));
        assert_eq!(inverted.first_from(701), Some(702));
        let plain = OutOfSync::from_set(1000, inverted.to_set());
        assert_eq!(plain.first_from(0), Some(700));
        assert_eq!(plain.first_from(701), Some(702));
        assert_eq!(plain.len(), inverted.len());
    }

    #[test]
    fn range_copies_in_both_representations() {
        let mut inverted = OutOfSync::all(100);
        inverted.mark_copied(5);
        assert_eq!(inverted.mark_range_copied(0..10), 9);
        assert_eq!(inverted.first_from(0), Some(10));
        let mut plain = OutOfSync::from_set(100, RoaringBitmap::from_iter([3, 50, 99]));
        assert_eq!(plain.mark_range_copied(0..60), 2);
        assert_eq!(plain.mark_range_copied(90..500), 1, "clamped to the volume");
        assert!(plain.is_empty());
        assert_eq!(inverted.mark_range_copied(10..100), 90);
        assert!(inverted.is_empty() && !inverted.inverted);
    }

    #[test]
    fn more_than_half_copied_is_stored_plainly() {
        let mut oos = OutOfSync::all(1 << 20);
        oos.mark_range_copied(0..(1 << 19) + 10);
        assert!(!oos.inverted, "the smaller side is kept");
        assert_eq!(oos.len(), (1 << 19) - 10);
        assert_eq!(oos.first_from(0), Some((1 << 19) + 10));
        let mut inverted = OutOfSync::all(10);
        for t in 0..6 {
            inverted.mark_copied(t);
        }
        assert!(!inverted.inverted);
        assert_eq!(inverted.to_set(), RoaringBitmap::from_iter(6..10));
    }

    #[test]
    fn complement_and_merge() {
        let mut oos = OutOfSync::from_set(8, RoaringBitmap::from_iter([1, 2, 30]));
        assert_eq!(oos.len(), 2, "bits past the end are ignored");
        let c = oos.complement();
        assert_eq!(c.to_set(), RoaringBitmap::from_iter([0, 3, 4, 5, 6, 7]));
        oos.mark_out_of_sync(&RoaringBitmap::from_iter([5, 9]));
        assert_eq!(oos.to_set(), RoaringBitmap::from_iter([1, 2, 5]));
        let mut c = c;
        c.mark_out_of_sync(&RoaringBitmap::from_iter([1]));
        assert_eq!(c.len(), 7);
    }
}
