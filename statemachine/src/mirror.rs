//! Metro Mirror (synchronous PPRC) data: the paths to remote clusters and the pair a volume is
//! in, with its state and bitmaps. The rules that change them are in `pprc.rs`.
//!
//! A pair numbers everything it sends to its secondary (each streamed host write, each copy
//! step) with a sequence number of its own, so the state machine needs no log index. The
//! secondary applies a sequence number once and in order; the primary records which sequence
//! numbers the secondary confirmed, and keeps every track sent but not yet confirmed in two
//! epoch bitmaps: on a suspension they go back into the out-of-sync bitmap, so nothing that
//! may differ between the sites is ever forgotten.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A link to a remote cluster, named by that cluster's id (checked when the path is made).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PprcPath {
    pub remote_cluster: String,
    /// The remote's admin API, e.g. `http://site-b:8080`.
    pub url: String,
    /// The remote cluster's token. The journal keeps it redacted and the digest leaves it out.
    pub token: Option<String>,
    /// CA certificates (PEM) the remote's HTTPS certificate is checked against.
    pub ca: Option<String>,
}

/// What the journal keeps of a path's token.
pub const REDACTED: &str = "(redacted)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairRole {
    Primary,
    Secondary,
}

/// Why a pair is suspended (DS8000 shows the reason beside the state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuspendReason {
    /// `pausepprc`.
    Operator,
    /// The secondary did not confirm within the mirror timeout.
    LinkFailure,
    /// This volume was the secondary and `failoverpprc` made it a primary.
    FailedOver,
    /// The secondary refused the pair (it failed over, or the pair is gone there).
    SecondaryRefused,
}

impl fmt::Display for SuspendReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SuspendReason::Operator => "operator",
            SuspendReason::LinkFailure => "link-failure",
            SuspendReason::FailedOver => "failed-over",
            SuspendReason::SecondaryRefused => "secondary-refused",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    /// First copy or resync running: tracks to go, nothing streamed.
    CopyPending,
    /// Every host write is acknowledged only once the secondary has it.
    FullDuplex,
    Suspended(SuspendReason),
}

/// A volume's Metro Mirror pair, as this site sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorPair {
    pub role: PairRole,
    pub remote_cluster: String,
    pub remote_volume: String,
    /// Chosen by the primary when the pair is made; a failover moves it on, and a secondary
    /// refuses everything sent under another generation (no split brain after a failover).
    pub generation: u64,
    pub state: PairState,
    /// Primary: tracks that may differ at the secondary and are still to be copied.
    pub out_of_sync: RoaringBitmap,
    /// Primary: tracks sent with sequence numbers `older_from..recent_from`, not known confirmed.
    pub older: RoaringBitmap,
    pub older_from: u64,
    /// Primary: tracks sent with sequence numbers from `recent_from` on.
    pub recent: RoaringBitmap,
    pub recent_from: u64,
    /// Primary: the last sequence number given.
    pub sent: u64,
    /// Primary: the highest sequence number the secondary confirmed. Secondary: the highest
    /// it applied.
    pub confirmed: u64,
    /// Secondary: its image is the primary's as of some point in the primary's write order.
    /// False while a copy runs (tracks arrive in track order, not in write order).
    pub consistent: bool,
}

impl MirrorPair {
    pub(crate) fn new(role: PairRole, remote_cluster: &str, remote_volume: &str, generation: u64) -> MirrorPair {
        MirrorPair {
            role,
            remote_cluster: remote_cluster.to_string(),
            remote_volume: remote_volume.to_string(),
            generation,
            state: PairState::CopyPending,
            out_of_sync: RoaringBitmap::new(),
            older: RoaringBitmap::new(),
            older_from: 1,
            recent: RoaringBitmap::new(),
            recent_from: 1,
            sent: 0,
            confirmed: 0,
            consistent: false,
        }
    }

    /// The DS CLI's name of the state, as this site sees it.
    pub fn state_name(&self) -> String {
        let name = match self.state {
            PairState::CopyPending => "copy-pending",
            PairState::FullDuplex => "full-duplex",
            PairState::Suspended(_) => "suspended",
        };
        match self.role {
            PairRole::Primary => name.to_string(),
            PairRole::Secondary => format!("target-{name}"),
        }
    }

    /// Tracks that may differ between the sites: still to copy, or sent and not confirmed.
    pub fn tracks_out_of_sync(&self) -> u64 {
        (&(&self.out_of_sync | &self.older) | &self.recent).len()
    }

    /// Records tracks as sent under the next sequence number; returns it.
    pub(crate) fn send(&mut self, tracks: &RoaringBitmap) -> u64 {
        self.sent += 1;
        self.recent |= tracks;
        self.sent
    }

    /// The secondary confirmed every sequence number through `seq`. Once everything in the
    /// older epoch is confirmed, it is forgotten and the recent epoch becomes the older one: a
    /// track in neither was confirmed. Returns whether anything changed.
    pub(crate) fn confirm(&mut self, seq: u64) -> bool {
        let seq = seq.min(self.sent);
        let mut changed = false;
        if seq > self.confirmed {
            self.confirmed = seq;
            changed = true;
        }
        if self.confirmed + 1 >= self.recent_from && !(self.older.is_empty() && self.recent.is_empty()) {
            self.older = std::mem::take(&mut self.recent);
            self.older_from = self.recent_from;
            self.recent_from = self.sent + 1;
            changed = true;
        }
        changed
    }

    /// A sequence number sent and neither confirmed nor voided (every one before `older_from`
    /// is one or the other), if there is one: the highest.
    pub(crate) fn unconfirmed_seq(&self) -> Option<u64> {
        (self.sent >= (self.confirmed + 1).max(self.older_from)).then_some(self.sent)
    }

    /// Everything sent and not confirmed may differ: it goes back to be copied.
    pub(crate) fn unconfirmed_to_out_of_sync(&mut self) {
        self.out_of_sync |= &self.older;
        self.out_of_sync |= &self.recent;
        self.older.clear();
        self.recent.clear();
        self.older_from = self.sent + 1;
        self.recent_from = self.sent + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracks(t: &[u32]) -> RoaringBitmap {
        t.iter().copied().collect()
    }

    #[test]
    fn a_track_leaves_the_epochs_only_once_its_sequence_number_is_confirmed() {
        let mut p = MirrorPair::new(PairRole::Primary, "b", "v", 1);
        let s1 = p.send(&tracks(&[1]));
        let s2 = p.send(&tracks(&[2]));
        assert_eq!((s1, s2), (1, 2));
        // Confirming 1 moves both into the older epoch (2 is in it too, unconfirmed).
        assert!(p.confirm(1));
        assert_eq!(p.tracks_out_of_sync(), 2);
        let _s3 = p.send(&tracks(&[3]));
        // 2 is not confirmed yet: track 2 stays.
        p.confirm(1);
        assert!(p.older.contains(2) || p.recent.contains(2));
        p.confirm(3);
        p.confirm(3);
        assert_eq!(p.tracks_out_of_sync(), 0, "all confirmed: nothing may differ");
    }

    #[test]
    fn suspension_keeps_every_unconfirmed_track() {
        let mut p = MirrorPair::new(PairRole::Primary, "b", "v", 1);
        for t in 0..10 {
            p.send(&tracks(&[t]));
            if t % 3 == 0 {
                p.confirm(u64::from(t / 2));
            }
        }
        let confirmed = p.confirmed;
        p.unconfirmed_to_out_of_sync();
        // Sequence number s sent track s - 1: every track sent after `confirmed` is out of sync.
        for seq in confirmed + 1..=p.sent {
            assert!(p.out_of_sync.contains((seq - 1) as u32), "seq {seq} lost");
        }
    }
}
