//! `GET /metrics`: Raft and state gauges, then the node's counters and histograms, as
//! Prometheus text.

use super::Api;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use statemachine::RelationshipInfo;
use storage::StateQuery;

pub(super) async fn render(State(a): Api) -> impl IntoResponse {
    use std::fmt::Write as _;
    let raft = a.consensus.raft_metrics();
    let (applied, _) = a.state.applied();
    let (volumes, relationships) = a.state.query(|s| (s.volumes(), s.relationships(&[])));
    let virtual_bytes: u64 = volumes.iter().map(|v| v.size).sum();
    let used_bytes: u64 = volumes.iter().map(|v| v.used).sum();
    let volumes = volumes.len();
    let out_of_sync: u64 = relationships.iter().map(|r| r.out_of_sync_tracks).sum();
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("flashcopy_term", "Current Raft term.", raft.current_term);
    gauge(
        "flashcopy_leader_id",
        "Id of the node this node follows as leader (0: none known).",
        raft.current_leader.unwrap_or(0),
    );
    gauge(
        "flashcopy_is_leader",
        "1 if this node leads the cluster.",
        u64::from(raft.current_leader == Some(a.consensus.id())),
    );
    gauge(
        "flashcopy_last_log_index",
        "Last log index in this node's log.",
        raft.last_log_index.unwrap_or(0),
    );
    gauge(
        "flashcopy_commit_index",
        "Last log index this node knows to be committed.",
        a.metrics.commit_index(),
    );
    gauge(
        "flashcopy_applied_index",
        "Last log index applied by this node.",
        applied,
    );
    gauge(
        "flashcopy_snapshot_index",
        "Log index of this node's latest snapshot.",
        raft.snapshot.map_or(0, |l| l.index),
    );
    gauge(
        "flashcopy_log_purged_index",
        "Log entries up to this index are purged (they live in the snapshot).",
        raft.purged.map_or(0, |l| l.index),
    );
    gauge(
        "flashcopy_log_bytes",
        "Bytes of entries the Raft log's segment files hold, as last checked (cut back past --max-log-size; the spare segment files kept for reuse not counted: lspool counts them).",
        a.metrics.log_bytes.load(std::sync::atomic::Ordering::Relaxed),
    );
    gauge(
        "flashcopy_read_index_rounds",
        "Leadership rounds run for linearizable reads (reads waiting together share one).",
        a.consensus.read_rounds(),
    );
    gauge(
        "flashcopy_disk_free_bytes",
        "Free space on the data directory's filesystem.",
        a.disk.free(),
    );
    gauge(
        "flashcopy_disk_reserve_bytes",
        "Free space kept in reserve: host writes are refused below it.",
        a.disk.reserve(),
    );
    gauge(
        "flashcopy_disk_low",
        "1 while free space is under the reserve (host writes refused with ENOSPC).",
        u64::from(a.disk.low()),
    );
    gauge(
        "flashcopy_disk_capacity_bytes",
        "Size of the data directory's filesystem.",
        a.disk.capacity(),
    );
    gauge(
        "flashcopy_disk_warning",
        "1 while the data disk is past its warning threshold (--disk-warning).",
        u64::from(a.disk.state() != crate::server::disk::DiskState::Ok),
    );
    let usage = a.space.last_usage();
    gauge(
        "flashcopy_state_bytes",
        "What the state holds on disk (volume blocks, records, history), garbage not counted.",
        usage.state,
    );
    gauge(
        "flashcopy_state_garbage_bytes",
        "Deleted or overwritten blocks not collected yet.",
        usage.garbage,
    );
    gauge("flashcopy_volumes", "Number of volumes.", volumes as u64);
    gauge(
        "flashcopy_volumes_virtual_bytes",
        "Sum of the volumes' sizes.",
        virtual_bytes,
    );
    gauge(
        "flashcopy_volumes_used_bytes",
        "Sum of what the volumes use (stored tracks).",
        used_bytes,
    );
    gauge(
        "flashcopy_relationships",
        "Number of FlashCopy relationships.",
        relationships.len() as u64,
    );
    gauge(
        "flashcopy_out_of_sync_tracks",
        "Tracks still to copy, over all relationships.",
        out_of_sync,
    );
    for (name, help, value) in [
        (
            "flashcopy_relationship_out_of_sync_tracks",
            "Tracks of the target still living on the source, per relationship.",
            (|r: &RelationshipInfo| r.out_of_sync_tracks) as fn(&RelationshipInfo) -> u64,
        ),
        (
            "flashcopy_relationship_tracks",
            "Tracks of the relationship's volumes.",
            |r: &RelationshipInfo| u64::from(r.total_tracks),
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &relationships {
            let _ = writeln!(
                text,
                "{name}{{source=\"{}\",target=\"{}\"}} {}",
                r.source,
                r.target,
                value(r)
            );
        }
    }
    let _ = writeln!(
        text,
        "# HELP flashcopy_disk_refused_writes_total Host and mirror writes refused (ENOSPC) because free space was under the reserve.\n# TYPE flashcopy_disk_refused_writes_total counter\nflashcopy_disk_refused_writes_total {}",
        a.disk.refused()
    );
    let (pairs, paths) = a.state.query(|s| (s.mirror_pairs(&[]), s.mirror_paths()));
    let _ = writeln!(
        text,
        "# HELP flashcopy_mirror_pair_state 1 for each Metro Mirror pair's state (DS CLI names), per volume here.\n# TYPE flashcopy_mirror_pair_state gauge"
    );
    for p in &pairs {
        let _ = writeln!(
            text,
            "flashcopy_mirror_pair_state{{volume=\"{}\",role=\"{}\",state=\"{}\"}} 1",
            p.volume, p.role, p.state
        );
    }
    let _ = writeln!(
        text,
        "# HELP flashcopy_mirror_out_of_sync_tracks Tracks that may differ between the sites, per primary here.\n# TYPE flashcopy_mirror_out_of_sync_tracks gauge"
    );
    for p in pairs.iter().filter(|p| p.role == "primary") {
        let _ = writeln!(
            text,
            "flashcopy_mirror_out_of_sync_tracks{{volume=\"{}\"}} {}",
            p.volume, p.out_of_sync_tracks
        );
    }
    let _ = writeln!(
        text,
        "# HELP flashcopy_mirror_sent_bytes_total Bytes this node sent over each mirror path.\n# TYPE flashcopy_mirror_sent_bytes_total counter"
    );
    for p in &paths {
        let stats = a.mirror.links.stats(&p.remote_cluster);
        let _ = writeln!(
            text,
            "flashcopy_mirror_sent_bytes_total{{remote=\"{}\"}} {}",
            p.remote_cluster, stats.bytes_sent
        );
    }
    a.metrics.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
