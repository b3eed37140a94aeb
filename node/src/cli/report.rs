//! How the CLI shows things: event lines, tables, RFC 3339 times.

use crate::protocol::{AuditEntry, DiskStatus, Pool};
use statemachine::{Access, Event, HostIdentity, HostInfo, RelationshipInfo, VolumeInfo};
use std::fmt::Write;

/// One line per event a command produced.
pub fn describe(event: &Event) -> String {
    match event {
        Event::VolumeCreated { volume, size } => format!("created volume {volume} ({size} bytes)"),
        Event::VolumeDeleted { volume } => format!("deleted volume {volume}"),
        Event::Written {
            volume, offset, length, ..
        } => format!("wrote {length} bytes at {offset} of {volume}"),
        Event::WriteHeld {
            volume, offset, length, ..
        } => format!("held {length} bytes at {offset} of frozen {volume}"),
        Event::WriteRefused {
            volume,
            offset,
            length,
            error,
            ..
        } => format!(
            "write of {length} bytes at {offset} of {volume} refused: {}: {error}",
            error.code()
        ),
        Event::HeldWriteRefused { volume, error, .. } => {
            format!("held write to {volume} refused: {}: {error}", error.code())
        }
        Event::HostCreated { host, identity } => format!("created host {host} ({identity})"),
        Event::HostDeleted { host } => format!("deleted host {host}"),
        Event::VolumeMapped {
            volume,
            host,
            read_only,
        } => {
            let access = if *read_only { "read-only" } else { "read-write" };
            format!("mapped {volume} to host {host} ({access})")
        }
        Event::VolumeUnmapped { volume, host } => format!("unmapped {volume} from host {host}"),
        Event::Established { source, target, seqnum } => format!("established {source}:{target} (seqnum {seqnum})"),
        Event::WithdrawScheduled { source, target } => {
            format!("{source}:{target} is completing: withdrawn when its background copy finishes")
        }
        Event::CopyRateChanged {
            source,
            target,
            copy_rate,
        } => match copy_rate {
            None => format!("{source}:{target} copies as fast as the node allows"),
            Some(0) => format!("{source}:{target} has no background copy (nocopy)"),
            Some(rate) => format!("{source}:{target} copies at {rate} MiB/s at most"),
        },
        Event::Withdrawn {
            source,
            target,
            incomplete,
            automatic,
        } => {
            let how = if *automatic { " (copy complete)" } else { "" };
            let state = if *incomplete {
                format!("; {target} is incomplete")
            } else {
                String::new()
            };
            format!("withdrew {source}:{target}{how}{state}")
        }
        Event::Resynced {
            source,
            target,
            tracks_to_copy,
        } => {
            format!("refreshed {source}:{target}: {tracks_to_copy} tracks to copy")
        }
        Event::IncrementTaken {
            source,
            target,
            seqnum,
            tracks,
        } => format!(
            "{source}:{target} took a revertible increment (seqnum {seqnum}): {tracks} tracks refreshed; {source} and {target} refuse host writes until commitflash or revertflash"
        ),
        Event::IncrementCommitted { source, target, seqnum } => {
            format!("committed the increment of {source}:{target} (seqnum {seqnum})")
        }
        Event::IncrementReverted {
            source,
            target,
            seqnum,
            tracks,
        } => format!(
            "reverted {source}:{target} to its previous point in time (seqnum {seqnum}): {tracks} tracks restored"
        ),
        Event::Reversed {
            source,
            target,
            fast,
            tracks_to_copy,
        } => {
            let fast = if *fast { " (fast)" } else { "" };
            format!("reversed to {source}:{target}{fast}: {tracks_to_copy} tracks to copy back")
        }
        Event::TracksCopied {
            source,
            target,
            tracks,
            data_tracks,
            remaining,
        } => {
            format!("{tracks} tracks of {source}:{target} in sync ({data_tracks} copied), {remaining} to go")
        }
        Event::CopyCompleted { source, target } => format!("copy of {source}:{target} complete"),
        Event::Frozen { volume, until } => format!("froze {volume} until {until}"),
        Event::Thawed {
            volume,
            automatic,
            released_writes,
        } => {
            let how = if *automatic { " automatically" } else { "" };
            format!("thawed {volume}{how}; {released_writes} held writes completed")
        }
        Event::Refused { error } => format!("refused: {}: {error}", error.code()),
        Event::ClusterNamed { id } => format!("this cluster is {id}"),
        Event::PathCreated { remote, url } => format!("path to {remote} at {url}"),
        Event::PathRemoved { remote } => format!("removed the path to {remote}"),
        Event::PairEstablished {
            volume,
            remote,
            tracks_to_copy,
            ..
        } => format!("mirror pair {volume} with {remote}: {tracks_to_copy} tracks to copy"),
        Event::PairState { volume, state } => format!("mirror pair of {volume} is {state}"),
        Event::PairTracksSent {
            volume,
            tracks,
            remaining,
            ..
        } => format!("sent {} tracks of {volume}, {remaining} to go", tracks.len()),
        Event::PairSuspended {
            volume,
            reason,
            out_of_sync_tracks,
        } => format!("suspended the mirror pair of {volume} ({reason}): {out_of_sync_tracks} tracks out of sync"),
        Event::PairResumed { volume, tracks_to_copy } => {
            format!("resumed the mirror pair of {volume}: {tracks_to_copy} tracks to copy")
        }
        Event::PairRemoved { volume } => format!("removed the mirror pair of {volume}"),
        Event::PairFailedOver { volume, consistent, .. } => {
            let image = if *consistent {
                "a consistent image"
            } else {
                "NOT a consistent image (a copy was running)"
            };
            format!("failed over {volume}: now a suspended primary, writable; it holds {image}")
        }
        Event::PairBecameSecondary { volume, tracks, .. } => {
            format!(
                "{volume} is now a mirror secondary; {} of its tracks changed since the failover",
                tracks.len()
            )
        }
    }
}

/// `lspprc`.
pub fn pairs_table(pairs: &[statemachine::PairInfo]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                p.volume.clone(),
                p.role.clone(),
                format!("{}/{}", p.remote_cluster, p.remote_volume),
                p.state.clone(),
                p.reason.clone().unwrap_or_else(|| "-".into()),
                p.out_of_sync_tracks.to_string(),
                p.consistent
                    .map_or("-".into(), |c| if c { "yes".into() } else { "no".into() }),
            ]
        })
        .collect();
    table(
        &[
            "VOLUME",
            "ROLE",
            "REMOTE",
            "STATE",
            "REASON",
            "OUT-OF-SYNC",
            "CONSISTENT",
        ],
        &rows,
    )
}

/// `lspprcpath`.
pub fn paths_table(paths: &[crate::protocol::PathRow]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            vec![
                p.path.remote_cluster.clone(),
                p.path.url.clone(),
                p.path.pairs.to_string(),
                ms(p.last_rtt_ms),
                ms(p.average_rtt_ms),
                p.bytes_sent.to_string(),
                format!("{}/{}", p.failures, p.requests),
            ]
        })
        .collect();
    table(
        &["REMOTE", "URL", "PAIRS", "RTT-MS", "AVG-RTT-MS", "BYTES-SENT", "FAILED"],
        &rows,
    )
}

/// A cell is cut to this many characters: a journal keeps what was asked, and a refused
/// command may carry an argument far wider than a screen.
const MAX_CELL: usize = 100;

/// The cell as shown: cut with `…` past [`MAX_CELL`] characters.
fn cell(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        return text.to_string();
    }
    text.chars().take(MAX_CELL - 1).chain(['…']).collect()
}

/// Left-aligned columns separated by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|c| cell(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// How a table shows sizes: in the units people read, or in bytes for scripts.
#[derive(Clone, Copy)]
pub struct Sizes {
    bytes: bool,
}

impl Sizes {
    pub fn new(bytes: bool) -> Self {
        Sizes { bytes }
    }

    pub fn show(self, value: u64) -> String {
        if self.bytes {
            value.to_string()
        } else {
            crate::units::format_bytes(value)
        }
    }
}

pub fn volumes_table(volumes: &[VolumeInfo], sizes: Sizes) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                sizes.show(v.size),
                sizes.show(v.used),
                if v.target_of.is_some() {
                    sizes.show(v.shared)
                } else {
                    "-".into()
                },
                format!("{:?}", v.state).to_lowercase(),
                if v.source_of.is_empty() {
                    "-".into()
                } else {
                    v.source_of.join(",")
                },
                v.target_of.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["NAME", "SIZE", "USED", "SHARED", "STATE", "SOURCE_OF", "TARGET_OF"],
        &rows,
    )
}

/// `lspool`: the volumes' totals, then one row per node's disk.
pub fn pool_report(pool: &Pool, sizes: Sizes) -> String {
    let mut out = format!(
        "volumes {}: virtual capacity {}, used {}; capacity {} (smallest node disk), overallocation {}%\n",
        pool.volumes,
        sizes.show(pool.virtual_capacity),
        sizes.show(pool.used_by_volumes),
        sizes.show(pool.capacity),
        pool.overallocation_percent
    );
    let rows: Vec<Vec<String>> = pool
        .nodes
        .iter()
        .map(|n| match &n.disk {
            Some(d) => disk_row(n.id, d, sizes),
            None => vec![n.id.to_string(), "unreachable".into()],
        })
        .collect();
    out.push_str(&table(&DISK_COLUMNS, &rows));
    out
}

pub const DISK_COLUMNS: [&str; 9] = [
    "NODE",
    "DISK",
    "CAPACITY",
    "USED_BY_STATE",
    "USED_BY_LOG",
    "GARBAGE",
    "FREE",
    "RESERVE",
    "WARNING_AT",
];

/// One node's disk as `lspool` shows it (the columns of `DISK_COLUMNS`).
pub fn disk_row(id: u64, d: &DiskStatus, sizes: Sizes) -> Vec<String> {
    vec![
        id.to_string(),
        d.status.clone(),
        sizes.show(d.capacity),
        sizes.show(d.used_by_state),
        sizes.show(d.used_by_log),
        sizes.show(d.garbage),
        sizes.show(d.free),
        sizes.show(d.reserve),
        format!("{}%", d.warning_percent),
    ]
}

pub fn hosts_table(hosts: &[HostInfo]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let identity = match &h.identity {
                HostIdentity::Psk(id) => format!("psk:{id}"),
                HostIdentity::CertCn(cn) => format!("cert-cn:{cn}"),
            };
            let volumes: Vec<String> = h
                .volumes
                .iter()
                .map(|(name, access)| match access {
                    Access::ReadWrite => name.clone(),
                    Access::ReadOnly => format!("{name}(ro)"),
                })
                .collect();
            let volumes = if volumes.is_empty() {
                "-".into()
            } else {
                volumes.join(",")
            };
            vec![h.name.clone(), identity, volumes]
        })
        .collect();
    table(&["NAME", "IDENTITY", "VOLUMES"], &rows)
}

/// How much of a relationship's copy is done: a bar on a terminal, a percentage otherwise.
pub fn copy_progress(rel: &RelationshipInfo, bar: bool) -> String {
    let total = u64::from(rel.total_tracks);
    let percent = ((total - rel.out_of_sync_tracks.min(total)) * 100)
        .checked_div(total)
        .unwrap_or(100);
    if bar {
        let filled = (percent / 10) as usize;
        format!("[{}{}] {percent:>3}%", "#".repeat(filled), "-".repeat(10 - filled))
    } else {
        format!("{percent}%")
    }
}

/// The `lsflash` table with a progress column first (for `--watch`).
pub fn progress_table(rels: &[RelationshipInfo], bar: bool) -> String {
    let rows: Vec<Vec<String>> = rels
        .iter()
        .map(|r| {
            vec![
                format!("{}:{}", r.source, r.target),
                r.state.as_str().to_string(),
                copy_progress(r, bar),
                format!("{}/{}", r.out_of_sync_tracks, r.total_tracks),
            ]
        })
        .collect();
    table(&["PAIR", "STATE", "COPIED", "OUT_OF_SYNC"], &rows)
}

pub fn relationships_table(rels: &[RelationshipInfo]) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = rels
        .iter()
        .map(|r| {
            vec![
                format!("{}:{}", r.source, r.target),
                r.seqnum.to_string(),
                r.state.as_str().to_string(),
                yes(r.persistent),
                yes(r.recording),
                yes(r.background_copy),
                match (r.background_copy, r.copy_rate) {
                    (false, _) => "-".to_string(),
                    (true, None) => "max".to_string(),
                    (true, Some(rate)) => format!("{rate}MiB/s"),
                },
                yes(r.target_write_inhibit),
                yes(r.revertible),
                yes(r.frozen),
                format!("{}/{}", r.out_of_sync_tracks, r.total_tracks),
                r.created_at.clone(),
                r.synced_at.clone(),
                r.chain.join(">"),
            ]
        })
        .collect();
    table(
        &[
            "PAIR",
            "SEQNUM",
            "STATE",
            "PERSISTENT",
            "RECORDING",
            "BGCOPY",
            "COPYRATE",
            "TGTINHIBIT",
            "REVERTIBLE",
            "FROZEN",
            "OUT_OF_SYNC",
            "CREATED",
            "SYNCED",
            "CASCADE",
        ],
        &rows,
    )
}

/// `audit` as a table, oldest first; a batch of writes gets one row per write below it.
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let mut rows = Vec::new();
    for e in entries {
        let outcome = match &e.refused {
            None => e.outcome.clone(),
            Some(r) => format!("refused {}: {}", r.code, r.message),
        };
        rows.push(vec![e.index.to_string(), e.time.clone(), e.command.clone(), outcome]);
        for w in &e.writes {
            rows.push(vec![
                String::new(),
                String::new(),
                format!("  {}", w.command),
                w.outcome.clone(),
            ]);
        }
    }
    table(&["INDEX", "TIME", "COMMAND", "OUTCOME"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's find: a cell wider than a format width may be (65,535) panicked the table.
    #[test]
    fn a_table_cuts_cells_wider_than_a_screen() {
        let wide = "x".repeat(70_000);
        let text = table(&["A", "B"], &[vec![wide, "é".into()], vec!["short".into(), "b".into()]]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1].chars().count(), MAX_CELL + 2 + 1, "{}", lines[1]);
        assert!(lines[1].contains("x…  é"), "{}", lines[1]);
        assert_eq!(lines[2], format!("short{}  b", " ".repeat(MAX_CELL - 5)));
    }
}
