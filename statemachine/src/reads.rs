//! The data plane's reads: a host request checked against the volume, and its bytes resolved
//! through the volume's relationships (a target's uncopied tracks live on the source, or up the
//! cascade).

use crate::error::CommandError;
use crate::state::State;
use crate::track::{TrackReader, VolumeId};

impl State {
    /// Which volume's stored track holds the bytes a host reading `track` of `volume` must see:
    /// the volume itself, or, while the track is out of sync, what its source reads there (in a
    /// cascade A→B→C, C's uncopied track is B's, or A's when B has not copied it either).
    pub fn resolve_read(&self, volume: VolumeId, track: u32) -> VolumeId {
        // Bounded, though establish refuses a cycle and a cascade deeper than this.
        let mut at = volume;
        for _ in 0..=crate::cascade::MAX_CASCADE_DEPTH {
            match self.incoming(at).filter(|r| r.out_of_sync.contains(track)) {
                // Its point-in-time content left the source: kept once for the targets sharing it.
                Some(rel) if rel.kept.contains(track) => return rel.kept_by.kept(),
                Some(rel) => at = rel.source,
                None => break,
            }
        }
        at
    }

    /// Whether any relationship still reads `track` from the tracks `owner` keeps
    /// ([`VolumeId::kept`]): a target of it, or its own relationship after a fast reverse.
    pub fn holds_kept(&self, owner: VolumeId, track: u32) -> bool {
        self.keepers(owner).any(|rel| rel.kept.contains(track))
    }

    /// Whether any relationship reads anything from the tracks `owner` keeps.
    pub fn keeps_any(&self, owner: VolumeId) -> bool {
        self.keepers(owner).any(|rel| !rel.kept.is_empty())
    }

    /// Every kept track of `owner` some relationship still reads.
    pub(crate) fn kept_union(&self, owner: VolumeId) -> roaring::RoaringBitmap {
        let mut union = roaring::RoaringBitmap::new();
        for rel in self.keepers(owner) {
            union |= &rel.kept;
        }
        union
    }

    /// Which of `tracks` (kept tracks of `owner`) no relationship reads: subtracted reader by
    /// reader, so the cost follows `tracks`, not the readers' whole bitmaps.
    pub(crate) fn unread_kept(&self, owner: VolumeId, mut tracks: roaring::RoaringBitmap) -> roaring::RoaringBitmap {
        for rel in self.keepers(owner) {
            tracks -= &rel.kept;
        }
        tracks
    }

    /// The relationships whose kept tracks `owner` keeps (at most its targets and its own).
    fn keepers(&self, owner: VolumeId) -> impl Iterator<Item = &crate::relationship::Relationship> + '_ {
        let targets = self
            .records
            .get(&owner)
            .into_iter()
            .flat_map(|r| r.volume.targets.iter());
        targets
            .copied()
            .chain(std::iter::once(owner))
            .filter_map(|v| self.incoming(v))
            .filter(move |rel| rel.kept_by == owner)
    }

    /// The volume and its sources up the cascade, nearest first (A→B→C: C, B, A): every volume
    /// a read of it may resolve to. Never a cycle: establish refuses one.
    pub fn upstream(&self, volume: VolumeId) -> impl Iterator<Item = VolumeId> + '_ {
        std::iter::successors(Some(volume), |v| self.incoming(*v).map(|r| r.source))
            .take(crate::cascade::MAX_CASCADE_DEPTH + 1)
    }

    /// Reads `length` bytes at `offset` of a volume as a host sees them. The caller checks the
    /// range (see [`State::check_range`]).
    pub fn read<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, R::Error> {
        self.read_plan(volume, offset, length).read(tracks)
    }

    /// Fills `out` with the volume's bytes from `offset` on, as a host sees them: only the
    /// blocks asked for are read. The caller checks the range.
    pub fn read_into<R: TrackReader>(
        &self,
        tracks: &R,
        volume: VolumeId,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), R::Error> {
        self.read_plan(volume, offset, out.len() as u64).read_into(tracks, out)
    }

    /// Where the bytes of a host read live, resolved now: the plan can then be read without the
    /// state, from storage as of this moment (a storage snapshot taken together with it), so
    /// the state's lock is not held during the I/O. The caller checks the range.
    pub fn read_plan(&self, volume: VolumeId, offset: u64, length: u64) -> ReadPlan {
        let ts = u64::from(self.globals.track_size);
        let mut pieces = Vec::new();
        let mut done = 0u64;
        while done < length {
            let pos = offset + done;
            let track = (pos / ts) as u32;
            let within = pos % ts;
            let take = (ts - within).min(length - done);
            pieces.push(Piece {
                volume: self.resolve_read(volume, track),
                track,
                within: within as usize,
                length: take as usize,
            });
            done += take;
        }
        ReadPlan {
            pieces,
            length: length as usize,
        }
    }

    /// Checks that a host request fits the volume, and that `name` still names the volume the
    /// host opened (`opened`, when it opened one).
    pub fn check_range(
        &self,
        name: &str,
        opened: Option<VolumeId>,
        offset: u64,
        length: u64,
    ) -> Result<VolumeId, CommandError> {
        let id = self
            .volume_id(name)
            .ok_or_else(|| CommandError::VolumeNotFound { name: name.to_string() })?;
        if opened.is_some_and(|opened| opened != id) {
            return Err(CommandError::VolumeReplaced { name: name.to_string() });
        }
        let size = self.records[&id].volume.size;
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(id),
            _ => Err(CommandError::OutOfRange {
                volume: name.to_string(),
                offset,
                length,
                size,
            }),
        }
    }

    /// Whether zeroing the volume may copy tracks first: it is a source, and its targets may
    /// still share what it stores. `None` if there is no such volume.
    pub fn zeroing_copies(&self, volume: VolumeId) -> Option<bool> {
        self.records.get(&volume).map(|r| !r.volume.targets.is_empty())
    }

    /// Whether hosts may write the volume (false for the target of a `--tgtinhibit` relationship).
    pub fn writable(&self, volume: VolumeId) -> bool {
        !self.incoming(volume).is_some_and(|r| r.target_write_inhibit)
    }
}

/// A host read resolved against the state (see [`State::read_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    pieces: Vec<Piece>,
    length: usize,
}

/// Part of one stored track: `length` bytes from `within`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    volume: VolumeId,
    track: u32,
    within: usize,
    length: usize,
}

impl ReadPlan {
    pub fn read<R: TrackReader>(&self, tracks: &R) -> Result<Vec<u8>, R::Error> {
        let mut out = vec![0; self.length];
        self.read_into(tracks, &mut out)?;
        Ok(out)
    }

    /// Fills `out`, which holds exactly the plan's length.
    pub fn read_into<R: TrackReader>(&self, tracks: &R, out: &mut [u8]) -> Result<(), R::Error> {
        assert_eq!(out.len(), self.length, "a plan fills exactly its length");
        let mut done = 0;
        for piece in &self.pieces {
            tracks.read_into(
                piece.volume,
                piece.track,
                piece.within,
                &mut out[done..done + piece.length],
            )?;
            done += piece.length;
        }
        Ok(())
    }
}
