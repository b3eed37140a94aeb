//! Block status: which parts of a volume are allocated, from the stored-track index alone (no
//! track data is read), with a bound on the work of one answer.

use crate::bitmap::OutOfSync;
use crate::state::State;
use crate::track::{TrackReader, VolumeId};
use roaring::RoaringBitmap;

/// A run of a volume's bytes that are all allocated (stored) or all a hole (read as zeros
/// without anything stored), as NBD block status reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub length: u64,
    pub allocated: bool,
}

/// What `State::next_allocated` found.
enum Allocated {
    At(u32),
    /// No track before this one (from where the search began) is allocated.
    NoneBefore(u32),
}

impl State {
    /// How `length` bytes at `offset` of a volume are allocated, track by track, from the state
    /// alone (no track data is read): a track is allocated when the track its reads resolve to
    /// is stored, so a target's tracks still shared with the source report the source's. Stops
    /// once about `budget` stored tracks have been looked at, so the extents may cover less than
    /// was asked (never nothing); the caller checks the range.
    pub fn allocation<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        offset: u64,
        length: u64,
        budget: u32,
    ) -> Result<Vec<Extent>, R::Error> {
        self.allocation_query(volume).run(tracks, offset, length, budget)
    }

    /// What block status of a volume needs of the state, taken now: the query then runs without
    /// the state, against storage as of this moment (a storage snapshot taken with it).
    pub fn allocation_query(&self, volume: VolumeId) -> AllocationQuery {
        AllocationQuery {
            track_size: u64::from(self.globals.track_size),
            levels: self
                .upstream(volume)
                .map(|v| {
                    let rel = self.incoming(v);
                    Level {
                        volume: v,
                        shared: rel.map(|rel| rel.out_of_sync.clone()),
                        kept: rel.map(|rel| rel.kept.clone()).unwrap_or_default(),
                    }
                })
                .collect(),
        }
    }
}

/// Block status of one volume, independent of the state (see [`State::allocation_query`]).
#[derive(Clone, Debug)]
pub struct AllocationQuery {
    track_size: u64,
    /// The volume and its sources up the cascade, nearest first, each with the tracks it still
    /// shares with the next (`None` for the last, which is no target).
    levels: Vec<Level>,
}

/// One volume of the cascade a block status query looks through.
#[derive(Clone, Debug)]
struct Level {
    volume: VolumeId,
    /// The tracks it still shares with the next level (`None` for the last, which is no target).
    shared: Option<OutOfSync>,
    /// Of those, the ones it reads from kept tracks instead: allocated, since only tracks that
    /// hold data are kept.
    kept: RoaringBitmap,
}

impl AllocationQuery {
    /// See [`State::allocation`].
    pub fn run<R: TrackReader>(
        &self,
        tracks: &R,
        offset: u64,
        length: u64,
        budget: u32,
    ) -> Result<Vec<Extent>, R::Error> {
        let ts = self.track_size;
        let end = offset + length;
        let last = ((end - 1) / ts) as u32;
        let mut looked = 0u32;
        // Runs of tracks: (first, end, allocated).
        let mut runs: Vec<(u32, u32, bool)> = Vec::new();
        let push = |runs: &mut Vec<(u32, u32, bool)>, from: u32, to: u32, allocated: bool| match runs.last_mut() {
            Some(run) if run.2 == allocated && run.1 == from => run.1 = to,
            _ => runs.push((from, to, allocated)),
        };
        let mut track = (offset / ts) as u32;
        while track <= last {
            match self.next_allocated(tracks, 0, track, last, &mut looked, budget)? {
                Allocated::At(found) => {
                    if found > track {
                        push(&mut runs, track, found, false);
                    }
                    push(&mut runs, found, found + 1, true);
                    track = found + 1;
                }
                Allocated::NoneBefore(bound) => {
                    push(&mut runs, track, bound, false);
                    track = bound;
                }
            }
            if looked >= budget {
                break;
            }
        }
        Ok(runs
            .into_iter()
            .map(|(from, to, allocated)| {
                let start = (u64::from(from) * ts).max(offset);
                let stop = (u64::from(to) * ts).min(end);
                Extent {
                    length: stop - start,
                    allocated,
                }
            })
            .collect())
    }

    /// The first track in `from..=last` allocated as level `level` of the cascade reads it — one
    /// that level stores and does not share, or one it shares that the next level up reads as
    /// allocated — or, when the budget of stored tracks to look at runs out first, how far the
    /// search got. A search always gets past `from`.
    fn next_allocated<R: TrackReader>(
        &self,
        tracks: &R,
        level: usize,
        from: u32,
        last: u32,
        looked: &mut u32,
        budget: u32,
    ) -> Result<Allocated, R::Error> {
        // A kept track is allocated: search the tracks before the first one as if it were not there.
        let Some(kept) = self.levels[level].kept.range(from..=last).next() else {
            return self.next_allocated_unkept(tracks, level, from, last, looked, budget);
        };
        if kept == from {
            *looked += 1;
            return Ok(Allocated::At(from));
        }
        Ok(
            match self.next_allocated_unkept(tracks, level, from, kept - 1, looked, budget)? {
                Allocated::NoneBefore(bound) if bound >= kept => {
                    // Counted as a stored track looked at, as a target's own copy would be.
                    *looked += 1;
                    Allocated::At(kept)
                }
                found => found,
            },
        )
    }

    /// [`Self::next_allocated`] over a range holding no kept track of this level.
    fn next_allocated_unkept<R: TrackReader>(
        &self,
        tracks: &R,
        level: usize,
        from: u32,
        last: u32,
        looked: &mut u32,
        budget: u32,
    ) -> Result<Allocated, R::Error> {
        let Level { volume, shared, .. } = &self.levels[level];
        let is_shared = |track: u32| shared.as_ref().is_some_and(|oos| oos.contains(track));
        // Nothing the next level reads as allocated is shared here before `bound`, unless `theirs`.
        let mut bound = last + 1;
        let mut theirs = None;
        if let Some(out_of_sync) = shared {
            // Leapfrog over the two sets: the next level's allocated tracks, the shared ones.
            let mut at = from;
            loop {
                if *looked >= budget && at > from {
                    bound = at;
                    break;
                }
                let Some(next_shared) = out_of_sync.first_from(at).filter(|t| *t <= last) else {
                    break;
                };
                match self.next_allocated(tracks, level + 1, next_shared, last, looked, budget)? {
                    Allocated::At(found) if out_of_sync.contains(found) => {
                        theirs = Some(found);
                        break;
                    }
                    Allocated::At(found) => at = found + 1,
                    Allocated::NoneBefore(b) => {
                        bound = b;
                        break;
                    }
                }
            }
        }
        // This level's own tracks only matter before what the next level answered.
        let limit = theirs.map_or(bound, |t| t.min(bound));
        let mut at = from;
        while at < limit {
            if *looked >= budget && at > from {
                return Ok(Allocated::NoneBefore(at));
            }
            let Some(stored) = tracks.next_stored(*volume, at)?.filter(|t| *t < limit) else {
                break;
            };
            *looked += 1;
            if !is_shared(stored) {
                return Ok(Allocated::At(stored));
            }
            at = stored + 1;
        }
        Ok(match theirs {
            Some(t) if t < bound => Allocated::At(t),
            _ => Allocated::NoneBefore(limit),
        })
    }
}
