//! The write half of host I/O: all-zero data becomes zeroing (so the journal replays and zeros
//! stay thin), zeroing is split only as far as its cost requires (a whole-volume TRIM of a thin
//! volume is one entry), and a write that a freeze held is followed until the entry that
//! releases or refuses it.

use super::error::HostIoError;
use crate::server::disk::DiskGuard;
use crate::server::write_batcher::{Outcome, WriteQueue};
use statemachine::{CommandError, Event, HostWrite, VolumeId, WriteData, MAX_WRITE_BYTES};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use storage::{AuditFilter, SharedState, StateQuery};

pub struct HostWrites {
    queue: WriteQueue,
    view: SharedState,
    disk: DiskGuard,
    next_tag: AtomicU64,
}

impl HostWrites {
    /// `node_id` and `started_millis` make write tags unique across nodes and restarts.
    pub fn new(queue: WriteQueue, view: SharedState, disk: DiskGuard, node_id: u64, started_millis: u64) -> Self {
        HostWrites {
            queue,
            view,
            disk,
            next_tag: AtomicU64::new((node_id << 56) ^ (started_millis << 16)),
        }
    }

    /// A host write: returns once it is applied, also when a freeze held it first. Concurrent
    /// writes share entries (group commit). Data larger than one replication request
    /// (`storage::REPLICATION_BYTES`) is split into several writes, in order, so every entry
    /// fits the AppendEntries deadline; zeroing is split where it would drop or copy more
    /// stored tracks than one entry should (see `zero`). `opened`: the volume the writer
    /// opened, refused if `volume` names another one by the time it applies. Returns the index
    /// of the entry that applied the write's last piece.
    pub async fn write(
        &self,
        volume: &str,
        opened: VolumeId,
        offset: u64,
        data: WriteData,
    ) -> Result<u64, HostIoError> {
        // All-zero data goes as zeroing: which tracks are stored follows from the commands alone
        // (so the journal replays), and zeros written this way stay thin.
        let data = match data {
            WriteData::Bytes(b) if !b.is_empty() && b.iter().all(|&x| x == 0) => WriteData::Zeroes(b.len() as u64),
            data => data,
        };
        // Zeroing is let through a full disk: it frees space rather than taking it.
        let zeroing = matches!(data, WriteData::Zeroes(_));
        if !zeroing {
            self.disk.admit(data.len()).map_err(HostIoError::DiskFull)?;
        }
        if let WriteData::Zeroes(length) = data {
            return self.zero(volume, opened, offset, length).await;
        }
        let mut applied_at = 0;
        for (at, piece) in pieces(offset, data) {
            applied_at = self.write_one(volume, opened, at, piece).await?;
        }
        Ok(applied_at)
    }

    /// Zeroing, as few writes as its cost allows: each covers what remains unless that holds
    /// more than `ZEROING_TRACKS` stored tracks (what one entry drops, not the range's length,
    /// is what an apply costs); on a source, whose targets may need tracks copied first, writes
    /// of one command's bound (the state machine refuses more).
    async fn zero(&self, volume: &str, opened: VolumeId, offset: u64, length: u64) -> Result<u64, HostIoError> {
        let end = offset + length;
        let mut at = offset;
        let mut applied_at = 0;
        while at < end {
            let covered = self.next_zeroing(volume, opened, at, end - at).await;
            applied_at = match self.write_one(volume, opened, at, WriteData::Zeroes(covered)).await {
                Ok(index) => index,
                // The volume became a source since: cut this one small.
                Err(HostIoError::Refused(CommandError::ZeroingTooLarge { .. })) => {
                    for (piece_at, small) in pieces(at, WriteData::Zeroes(covered)) {
                        applied_at = self.write_one(volume, opened, piece_at, small).await?;
                    }
                    applied_at
                }
                Err(e) => return Err(e),
            };
            at += covered;
        }
        Ok(applied_at)
    }

    /// How many bytes from `at` the next zeroing write covers (see `zero`). It looks at stored
    /// tracks, so it runs off the async workers.
    async fn next_zeroing(&self, volume: &str, opened: VolumeId, at: u64, length: u64) -> u64 {
        let (view, volume) = (self.view.clone(), volume.to_string());
        let bounded = length.min(MAX_WRITE_BYTES);
        storage::runtime::offload(move || {
            if view.query(|s| s.volume_id(&volume).and_then(|id| s.zeroing_copies(id))) == Some(true) {
                return bounded;
            }
            // An error (no such volume, a range past its end) is the apply's to report.
            match view.allocation(&volume, Some(opened), at, length, ZEROING_TRACKS) {
                Ok(extents) => extents.iter().map(|e| e.length).sum::<u64>().clamp(1, length),
                Err(_) => length,
            }
        })
        .await
        .unwrap_or(bounded)
    }

    /// One bounded write, through the queue; the index of the entry that applied it.
    async fn write_one(
        &self,
        volume: &str,
        opened: VolumeId,
        offset: u64,
        data: WriteData,
    ) -> Result<u64, HostIoError> {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        // Subscribe before proposing, so the release of a held write cannot be missed.
        let mut notices = self.view.subscribe();
        let outcome = self
            .queue
            .submit(HostWrite {
                volume: volume.to_string(),
                opened: Some(opened),
                offset,
                data,
                tag,
            })
            .await;
        let held_at = match outcome? {
            Outcome::Done { index, result } => return result.map(|()| index).map_err(HostIoError::from),
            Outcome::Held { index } => index,
        };
        // Wait for the entry that releases it. Notices can be missed (a lagging receiver, a
        // snapshot install), so also look at the state every second: once the write is no longer
        // held, the audit history after `held_at` says how it ended.
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Ok(notice) => {
                        if let Some(outcome) = release_outcome(&notice.events, volume, tag) {
                            return outcome.map(|()| notice.index).map_err(HostIoError::from);
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(HostIoError::Unavailable("the node is shutting down".into()));
                    }
                },
                _ = every_second.tick() => {}
            }
            if !self.view.query(|s| s.is_held(volume, tag)) {
                let only_this_volume = AuditFilter {
                    volume: Some(volume.to_string()),
                    ..AuditFilter::default()
                };
                let history = self
                    .view
                    .audit(&only_this_volume, held_at, usize::MAX)
                    .map_err(|e| HostIoError::Unavailable(e.to_string()))?;
                let released = history
                    .iter()
                    .find_map(|r| Some((r.index, release_outcome(&r.events, volume, tag)?)));
                if let Some((index, outcome)) = released {
                    return outcome.map(|()| index).map_err(HostIoError::from);
                }
            }
        }
    }
}

/// How a held write ended, if these events say so.
fn release_outcome(events: &[Event], volume: &str, tag: u64) -> Option<Result<(), CommandError>> {
    events.iter().find_map(|event| match event {
        Event::Written { volume: v, tag: t, .. } if *t == tag && v == volume => Some(Ok(())),
        Event::HeldWriteRefused {
            volume: v,
            tag: t,
            error,
        } if *t == tag && v == volume => Some(Err(error.clone())),
        _ => None,
    })
}

/// Stored tracks one zeroing entry drops at most (1 GiB of data): bounds the entry's apply.
const ZEROING_TRACKS: u32 = 16 * 1024;

/// A write as the bounded writes it is proposed as, in order: data in pieces of one replication
/// request, zeroing in pieces of one write command.
fn pieces(offset: u64, data: WriteData) -> Vec<(u64, WriteData)> {
    match data {
        WriteData::Zeroes(length) => (0..length)
            .step_by(MAX_WRITE_BYTES as usize)
            .map(|done| (offset + done, WriteData::Zeroes((length - done).min(MAX_WRITE_BYTES))))
            .collect(),
        // Pieces share the write's buffer.
        WriteData::Bytes(bytes) if bytes.len() > storage::REPLICATION_BYTES => (0..bytes.len())
            .step_by(storage::REPLICATION_BYTES)
            .map(|start| {
                let end = (start + storage::REPLICATION_BYTES).min(bytes.len());
                (offset + start as u64, WriteData::Bytes(bytes.slice(start..end)))
            })
            .collect(),
        data => vec![(offset, data)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_split_into_bounded_pieces_in_order() {
        let r = storage::REPLICATION_BYTES;
        let data = (0..r * 2 + 10).map(|i| (i % 251) as u8 + 1).collect::<Vec<_>>();
        let split = pieces(100, WriteData::Bytes(data.clone().into()));
        let offsets: Vec<u64> = split.iter().map(|(at, _)| *at).collect();
        assert_eq!(offsets, vec![100, 100 + r as u64, 100 + 2 * r as u64]);
        let joined: Vec<u8> = split
            .into_iter()
            .flat_map(|(_, d)| match d {
                WriteData::Bytes(b) => b.to_vec(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(joined, data);
        let zeroes = pieces(0, WriteData::Zeroes(MAX_WRITE_BYTES * 2 + 1));
        assert_eq!(
            zeroes,
            vec![
                (0, WriteData::Zeroes(MAX_WRITE_BYTES)),
                (MAX_WRITE_BYTES, WriteData::Zeroes(MAX_WRITE_BYTES)),
                (2 * MAX_WRITE_BYTES, WriteData::Zeroes(1)),
            ]
        );
        assert!(pieces(0, WriteData::Zeroes(0)).is_empty());
        assert_eq!(
            pieces(5, WriteData::Bytes(vec![1].into())),
            vec![(5, WriteData::Bytes(vec![1].into()))]
        );
    }
}
